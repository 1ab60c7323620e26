"""Schemathesis against the server's own OpenAPI document (``/openapi.json``), for both
kinds of server: every operation gets the document's examples, its coverage cases
(boundary values, each constraint broken one at a time) and random cases, valid and
invalid (the "all" generation mode).

Each answer must be below 500, match the document (its status, content type and body
schema), carry ``X-Inngest-Server-Kind``, and a 4xx must be JSON naming the problem. On
the self-hosted kind most requests carry the signing key (and the event key); one in ten
carries none or a wrong one, and must not get a 2xx.

In process (ASGI) for the bulk of it; then a smaller run against uvicorn on a socket,
where every request goes out on one kept-alive connection, and a ``GET /health`` on that
same connection after each answer shows it survived. Nothing seeded may change.

Accepted deviations from the document: none is needed (see :data:`KNOWN_DEVIATIONS`).
"""

from __future__ import annotations

import time
import zlib
from typing import Any

import hypothesis
import orjson
import pytest
import requests
import schemathesis
from requests.adapters import HTTPAdapter
from schemathesis import Case
from schemathesis.checks import CheckContext, CheckFunction, not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from mainspring.server.openapi import openapi_document
from tests.fuzz import harness, wire
from tests.fuzz.conftest import Servers
from tests.fuzz.harness import AsgiApi, Server

#: Answers the server knowingly gives that the document does not describe: by operation
#: ("METHOD /path"), the statuses whose answers skip the document's status and body checks
#: (never the others: no 5xx, JSON naming the problem), each with its reason. None so far:
#: intended answers that a reader might take for deviations are in the document itself —
#: 410 for an unknown run on ``/v0/runs/{id}/batch|actions`` (what the SDKs expect of the
#: reference server), 404 for a path parameter holding '/'; and 405 with ``Allow`` for a
#: method a path does not have, which schemathesis checks on its own terms.
KNOWN_DEVIATIONS: dict[str, dict[int, str]] = {}

#: Share of the in-process budget spent on the socket run (it checks the connection, not
#: the document again).
SOCKET_WEIGHT = 0.3


def config(weight: float = 1.0) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "generation": {
                "mode": "all",
                "max-examples": harness.examples(weight),
                # No example database: each run explores afresh (and writes no files).
                "database": "none",
                # Credentials are the test's business (see `credentials`): left to
                # schemathesis, half the invalid cases would be missing auth, a 401 before
                # any of the request is read.
                "with-security-parameters": False,
            },
            "phases": {
                "examples": {"enabled": True},
                "coverage": {"enabled": True},
                "fuzzing": {"enabled": True},
                # No links in the document; the seeded data is what must not change.
                "stateful": {"enabled": False},
            },
        }
    )


#: The documents the two kinds serve (a test checks they are what ``/openapi.json``
#: answers), loaded with the module: schemathesis makes one test per operation of each.
DOCUMENTS = {kind: openapi_document(authenticated=kind == "start") for kind in ("dev", "start")}
dev_schema = schemathesis.openapi.from_dict(DOCUMENTS["dev"], config=config())
start_schema = schemathesis.openapi.from_dict(DOCUMENTS["start"], config=config())
dev_socket_schema = schemathesis.openapi.from_dict(DOCUMENTS["dev"], config=config(SOCKET_WEIGHT))
start_socket_schema = schemathesis.openapi.from_dict(
    DOCUMENTS["start"], config=config(SOCKET_WEIGHT)
)


@schemathesis.check
def names_the_problem(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """A 4xx is a JSON object whose ``error`` (or GraphQL ``errors``) says what is wrong."""
    if not 400 <= response.status_code < 500:
        return None
    body = orjson.loads(response.content)
    assert isinstance(body, dict), f"a {response.status_code} body is not a JSON object"
    error = body.get("error")
    if isinstance(error, str) and error.strip():
        return None
    errors = body.get("errors")
    assert isinstance(errors, list), f"a {response.status_code} names no problem"
    assert errors, f"a {response.status_code} names no problem"
    assert all(isinstance(e, dict) and str(e.get("message", "")).strip() for e in errors)
    return None


@schemathesis.check
def answers_as_the_server(ctx: CheckContext, response: Response, case: Case[Any]) -> bool | None:
    """Every answer, refusals included, carries ``X-Inngest-Server-Kind``."""
    assert response.headers.get("x-inngest-server-kind"), "no X-Inngest-Server-Kind header"
    return None


CHECKS: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    names_the_problem,
    answers_as_the_server,
]
#: What an answer listed in :data:`KNOWN_DEVIATIONS` is still checked for.
DEVIATION_CHECKS: list[CheckFunction] = [
    not_a_server_error,
    names_the_problem,
    answers_as_the_server,
]

#: Methods that may delete or replace what they name: never pointed at seeded data.
_MUTATING = {"DELETE", "POST"}
#: Answered without a signing key.
_PUBLIC = {"/health", "/openapi.json", "/e/{key}"}


def _fingerprint(case: Case[Any]) -> int:
    """A stable number from the case's content: picks its credentials reproducibly."""
    text = repr((case.method, case.path_parameters, case.query, case.headers, case.body))
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def credentials(case: Case[Any], server: Server) -> tuple[dict[str, str], bool]:
    """The headers to send ``case`` with (setting the event key in its path when it should
    be valid), and whether the credentials are missing or wrong."""
    text = repr((case.path_parameters, case.query, case.body))
    if case.method.upper() in _MUTATING and server.seeded.protects(text):
        hypothesis.reject()
    if server.dev:
        return {}, False
    variant = _fingerprint(case) % 20
    key_is_fuzzed = case.meta is not None and case.meta.is_negative_at(ParameterLocation.PATH)
    if case.path == "/e/{key}" and not key_is_fuzzed:
        key = "fuzz-wrong-key" if variant in (0, 1) else server.event_key
        case.path_parameters = {**(case.path_parameters or {}), "key": key}
    if variant == 0:
        return {}, True
    if variant == 1:
        return {"authorization": f"Bearer {harness.WRONG_SIGNING_KEY}"}, True
    return dict(server.auth), False


def judge(case: Case[Any], response: Response, refused_credentials: bool) -> None:
    guarded = case.path not in _PUBLIC or case.path == "/e/{key}"
    if refused_credentials and guarded:
        assert not 200 <= response.status_code < 300, "accepted without valid credentials"
    deviation = KNOWN_DEVIATIONS.get(f"{case.method.upper()} {case.path}", {})
    checks = DEVIATION_CHECKS if response.status_code in deviation else CHECKS
    case.validate_response(response, checks=checks)


def exercise(case: Case[Any], server: Server) -> None:
    headers, refused = credentials(case, server)
    harness.SENT["fuzz"] += 1
    api = server.api
    assert isinstance(api, AsgiApi)
    response = case.call(
        base_url=api.base_url, session=api.session, headers=headers, timeout=harness.ANSWER_WITHIN
    )
    judge(case, response, refused)


@dev_schema.parametrize()
def test_the_dev_server_against_its_document(case: Case[Any], servers: Servers) -> None:
    exercise(case, servers.asgi("dev"))


@start_schema.parametrize()
def test_the_self_hosted_server_against_its_document(case: Case[Any], servers: Servers) -> None:
    exercise(case, servers.asgi("start"))


# -- on a socket ---------------------------------------------------------------------------


class KeptAlive:
    """One ``requests`` session holding at most one connection to a live server; counts
    how many connections it had to open."""

    def __init__(self, port: int) -> None:
        self.base_url = f"http://127.0.0.1:{port}"
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1, pool_block=True)
        self.session.mount("http://", adapter)
        self.adapter = adapter
        self.used = 0.0

    def opened(self) -> int:
        pool = self.adapter.poolmanager.connection_from_url(self.base_url)
        return int(pool.num_connections)

    def probe(self) -> None:
        harness.SENT["probe"] += 1
        answer = self.session.get(f"{self.base_url}/health", timeout=harness.ANSWER_WITHIN)
        assert answer.status_code == 200, answer.text
        self.used = time.monotonic()

    def idle(self) -> bool:
        """Unused long enough that the server may have closed the connection."""
        return time.monotonic() - self.used > wire.IDLE_RECONNECT


_kept: dict[int, KeptAlive] = {}


def over_a_socket(case: Case[Any], server: Server) -> None:
    assert server.port is not None
    client = _kept.setdefault(server.port, KeptAlive(server.port))
    if client.opened() == 0 or client.idle():
        client.probe()
    opened = client.opened()
    headers, refused = credentials(case, server)
    harness.SENT["fuzz"] += 1
    response = case.call(
        base_url=client.base_url,
        session=client.session,
        headers=headers,
        timeout=harness.ANSWER_WITHIN,
    )
    closing = response.headers.get("connection", [""])[0].lower() == "close"
    client.probe()
    if closing:
        # Only a body left unread (over its cap) is worth closing the connection for.
        assert response.status_code == 413, f"{response.status_code} closed the connection"
    else:
        assert client.opened() == opened, (
            f"the connection was dropped after a {response.status_code} to {case.method} "
            f"{case.formatted_path}"
        )
    judge(case, response, refused)


@dev_socket_schema.parametrize()
def test_the_dev_server_on_a_socket_keeps_its_connections(
    case: Case[Any], servers: Servers
) -> None:
    over_a_socket(case, servers.socket("dev"))


@start_socket_schema.parametrize()
def test_the_self_hosted_server_on_a_socket_keeps_its_connections(
    case: Case[Any], servers: Servers
) -> None:
    over_a_socket(case, servers.socket("start"))


# -- afterwards ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dev", "start"])
def test_the_fuzzed_document_is_the_one_served(servers: Servers, kind: str) -> None:
    status, served = servers.asgi(kind).api.call("GET", "/openapi.json")
    assert status == 200
    assert served == DOCUMENTS[kind]


@pytest.mark.parametrize("where", ["asgi", "socket"])
@pytest.mark.parametrize("kind", ["dev", "start"])
def test_nothing_seeded_changed_and_no_5xx(servers: Servers, kind: str, where: str) -> None:
    server = servers.asgi(kind) if where == "asgi" else servers.socket(kind)
    server.assert_unchanged()
    server.assert_no_server_errors()
