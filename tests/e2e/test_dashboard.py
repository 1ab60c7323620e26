"""The dashboard in a real headless Chromium (Debian's ``chromium``, driven by Playwright),
against a real ``mainspring dev`` (and ``mainspring start`` for the login gate) serving
``tests/e2e/dashboard_app.py`` over HTTP.

Each test saves a screenshot under ``test-artifacts/dashboard/`` (git-ignored) and asserts
on what a person sees. Skipped when chromium or playwright is missing (``scripts/test``
installs chromium when it can).
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.support import ROOT, free_port, start_dev_server, stop, wait_until_up

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("MAINSPRING_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "dashboard"
SIGNING_KEY = "signkey-test-" + "ab12" * 16

# In CI (.ci/run installs both) a missing browser fails the suite; elsewhere it skips.
if os.environ.get("CI"):
    import playwright.sync_api as playwright_sync

    assert os.path.exists(CHROMIUM) or shutil.which("chromium"), f"no chromium at {CHROMIUM}"
else:
    playwright_sync = pytest.importorskip("playwright.sync_api")
    if not (os.path.exists(CHROMIUM) or shutil.which("chromium")):
        missing = f"no chromium at {CHROMIUM} (apt-get install chromium)"
        pytest.skip(missing, allow_module_level=True)

Page = Any  # playwright.sync_api.Page (kept loose: the package is an optional dev extra)


class Servers:
    def __init__(self, url: str) -> None:
        self.url = url

    def send(self, name: str, data: dict[str, Any] | None = None) -> str:
        answer = httpx.post(f"{self.url}/e/key", json={"name": name, "data": data or {}})
        assert answer.status_code == 200, answer.text
        [event_id] = answer.json()["ids"]
        assert isinstance(event_id, str)
        return event_id

    def run_of(self, event_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = httpx.get(f"{self.url}/v1/events/{event_id}/runs").json()["data"]
            if runs:
                run: dict[str, Any] = runs[0]
                return run
            time.sleep(0.1)
        raise AssertionError(f"no run for event {event_id}")

    def run_until(self, run_id: str, statuses: set[str], timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        run: dict[str, Any] = {}
        while time.monotonic() < deadline:
            run = httpx.get(f"{self.url}/v1/runs/{run_id}").json()["data"]
            if run["status"] in statuses:
                return run
            time.sleep(0.1)
        raise AssertionError(f"run {run_id} never reached {statuses}: {run}")


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    workdir = tmp_path_factory.mktemp("dashboard")
    server_port, app_port = free_port(), free_port()
    url = f"http://127.0.0.1:{server_port}"
    app_url = f"http://127.0.0.1:{app_port}/api/inngest"
    env = {**os.environ, "MAINSPRING_DEV": "1", "MAINSPRING_API_BASE_URL": url}
    command = [sys.executable, "-m", "uvicorn", "tests.e2e.dashboard_app:app"]
    app = subprocess.Popen(
        [*command, "--port", str(app_port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )
    dev = start_dev_server(app_url, server_port, workdir / "dev.db", "--retry-backoff", "0.2")
    try:
        wait_until_up(app_url, app)
        wait_until_up(f"{url}/health", dev)
        found = Servers(url)
        deadline = time.monotonic() + 20
        while not httpx.get(f"{url}/dev").json()["functions"]:
            assert time.monotonic() < deadline, "the app never synced"
            time.sleep(0.2)
        yield found
    finally:
        for proc in (dev, app):
            stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    opened.set_default_timeout(10_000)
    try:
        yield opened
    finally:
        context.close()


def shot(page: Page, name: str) -> pathlib.Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_runs_page_lists_runs_newest_first(servers: Servers, page: Page) -> None:
    first = servers.run_of(servers.send("dash/hello", {"who": "ada"}))
    second = servers.run_of(servers.send("dash/hello", {"who": "grace"}))
    servers.run_until(second["run_id"], {"Completed"})
    page.goto(f"{servers.url}/")
    assert page.url.endswith("/runs")
    badge = page.locator(f'tr[data-run="{second["run_id"]}"] .badge')
    badge.filter(has_text="Completed").wait_for()
    ids = page.locator("tr[data-run]").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert ids.index(second["run_id"]) < ids.index(first["run_id"])
    assert page.get_by_role("link", name="Runs").is_visible()
    shot(page, "runs")
    # Filtered by status: only failed runs (none of the hello runs).
    page.select_option("select[name=status]", "Failed")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"status=Failed"))
    assert page.locator(f'tr[data-run="{second["run_id"]}"]').count() == 0


def test_parallel_run_shows_its_branches_side_by_side(servers: Servers, page: Page) -> None:
    run = servers.run_of(servers.send("dash/fan-out"))
    servers.run_until(run["run_id"], {"Completed"})
    page.goto(f"{servers.url}/runs/{run['run_id']}")
    left = page.locator('.bar[data-step="left-branch"]')
    right = page.locator('.bar[data-step="right-branch"]')
    left.wait_for()
    a, b = left.bounding_box(), right.bounding_box()
    assert a is not None
    assert b is not None
    assert abs(a["y"] - b["y"]) >= a["height"] / 2, (a, b)  # in different lanes
    # Overlapping horizontally: the branches ran at the same time.
    assert a["x"] < b["x"] + b["width"], (a, b)
    assert b["x"] < a["x"] + a["width"], (a, b)
    assert page.locator(".lane").count() >= 2
    assert page.get_by_text('"left done"').first.is_visible()
    shot(page, "run-parallel")


def test_failing_run_shows_its_traceback(servers: Servers, page: Page) -> None:
    run = servers.run_of(servers.send("dash/fail"))
    servers.run_until(run["run_id"], {"Failed"})
    page.goto(f"{servers.url}/runs/{run['run_id']}")
    error = page.locator(".card.failed")
    assert "the flux capacitor is out of plutonium" in error.inner_text()
    stack = page.locator("pre.stack").first
    assert stack.is_visible()
    assert "_explode" in stack.inner_text()
    assert page.locator("#run-status").inner_text() == "Failed"
    shot(page, "run-failed")


def test_rerun_and_rerun_from_a_failed_step_work_from_the_page(
    servers: Servers, page: Page
) -> None:
    run = servers.run_of(servers.send("dash/fail"))
    servers.run_until(run["run_id"], {"Failed"})
    page.goto(f"{servers.url}/runs/{run['run_id']}")
    page.get_by_role("button", name="Rerun", exact=True).click()
    page.wait_for_url(re.compile(r"/runs/(?!" + run["run_id"] + r")\w+$"))
    assert page.locator(".notice").inner_text().startswith(f"Rerun of {run['run_id']}")
    rerun_id = page.url.rsplit("/", 1)[1]
    assert rerun_id != run["run_id"]
    servers.run_until(rerun_id, {"Failed"})
    page.goto(f"{servers.url}/runs/{run['run_id']}")
    page.get_by_role("button", name="Rerun from this step").click()
    page.wait_for_url(re.compile(r"/runs/(?!" + run["run_id"] + r")\w+$"))
    assert "from step explode" in page.locator(".notice").inner_text()
    assert page.get_by_text("Rerun of").first.is_visible()
    from_step_id = page.url.rsplit("/", 1)[1]
    assert from_step_id not in (run["run_id"], rerun_id)
    shot(page, "run-rerun-from-step")
    page.goto(f"{servers.url}/runs")
    for new_id in (rerun_id, from_step_id):
        assert page.locator(f'tr[data-run="{new_id}"]').is_visible()


def test_cancel_works_from_the_page(servers: Servers, page: Page) -> None:
    run = servers.run_of(servers.send("dash/sleep"))
    page.goto(f"{servers.url}/runs/{run['run_id']}")
    page.locator('.bar[data-step="nap"]').wait_for()  # the sleep is a span, live
    shot(page, "run-sleeping")
    page.on("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Cancel").click()
    page.locator(".notice", has_text="Run cancelled.").wait_for()
    assert page.locator("#run-status").inner_text() == "Cancelled"
    assert servers.run_until(run["run_id"], {"Cancelled"})["status"] == "Cancelled"
    shot(page, "run-cancelled")


def test_an_event_sent_from_the_page_starts_a_run_that_appears_live(
    servers: Servers, page: Page, browser: Any
) -> None:
    page.goto(f"{servers.url}/runs")
    page.locator("#live-indicator:not(.off)").wait_for()  # the stream is open
    page.evaluate("window.__notReloaded = true")
    before = set(page.locator("tr[data-run]").evaluate_all("rows => rows.map(r => r.dataset.run)"))

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    events = context.new_page()
    try:
        events.goto(f"{servers.url}/events")
        events.fill("#event-json", '{"name": "dash/hello", "data": {"who": "from the page"}}')
        events.get_by_role("button", name="Send event").click()
        result = events.locator("#send-result")
        result.wait_for()
        assert "started dash-app-hello" in result.inner_text()
        shot(events, "events-sent")
    finally:
        context.close()

    fresh = page.locator("tr.fresh[data-run]", has_text="hello").first
    fresh.wait_for(timeout=5_000)
    assert fresh.get_attribute("data-run") not in before
    assert page.evaluate("window.__notReloaded") is True
    shot(page, "runs-live")


def test_a_malformed_event_shows_the_servers_400_message(servers: Servers, page: Page) -> None:
    page.goto(f"{servers.url}/events")
    page.fill("#event-json", '{"name": 5, "data": {}}')
    page.get_by_role("button", name="Send event").click()
    problem = page.locator("#send-problem")
    problem.wait_for()
    assert "(400)" in problem.inner_text()
    assert "event 0: name: must be a string" in problem.inner_text()
    shot(page, "events-malformed")
    page.fill("#event-json", '{"name": "dash/hello", ')
    page.get_by_role("button", name="Send event").click()
    assert "Not valid JSON" in problem.inner_text()


def test_events_functions_and_apps_pages(servers: Servers, page: Page) -> None:
    event_id = servers.send("dash/nobody-listens", {"x": 1})
    page.goto(f"{servers.url}/events/{event_id}")
    assert page.get_by_text("no function is triggered by this event").is_visible()
    page.get_by_role("button", name="Send again").click()
    page.locator(".notice", has_text="Sent dash/nobody-listens again.").wait_for()
    shot(page, "event")
    page.goto(f"{servers.url}/events?name=dash/nobody-listens")
    assert page.locator("table.events tbody tr").count() == 2

    page.goto(f"{servers.url}/functions")
    row = page.locator("tr", has_text="dash-app-fan-out")
    assert "dash/fan-out" in row.inner_text()
    shot(page, "functions")
    page.get_by_role("link", name="fan-out", exact=True).click()
    assert page.get_by_text("Configuration").is_visible()
    page.fill("textarea[name=data]", '{"via": "invoke"}')
    page.get_by_role("button", name="Invoke").click()
    page.wait_for_url(re.compile(r"/runs/\w+$"))
    assert page.locator(".notice").inner_text() == "Invoked dash-app-fan-out."
    shot(page, "function-invoked")

    page.goto(f"{servers.url}/apps")
    assert page.get_by_text("dash-app").first.is_visible()
    page.get_by_role("button", name="Resync").click()
    page.locator(".notice", has_text="was asked to sync, and answered").wait_for()
    shot(page, "apps")


def test_a_post_without_the_csrf_token_is_refused(servers: Servers) -> None:
    run = servers.run_of(servers.send("dash/sleep"))
    with httpx.Client(base_url=servers.url) as http:
        http.get("/runs")  # a session cookie, but no token
        origin = {"origin": servers.url}
        refused = http.post(f"/runs/{run['run_id']}/cancel", data={"csrf": "x"}, headers=origin)
        assert refused.status_code == 403
        cross = http.post(
            f"/runs/{run['run_id']}/cancel", headers={"origin": "https://evil.example"}
        )
        assert cross.status_code == 403
    assert httpx.get(f"{servers.url}/v1/runs/{run['run_id']}").json()["data"]["status"] == "Running"
    httpx.delete(f"{servers.url}/v1/runs/{run['run_id']}")


def test_the_login_gate_holds_in_start_mode(tmp_path: pathlib.Path, page: Page) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "mainspring.cli", "start", "--port", str(port)]
    command += ["--db", str(tmp_path / "start.db"), "--signing-key", SIGNING_KEY]
    command += ["--event-key", "test-event-key"]
    server = subprocess.Popen(command, cwd=ROOT)
    try:
        wait_until_up(f"{url}/health", server)
        assert httpx.get(f"{url}/runs").status_code == 303
        page.goto(f"{url}/runs")
        assert "/login" in page.url
        assert page.get_by_text("Enter its signing key").is_visible()
        shot(page, "login")
        page.fill("input[name=key]", "signkey-test-" + "00" * 32)
        page.get_by_role("button", name="Log in").click()
        assert page.get_by_text("That is not this server's signing key.").is_visible()
        assert page.locator("h1", has_text="Runs").count() == 0
        shot(page, "login-refused")
        page.fill("input[name=key]", SIGNING_KEY)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_url(re.compile(r"/runs$"))
        assert page.locator("h1", has_text="Runs").is_visible()
        cookies = page.context.cookies()
        [session] = [c for c in cookies if c["name"] == "mainspring_session"]
        assert session["httpOnly"]
        assert session["sameSite"] == "Strict"
        page.goto(f"{url}/functions")
        assert page.locator("h1", has_text="Functions").is_visible()
        shot(page, "login-accepted")
        page.get_by_role("button", name="Log out").click()
        page.wait_for_url(re.compile(r"/login"))
        page.goto(f"{url}/events")
        assert "/login" in page.url
    finally:
        stop(server)


# -- the runs list filtered by a CEL expression on the triggering event ------------------


def _rows(page: Page) -> list[str]:
    ids: list[str] = page.locator("tr[data-run]").evaluate_all(
        "rows => rows.map(r => r.dataset.run)"
    )
    return ids


def test_runs_page_filters_by_a_cel_expression_across_pages_and_live(
    servers: Servers, page: Page
) -> None:
    tag = f"cel-{time.monotonic_ns()}"  # this test's runs only, whatever others sent
    sent = [{"name": "dash/hello", "data": {"plan": "pro", "tag": tag, "n": n}} for n in range(55)]
    sent += [{"name": "dash/hello", "data": {"plan": "free", "tag": tag, "n": n}} for n in range(5)]
    assert httpx.post(f"{servers.url}/e/key", json=sent).status_code == 200
    expression = f'event.data.plan == "pro" && event.data.tag == "{tag}"'
    listed = httpx.get(f"{servers.url}/v1/runs", params={"q": expression, "limit": 100}).json()
    pro = {run["run_id"] for run in listed["data"]}
    assert len(pro) == 55  # the REST API's answer, which the page must agree with

    page.goto(f"{servers.url}/runs")
    box = page.get_by_label("Triggering event matches (CEL)")
    assert box.get_attribute("placeholder") == 'event.data.plan == "pro"'
    box.fill(expression)
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url(re.compile(r"[?&]q="))
    first = _rows(page)
    assert len(first) == 50
    assert set(first) <= pro
    assert box.input_value() == expression
    shot(page, "runs-cel-filter")

    page.get_by_role("link", name="Older →").click()
    page.wait_for_url(re.compile(r"older="))
    second = _rows(page)
    assert set(second) == pro - set(first)  # the filter holds on the next page
    assert box.input_value() == expression
    assert page.get_by_role("link", name="Older →").count() == 0
    shot(page, "runs-cel-filter-older")

    # Back to the newest page, live: a matching run appears, one that does not never does.
    page.get_by_role("link", name="← Newest").click()
    page.locator("#live-indicator:not(.off)").wait_for()
    free = servers.run_of(servers.send("dash/hello", {"plan": "free", "tag": tag}))
    fresh = servers.run_of(servers.send("dash/hello", {"plan": "pro", "tag": tag}))
    page.locator(f'tr[data-run="{fresh["run_id"]}"]').wait_for(timeout=5_000)
    assert page.locator(f'tr[data-run="{free["run_id"]}"]').count() == 0
    assert set(_rows(page)) <= pro | {fresh["run_id"]}
    shot(page, "runs-cel-filter-live")


def test_runs_page_shows_why_a_cel_expression_is_bad(servers: Servers, page: Page) -> None:
    page.goto(f"{servers.url}/runs")
    page.get_by_label("Triggering event matches (CEL)").fill('event.data.plan == "pro" &&')
    with page.expect_response(re.compile(r"/runs\?")) as answer:
        page.get_by_role("button", name="Filter").click()
    assert answer.value.status == 400
    problem = page.locator(".q-error")
    assert problem.is_visible()
    text = problem.inner_text()
    assert text.startswith("Not a valid expression")
    assert "Syntax error: mismatched input '<EOF>'" in text
    assert "Traceback" not in page.content()
    # What was typed is still there to fix, and no run is listed under a bad filter.
    box = page.get_by_label("Triggering event matches (CEL)")
    assert box.input_value() == 'event.data.plan == "pro" &&'
    assert box.get_attribute("aria-invalid") == "true"
    assert page.locator("tr[data-run]").count() == 0
    shot(page, "runs-cel-bad")


# -- the apps page: last sync, last failed attempt and its fix ---------------------------


def test_apps_page_shows_when_an_app_last_synced(servers: Servers, page: Page) -> None:
    page.goto(f"{servers.url}/apps")
    row = page.locator("tr[data-url]", has_text="dash-app")
    assert re.search(r"synced \d+ (s|min) ago", row.inner_text()), row.inner_text()
    assert "py:v" in row.inner_text()  # the SDK and its version
    assert "failed" not in row.inner_text()
    shot(page, "apps-synced")


def test_apps_page_shows_apps_that_do_not_sync_with_the_fix(
    tmp_path: pathlib.Path, page: Page
) -> None:
    port, app_port, closed_port = free_port(), free_port(), free_port()
    url = f"http://127.0.0.1:{port}"
    cloudy = f"http://127.0.0.1:{app_port}/api/inngest"
    closed = f"http://127.0.0.1:{closed_port}/api/inngest"  # nothing listens there
    # The dashboard's app without INNGEST_DEV: in cloud mode, it refuses a dev server.
    env = {k: v for k, v in os.environ.items() if not k.endswith("_DEV")}
    command = [sys.executable, "-m", "uvicorn", "tests.e2e.dashboard_app:app"]
    app = subprocess.Popen(
        [*command, "--port", str(app_port), "--log-level", "warning"], cwd=ROOT, env=env
    )
    server = None
    try:
        # The app is up before the server's first round of sync requests, which is the only
        # one the test sees: the next comes 60 s later, so the Resync below is the last
        # attempt when the page shows it (a poll in between would be, and rightly so).
        wait_until_up(cloudy, app)
        server = start_dev_server(
            cloudy, port, tmp_path / "dev.db", "-u", closed, "--poll-interval", "60"
        )
        wait_until_up(f"{url}/health", server)
        page.goto(f"{url}/apps")
        down = page.locator(f'tr[data-url="{closed}"]')
        cloud = page.locator(f'tr[data-url="{cloudy}"]')
        # Reload until the first round has asked both (the page is not live).
        deadline = time.monotonic() + 10
        while "Fix:" not in down.inner_text() + "" or "Fix:" not in cloud.inner_text():
            assert time.monotonic() < deadline, page.locator("table.apps").inner_text()
            time.sleep(0.3)
            page.reload()
        assert "never synced" in down.inner_text()
        assert "no answer" in down.inner_text()
        assert "Fix: is the app running and serving at this URL?" in down.inner_text()
        assert "never synced" in cloud.inner_text()
        assert "server_kind_mismatch" in cloud.inner_text()
        assert "Fix: the app is in cloud mode and this is a dev server" in cloud.inner_text()
        assert "set INNGEST_DEV=1" in cloud.inner_text()
        shot(page, "apps-failing")
        # Asking again from the page says what happened, there and in the row.
        down.get_by_role("button", name="Resync").click()
        page.locator(".notice", has_text=f"{closed} did not sync: no answer").wait_for()
        assert "(Resync from this page)" in page.locator(f'tr[data-url="{closed}"]').inner_text()
        shot(page, "apps-resync-failed")
    finally:
        for proc in (server, app):
            if proc is not None:
                stop(proc)


def test_a_batch_runs_page_shows_every_event_of_the_batch(servers: Servers, page: Page) -> None:
    # The batch holds 4 events: the fourth fills it and its run starts at once.
    event_ids = [servers.send("dash/batch", {"n": n, "label": f"item {n}"}) for n in range(4)]
    run = servers.run_of(event_ids[0])
    assert servers.run_of(event_ids[3])["run_id"] == run["run_id"]
    servers.run_until(run["run_id"], {"Completed"})
    page.goto(f"{servers.url}/runs/{run['run_id']}")
    entries = page.locator("#events .event-entry")
    assert entries.count() == 4
    for n, event_id in enumerate(event_ids):
        entry = entries.nth(n)
        assert entry.is_visible()
        assert f'{{"n":{n},"label":"item {n}"}}' in entry.inner_text()  # its line
        link = entry.get_by_role("link", name="dash/batch")
        assert link.get_attribute("href") == f"/events/{event_id}"
    assert page.locator("#events h2").inner_text() == "Events a batch of 4"
    assert "and 3 more" in page.locator(".facts").inner_text()
    entries.nth(2).locator("summary .step-preview").click()  # opened: its data in full
    assert entries.nth(2).locator("pre.json", has_text='"label": "item 2"').is_visible()
    shot(page, "run-batch")


def test_a_run_of_many_steps_lists_a_window_and_reaches_every_step(
    servers: Servers, page: Page
) -> None:
    from tests.e2e.dashboard_app import MANY_STEPS

    total = MANY_STEPS + 1  # and the failed step before them
    run = servers.run_of(servers.send("dash/many"))
    servers.run_until(run["run_id"], {"Completed"}, timeout=60)
    page.goto(f"{servers.url}/runs/{run['run_id']}")
    note = page.locator("#steps-window")
    assert note.is_visible()
    assert f"Showing steps {total - 49}–{total} of {total} (the latest)." in note.inner_text()
    steps = page.locator("details.step")
    assert steps.count() == 50
    assert steps.last.locator(".step-name").inner_text() == f"count-{MANY_STEPS - 1}"
    # The failed step is outside the window: named, with a link to it.
    elsewhere = page.locator("#failed-elsewhere")
    assert elsewhere.is_visible()
    assert "1 failed step not in this list" in elsewhere.inner_text()
    # A step's output is fetched when it is opened.
    last = steps.last
    assert (
        last.locator(".step-preview").inner_text()
        == f'{{"n":{MANY_STEPS - 1},"square":{(MANY_STEPS - 1) ** 2}}}'
    )
    last.locator("summary").click()
    last.locator("pre.json", has_text=f'"square": {(MANY_STEPS - 1) ** 2}').wait_for()
    # The timeline stays a handful of lanes of bars, a bar standing for several steps.
    assert 1 <= page.locator("#timeline .lane").count() <= 8
    assert page.locator("#timeline .bar").count() < total
    shot(page, "run-many-steps")

    elsewhere.get_by_role("link", name="#1 refuse").click()
    page.wait_for_url(re.compile(r"from=0#step-"))
    refused = page.locator("details.step.failed")
    assert refused.get_attribute("open") is not None
    assert "step 4 refuses" in refused.inner_text()
    assert f"Showing steps 1–50 of {total}." in note.inner_text()
    page.get_by_role("link", name="Later ›").click()
    page.wait_for_url(re.compile(r"from=50"))
    assert steps.first.locator(".step-name").inner_text() == "count-49"
    page.get_by_role("link", name=f"Show all {total} steps").click()
    page.wait_for_url(re.compile(r"steps=all"))
    assert steps.count() == total
    assert f"Showing all {total} steps." in note.inner_text()
    shot(page, "run-many-steps-all")
