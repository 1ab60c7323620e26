"""The ``mainspring`` client commands' arguments: times, statuses, the server's URL and
key, parsing, the cursor paging of listings, and the lanes of a run's timeline."""

from __future__ import annotations

import argparse
import datetime
import json
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

import mainspring
from mainspring import cli
from mainspring.cli import args as types
from mainspring.cli import commands, timeline
from mainspring.cli.client import DEFAULT_URL, Answer, CliError, Server, bearer, server_url
from mainspring.protocol import signing

NOW = datetime.datetime(2025, 1, 31, 12, 0, tzinfo=datetime.UTC)
KEY = "signkey-prod-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", NOW - datetime.timedelta(hours=1)),
        ("30m", NOW - datetime.timedelta(minutes=30)),
        ("1h30m ago", NOW - datetime.timedelta(minutes=90)),
        ("-2d", NOW - datetime.timedelta(days=2)),
        ("now", NOW),
        ("2025-01-30T08:00:00Z", datetime.datetime(2025, 1, 30, 8, tzinfo=datetime.UTC)),
        ("2025-01-30T10:00:00+02:00", datetime.datetime(2025, 1, 30, 8, tzinfo=datetime.UTC)),
        ("2025-01-30T08:00:00", datetime.datetime(2025, 1, 30, 8, tzinfo=datetime.UTC)),
        ("2025-01-30", datetime.datetime(2025, 1, 30, tzinfo=datetime.UTC)),
    ],
)
def test_times_are_rfc3339_or_a_duration_ago(text: str, expected: datetime.datetime) -> None:
    assert types.parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "", "1x", "2025-13-01", "10"])
def test_a_bad_time_is_refused_with_the_forms_accepted(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="RFC 3339"):
        types.parse_time(text, now=NOW)


def test_times_go_to_the_server_in_utc_with_milliseconds() -> None:
    moment = datetime.datetime(2025, 1, 30, 10, 0, 1, 234_567, tzinfo=datetime.UTC)
    assert types.rfc3339(moment) == "2025-01-30T10:00:01.234Z"
    east = moment.astimezone(datetime.timezone(datetime.timedelta(hours=5)))
    assert types.rfc3339(east) == "2025-01-30T10:00:01.234Z"


@pytest.mark.parametrize("text", ["failed", "FAILED", "Failed", " failed "])
def test_statuses_take_any_case(text: str) -> None:
    assert types.status_arg(text) == "Failed"


def test_an_unknown_status_names_the_statuses() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="Queued, Running, Completed"):
        types.status_arg("done")


def test_the_server_url_comes_from_the_option_then_the_environment() -> None:
    env = {
        "MAINSPRING_URL": "http://m:1",
        "INNGEST_BASE_URL": "http://b:2",
        "INNGEST_DEV": "http://d:3",
    }
    assert server_url("http://o:9/", env) == "http://o:9"
    assert server_url(None, env) == "http://m:1"
    assert server_url(None, {**env, "MAINSPRING_URL": ""}) == "http://b:2"
    assert server_url(None, {"INNGEST_DEV": "http://d:3"}) == "http://d:3"
    assert server_url(None, {"INNGEST_DEV": "1"}) == DEFAULT_URL
    assert server_url(None, {}) == "http://127.0.0.1:8288"
    with pytest.raises(CliError) as refused:
        server_url("localhost:8288", {})
    assert refused.value.code == 2


def test_the_signing_key_is_sent_hashed_as_the_sdk_sends_it() -> None:
    assert bearer(KEY, {}) == f"Bearer {signing.hashed_key(KEY)}"
    assert bearer(None, {"INNGEST_SIGNING_KEY": KEY}) == f"Bearer {signing.hashed_key(KEY)}"
    assert bearer(None, {}) is None
    with pytest.raises(CliError, match="INNGEST_SIGNING_KEY") as refused:
        bearer(None, {"INNGEST_SIGNING_KEY": "not-a-key"})
    assert refused.value.code == 2


def test_runs_options_parse() -> None:
    argv = ["runs", "--function", "f", "--status", "failed", "--status", "RUNNING"]
    argv += ["--from", "2025-01-30T08:00:00Z", "--where", "event.data.x == 1", "--limit", "5"]
    args = cli.build_parser().parse_args(argv)
    assert args.status == ["Failed", "Running"]
    assert args.from_ == "2025-01-30T08:00:00.000Z"
    assert args.until is None
    assert (args.function, args.where, args.limit, args.json) == (
        "f",
        "event.data.x == 1",
        5,
        False,
    )


def test_the_url_option_goes_before_or_after_the_command() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["--url", "http://a:1", "runs"]).server_url == "http://a:1"
    assert parser.parse_args(["runs", "--url", "http://b:2"]).server_url == "http://b:2"
    assert parser.parse_args(["runs"]).server_url is None


@pytest.mark.parametrize(
    "argv",
    [
        ["runs", "--limit", "0"],
        ["runs", "--status", "done"],
        ["runs", "--from", "soon"],
        ["cancel", "--function", "f", "--until", "later"],
        ["send"],
        ["rerun"],
        ["nonsense"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(argv)
    assert stopped.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cancel_needs_a_run_or_a_function(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--url", "http://127.0.0.1:1", "cancel"])
    assert stopped.value.code == 2
    assert "give a run id" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        cli.main(["--version"])
    assert stopped.value.code == 0
    assert capsys.readouterr().out.strip() == f"mainspring {mainspring.__version__}"


Handler = Callable[[str, str, dict[str, str], Any], tuple[int, Any]]


def fake(handler: Handler) -> Server:
    """A client whose requests ``handler`` answers: (method, path, query, JSON body) in,
    (status, JSON body) out."""

    def send(method: str, target: str, headers: Mapping[str, str], body: bytes | None) -> Answer:
        parts = urlsplit(target)
        status, data = handler(
            method, parts.path, dict(parse_qsl(parts.query)), body and json.loads(body)
        )
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "")
        return Answer(status, reason, json.dumps(data).encode())

    return Server("http://test", transport=send)


def test_runs_follows_the_cursor_until_the_limit() -> None:
    asked: list[dict[str, Any]] = []

    def answer(method: str, path: str, params: dict[str, str], body: Any) -> tuple[int, Any]:
        asked.append(params)
        start = int(params.get("cursor", "0"))
        size = int(params["limit"])
        page = [{"run_id": str(n)} for n in range(start, min(start + size, 2500))]
        following = str(start + size) if start + size < 2500 else None
        return 200, {"data": page, "cursor": following}

    server = fake(answer)
    found = commands._pages(server, "/v1/runs", {"status": "Failed"}, 2200, cursor_field=None)
    assert [r["run_id"] for r in found] == [str(n) for n in range(2200)]
    assert [(p.get("cursor"), p["limit"]) for p in asked] == [
        (None, "1000"),
        ("1000", "1000"),
        ("2000", "200"),
    ]
    assert all(p["status"] == "Failed" for p in asked)


def test_a_refusal_is_one_line_with_the_servers_message() -> None:
    def answer(method: str, path: str, params: dict[str, str], body: Any) -> tuple[int, Any]:
        return 400, {"error": "event 0: name:\n  is required"}

    server = fake(answer)
    with pytest.raises(CliError) as refused:
        server.post("/e/key", {"name": ""})
    assert str(refused.value) == "POST /e/key: 400 Bad Request: event 0: name: is required"


def span(span_id: str, start_ms: int, end_ms: int | None) -> dict[str, Any]:
    def at(ms: int) -> str:
        return (NOW + datetime.timedelta(milliseconds=ms)).isoformat()

    return {"spanID": span_id, "startedAt": at(start_ms), "endedAt": end_ms and at(end_ms)}


def test_steps_that_overlap_get_lanes_of_their_own() -> None:
    steps = [
        span("first", 0, 100),
        span("left", 102, 400),  # within the slack of the step before it: same lane
        span("right", 103, 380),
        span("middle", 150, None),  # still running
        span("after", 401, 500),
    ]
    later = NOW + datetime.timedelta(seconds=1)
    assert timeline.lanes(steps, later) == {
        "first": 1,
        "left": 1,
        "right": 2,
        "middle": 3,
        "after": 1,
    }


def test_a_keep_alive_connection_the_server_dropped_is_opened_again() -> None:
    """A server closes an idle keep-alive connection (uvicorn after 5 s) without a word:
    the next request on it fails before the server reads it, and is sent again once."""
    import http.server
    import threading

    seen: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client expects

        def do_GET(self) -> None:
            seen.append(self.path)
            body = json.dumps({"n": len(seen)}).encode()
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True  # hangs up after the answer, without saying so

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        server = Server(f"http://127.0.0.1:{httpd.server_address[1]}")
        assert server.get("/a") == {"n": 1}
        assert server.get("/b", {"x": ["1", "2"]}) == {"n": 2}
        server.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert seen == ["/a", "/b?x=1&x=2"]
