"""The GraphQL API (``/v0/gql``) fuzzed two ways:

* schemathesis, from the schema's introspection: valid queries of every root field with
  random arguments, in process, on both kinds of server;
* hypothesis, with hostile documents over a live connection: deep nesting, many aliases,
  fragment bombs, long lists, page sizes and numbers past every limit, variables of the
  wrong type, text that is not UTF-8, giant strings, garbage.

Never a 5xx, always an answer within :data:`~tests.fuzz.harness.ANSWER_WITHIN` seconds,
and a failing field is always one of the API's deliberate refusals (a ``ValueError``
naming the argument), never an unexpected exception in a resolver (see
:class:`ResolverErrors`). The seeded data reads back unchanged afterwards.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import schemathesis
from graphql import GraphQLError
from hypothesis import assume, given
from hypothesis import strategies as st
from schemathesis import Case
from schemathesis.graphql import nodes

from mainspring.server import limits
from mainspring.server.graphql import limits as gql_limits
from mainspring.server.graphql.schema import schema as gql_schema
from tests.fuzz import harness
from tests.fuzz import strategies as hs
from tests.fuzz.conftest import Servers
from tests.fuzz.harness import AsgiApi, Server
from tests.fuzz.test_routes import fuzz
from tests.fuzz.wire import attack, request_bytes


class ResolverErrors(logging.Handler):
    """Collects the exceptions strawberry logs for failing fields that are not deliberate
    refusals: the resolvers refuse bad arguments with ``ValueError`` (and graphql-core
    reports bad documents and variables with ``GraphQLError``); anything else is a bug."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.unexpected: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info is None or record.exc_info[1] is None:
            return
        error = record.exc_info[1]
        if not isinstance(error, (ValueError, GraphQLError)):
            self.unexpected.append(f"{type(error).__name__}: {error} ({record.getMessage()})")

    def check(self) -> None:
        """No unexpected exception since the last check."""
        found, self.unexpected = self.unexpected, []
        assert not found, found[:5]


@pytest.fixture(scope="module")
def resolver_errors() -> Iterator[ResolverErrors]:
    handler = ResolverErrors()
    logger = logging.getLogger("strawberry.execution")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture(params=["dev", "start"])
def server(request: pytest.FixtureRequest, servers: Servers) -> Iterator[Server]:
    live = servers.socket(request.param)
    yield live
    live.assert_no_server_errors()
    live.assert_unchanged()


# -- schemathesis, from the introspection --------------------------------------------------


def config(weight: float) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {"generation": {"max-examples": harness.examples(weight), "database": "none"}}
    )


#: The mutations' run ids (the reference's ULID scalar): ids that look real, and any text.
schemathesis.graphql.scalar(
    "ULID",
    st.one_of(
        st.from_regex(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", fullmatch=True), st.text(max_size=40)
    ).map(nodes.String),
)
INTROSPECTION = gql_schema.introspect()
dev_gql = schemathesis.graphql.from_dict(INTROSPECTION, config=config(4))
start_gql = schemathesis.graphql.from_dict(INTROSPECTION, config=config(1))


def _judge_graphql(case: Case[Any], server: Server, resolver_errors: ResolverErrors) -> None:
    api = server.api
    assert isinstance(api, AsgiApi)
    harness.SENT["fuzz"] += 1
    response = case.call(
        base_url=f"{api.base_url}/v0/gql",
        session=api.session,
        headers=dict(server.auth),
        timeout=harness.ANSWER_WITHIN,
    )
    assert response.status_code == 200, response.text
    assert response.elapsed < harness.ANSWER_WITHIN
    answer = orjson.loads(response.content)
    assert "data" in answer, answer
    for error in answer.get("errors", []):
        assert str(error.get("message", "")).strip(), answer
    resolver_errors.check()


@dev_gql.parametrize()
def test_every_root_field_on_the_dev_server(
    case: Case[Any], servers: Servers, resolver_errors: ResolverErrors
) -> None:
    _judge_graphql(case, servers.asgi("dev"), resolver_errors)


@start_gql.parametrize()
def test_every_root_field_on_the_self_hosted_server(
    case: Case[Any], servers: Servers, resolver_errors: ResolverErrors
) -> None:
    _judge_graphql(case, servers.asgi("start"), resolver_errors)


# -- hostile documents ---------------------------------------------------------------------


def _deep_fields(levels: int) -> str:
    """A real chain of fields ``levels`` deep: runs, edges, node, trace, then spans."""
    spans = max(0, levels - 5)
    inner = "childrenSpans { " * spans + "name" + " }" * spans
    return "{ runs { edges { node { trace { " + inner + " } } } } }"


def _inline_nesting(levels: int) -> str:
    """Braces ``levels`` deep with no field deeper than 2: inline fragments."""
    inner = max(0, levels - 2)
    return "{ " + "... on Query { " * inner + "apps { name }" + " }" * inner + " }"


def _aliases(count: int) -> str:
    return "{ " + " ".join(f"a{i}: apps {{ name }}" for i in range(count)) + " }"


def _fragment_bomb(levels: int) -> str:
    """Each fragment spreads the one before twice: 2**levels fields once expanded."""
    parts = ["fragment F0 on App { name }"]
    parts += [f"fragment F{i} on App {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, levels)]
    return f"{{ apps {{ ...F{levels - 1} }} }} " + " ".join(parts)


def _long_list(count: int, item: str) -> str:
    items = ", ".join([item] * count)
    return f"{{ runs(filter: {{functionIDs: [{items}]}}) {{ edges {{ cursor }} }} }}"


def _padded(size: int) -> str:
    """A valid query of ``size`` bytes (a long string argument)."""
    head, tail = '{ run(runID: "', '") { id } }'
    return head + "x" * max(0, size - len(head) - len(tail)) + tail


DOCUMENTS = st.one_of(
    hs.TEXT,
    st.builds(_deep_fields, st.one_of(hs.around(gql_limits.MAX_DEPTH), st.sampled_from([200]))),
    st.builds(_inline_nesting, hs.around(gql_limits.MAX_NESTING)),
    st.builds(lambda n: "{" * n + "}" * n, st.sampled_from([33, 1000, 100_000])),
    st.builds(
        lambda n: "{ runs(after: " + "[" * n + "]" * n + ") { edges { cursor } } }",
        hs.around(gql_limits.MAX_NESTING, 5000),
    ),
    st.builds(_aliases, st.one_of(hs.around(gql_limits.MAX_ALIASES), st.just(2000))),
    st.builds(_fragment_bomb, st.integers(2, 40)),
    st.builds(
        _long_list,
        hs.around(gql_limits.MAX_LIST_ITEMS, 10_000),
        st.sampled_from(['"x"', "1", "null", "{}"]),
    ),
    st.builds(
        "{{ runs(first: {}) {{ edges {{ cursor }} }} }}".format,
        st.one_of(hs.around(1, gql_limits.MAX_PAGE), hs.EDGE_INTS),
    ),
    st.builds(
        "{{ events(query: {{limit: {}}}) {{ id }} }}".format,
        st.one_of(hs.around(1, gql_limits.MAX_PAGE), hs.EDGE_INTS, hs.EDGE_FLOATS),
    ),
    st.builds(_padded, hs.around(gql_limits.MAX_QUERY_BYTES)),
    st.builds(
        lambda n: "{ " + "__typename " * n + "}",
        hs.around(gql_limits.MAX_FIELDS, gql_limits.MAX_TOKENS),
    ),
    st.sampled_from(
        [
            "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { name } } }"
            " } } } } } }",
            "{ __schema { types { fields { type { fields { type { fields { name } } } } } } } }",
            "mutation { apps { name } }",
            "subscription { apps { name } }",
            "query A { apps { name } } query B { functions { id } }",
            "fragment F on Query { ...F } { ...F }",
            "fragment F on Query { apps { name } }",
            "{ apps { name } } { apps { name } }",
            '{ run(runID: "\\ud800") { id } }',
            '{ runTraceSpanOutputByID(outputID: "!!!") { data } }',
            '{ runTraceSpanOutputByID(outputID: "eyJ4IjoxfQ==") { data } }',
            '{ runs(filter: {from: "2024-13-45T99:99:99Z"}) { edges { cursor } } }',
            '{ runs(filter: {from: "0001-01-01T00:00:00"}, '
            "orderBy: [{field: ENDED_AT, direction: ASC}]) { edges { cursor } } }",
            '{ runs(after: "not-a-cursor") { edges { cursor } } }',
            '{ events(query: {lastEventId: "zzz", name: "\\u0000"}) { id raw payload } }',
            "query ($x: Int = 99999999999) { runs(first: $x) { edges { cursor } } }",
            "{ apps @skip(if: true) { name } }",
            "{ apps @unknown { name } }",
            '{ run(runID: """a\nb""") { id } }',
        ]
    ),
)

VARIABLE_QUERIES = [
    "query ($n: Int) { runs(first: $n) { edges { cursor } } }",
    "query ($id: String!) { run(runID: $id) { id status output } }",
    "query ($f: RunsFilterV2) { runs(filter: $f) { edges { cursor } } }",
    "query ($q: EventsQuery) { events(query: $q) { id } }",
    "query ($o: [RunsV2OrderBy!]) { runs(orderBy: $o) { edges { cursor } } }",
    "query ($e: EventQuery!) { event(query: $e) { id totalRuns } }",
]

GIANT = st.builds(
    lambda n: "x" * n,
    st.sampled_from(
        [gql_limits.MAX_QUERY_BYTES, limits.GRAPHQL_BODY_BYTES - 200, limits.GRAPHQL_BODY_BYTES]
    ),
)
VARIABLES = st.one_of(
    st.none(),
    hs.JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "n": st.one_of(hs.INTS, hs.EDGE_FLOATS, hs.TEXT, hs.JSON),
            "id": st.one_of(hs.TEXT, hs.INTS, GIANT, hs.JSON),
            "f": st.one_of(
                hs.JSON,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "from": st.one_of(hs.TEXT, hs.INTS),
                        "functionIDs": st.one_of(
                            st.lists(hs.TEXT, max_size=3),
                            st.builds(lambda n: ["f"] * n, hs.around(gql_limits.MAX_LIST_ITEMS)),
                        ),
                        "status": st.lists(
                            st.sampled_from(["RUNNING", "COMPLETED", "nope", 1]), max_size=4
                        ),
                    },
                ),
            ),
            "q": st.one_of(
                hs.JSON,
                st.fixed_dictionaries({}, optional={"limit": hs.INTS, "lastEventId": hs.TEXT}),
            ),
            "o": hs.JSON,
            "e": st.one_of(
                hs.JSON, st.fixed_dictionaries({"eventId": st.one_of(hs.TEXT, hs.INTS)})
            ),
        },
    ),
)


def _body(query: Any, variables: Any, operation: Any, ascii_only: bool) -> bytes:
    payload: dict[str, Any] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    if operation is not None:
        payload["operationName"] = operation
    return hs.dumps(payload, ascii_only=ascii_only, spaced=False)


REQUESTS = st.one_of(
    st.builds(_body, DOCUMENTS, st.none(), st.none(), st.booleans()),
    st.builds(_body, st.sampled_from(VARIABLE_QUERIES), VARIABLES, st.none(), st.booleans()),
    st.builds(_body, DOCUMENTS, VARIABLES, st.one_of(hs.TEXT, hs.INTS), st.booleans()),
    st.builds(_body, st.one_of(hs.JSON, GIANT), hs.JSON, hs.JSON, st.booleans()),
    hs.encoded(hs.JSON),
    hs.NOT_JSON,
    st.builds(
        lambda n: (
            b'[{"query": "{ apps { name } }"}' + b', {"query": "{ apps { name } }"}' * n + b"]"
        ),
        st.integers(0, 50),
    ),
)


@fuzz(weight=4)
@given(body=REQUESTS)
def test_hostile_posts(server: Server, resolver_errors: ResolverErrors, body: bytes) -> None:
    headers = {**server.auth, "content-type": "application/json"}
    raw = request_bytes("POST", "/v0/gql", headers=headers, body=body)
    answer = attack(server, raw, method="POST", expect={200, 400, 413})
    if answer.status == 200:
        assert "data" in answer.json(), answer
    resolver_errors.check()


def _variables_text(value: Any) -> str:
    return hs.dumps(value, ascii_only=False, spaced=False).decode("utf-8", "surrogatepass")


@fuzz(weight=1)
@given(
    query=st.one_of(DOCUMENTS, hs.TEXT),
    variables=st.one_of(st.none(), hs.TEXT, VARIABLES.map(_variables_text)),
    raw_escape=st.one_of(st.none(), hs.RAW_ESCAPES),
)
def test_hostile_gets(
    server: Server,
    resolver_errors: ResolverErrors,
    query: str,
    variables: str | None,
    raw_escape: str | None,
) -> None:
    assume(len(query) < 200_000)
    pairs = [f"query={hs.quoted(query)}"]
    if variables is not None:
        pairs.append(f"variables={hs.quoted(variables)}")
    if raw_escape is not None:
        pairs.append(f"operationName={raw_escape}")
    target = "/v0/gql?" + "&".join(pairs)
    raw = request_bytes("GET", target, headers=server.auth)
    attack(server, raw, method="GET", expect={200, 400})
    resolver_errors.check()


def test_the_introspection_fuzzed_is_the_one_served(servers: Servers) -> None:
    """The schema fuzzed above is the server's (its types, as ``__schema`` lists them)."""
    query = "{ __schema { types { name kind } } }"
    status, answer = servers.asgi("dev").api.call("POST", "/v0/gql", body={"query": query})
    assert status == 200, answer
    served = {(t["name"], t["kind"]) for t in answer["data"]["__schema"]["types"]}
    known = {(t["name"], t["kind"]) for t in INTROSPECTION["__schema"]["types"]}
    assert served == known


def test_get_query_strings_are_decoded(servers: Servers) -> None:
    """Sanity of the GET form used above: a plain query answers."""
    server = servers.socket("dev")
    query = urllib.parse.quote("{ apps { name } }")
    answer = attack(
        server, request_bytes("GET", f"/v0/gql?query={query}"), method="GET", expect={200}
    )
    assert harness.KEEP in answer.body.decode()
