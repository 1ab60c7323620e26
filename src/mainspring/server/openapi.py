"""``GET /openapi.json``: an OpenAPI 3.0 description of the server's REST and event API.

Written by hand beside the routes of :mod:`.app` (a test checks that both list the same
operations): parameters with their ranges, request bodies, answers including the errors.
It is precise enough for a schema-driven fuzzer: what it calls valid, the server accepts
(apart from what JSON Schema cannot say, such as nesting depth, which descriptions give).
"""

from __future__ import annotations

from typing import Any

import mainspring
from mainspring.engine.intake import (
    MAX_DATA_DEPTH,
    MAX_EVENT_ID,
    MAX_EVENT_NAME,
    MAX_EVENT_TS,
    MAX_EVENTS_PER_SEND,
    MIN_EVENT_TS,
)
from mainspring.engine.records import JobKind, RunStatus
from mainspring.server import checkpoint_openapi, limits, runs_openapi
from mainspring.server.openapi_parts import (
    _NOT_BLANK,
    _ULID_PATTERN,
    JSON,
    _answer,
    _body,
    _limit_query,
    _path_param,
    _query,
    _ref,
)

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "What was wrong, naming the field."},
            "status": {"type": "integer"},
            "data": {"description": "Details, for a refused registration."},
        },
    },
    "SendError": {
        "type": "object",
        "required": ["ids", "status", "error"],
        "properties": {
            "ids": {"type": "array", "items": {"type": "string"}, "maxItems": 0},
            "status": {"type": "integer"},
            "error": {"type": "string"},
        },
    },
    "GraphQLErrors": {
        "type": "object",
        "required": ["errors"],
        "properties": {
            "data": {"nullable": True},
            "errors": {
                "type": "array",
                "items": {"type": "object", "properties": {"message": {"type": "string"}}},
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status", "message"],
        "properties": {"status": {"type": "integer"}, "message": {"type": "string"}},
    },
    "EventIn": {
        "type": "object",
        "required": ["name"],
        "description": (
            f"One event: at most {512 * 1024} bytes serialised; data nests at most "
            f"{MAX_DATA_DEPTH} levels; names starting with 'inngest/' are reserved."
        ),
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_EVENT_NAME},
            "data": {
                "type": "object",
                "nullable": True,
                "description": "Any JSON object ('_inngest' is dropped); null is {}.",
            },
            "id": {
                "type": "string",
                "nullable": True,
                "maxLength": MAX_EVENT_ID,
                "description": "Idempotency key: one run per function per id.",
            },
            "ts": {
                "description": "Epoch milliseconds, from 1980 to 2100; 0, null or absent is now.",
                "anyOf": [
                    {"type": "integer", "nullable": True, "enum": [0, None]},
                    {"type": "integer", "minimum": MIN_EVENT_TS, "maximum": MAX_EVENT_TS - 1},
                ],
            },
            "user": {"description": "Accepted and ignored."},
            "v": {"description": "Accepted and ignored."},
        },
    },
    "SendRequest": {
        "oneOf": [
            _ref("EventIn"),
            {"type": "array", "items": _ref("EventIn"), "maxItems": MAX_EVENTS_PER_SEND},
        ]
    },
    "SendResponse": {
        "type": "object",
        "required": ["ids", "status"],
        "properties": {
            "ids": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Internal event ids (ULIDs), in request order.",
            },
            "status": {"type": "integer", "enum": [200]},
        },
    },
    "Registration": {
        "type": "object",
        "description": "An app's functions (protocol §1.3); checked in full by the server.",
        "required": ["appName", "url", "functions"],
        "properties": {
            "url": {"type": "string"},
            "appName": {"type": "string"},
            "deployType": {"type": "string"},
            "framework": {"type": "string"},
            "sdk": {"type": "string"},
            "v": {"type": "string"},
            "functions": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "object", "required": ["id", "triggers", "steps"]},
            },
        },
    },
    "RegisterResponse": {
        "type": "object",
        "required": ["ok"],
        "properties": {
            "ok": {"type": "boolean"},
            "modified": {"type": "boolean"},
            "sync_id": {"type": "string"},
            "app_id": {"type": "string"},
        },
    },
    "InvokeRequest": {
        "type": "object",
        "properties": {"data": {"type": "object", "description": "The invoked event's data."}},
    },
    "InvokeResponse": {
        "type": "object",
        "required": ["id", "status"],
        "properties": {"id": {"type": "string"}, "status": {"type": "integer"}},
    },
    "StoredEvent": {
        "type": "object",
        "required": ["internal_id", "id", "name", "data", "ts", "received_at"],
        "properties": {
            "internal_id": {"type": "string"},
            "id": {"type": "string"},
            "name": {"type": "string"},
            "data": {
                "type": "object",
                "description": 'A value that cannot be answered shows as {"_unreadable": reason}.',
            },
            "ts": {"type": "integer"},
            "received_at": {"type": "integer"},
            "note": {
                "type": "string",
                "nullable": True,
                "description": (
                    "GET /v1/events/{id} only: why the event started no run "
                    "(\"no function is triggered by 'x'\"); null when it started some."
                ),
            },
        },
    },
    "Run": {
        "type": "object",
        "required": ["run_id", "function_id", "event_id", "status"],
        "properties": {
            "run_id": {"type": "string"},
            "function_id": {"type": "string"},
            "event_id": {"type": "string"},
            "status": {
                "type": "string",
                "enum": [s.value for s in RunStatus],
                "description": (
                    "A RunStatus value, as the CLI and the pages show it. GraphQL keeps the "
                    "reference's enum: Queued is QUEUED, Running RUNNING, Completed "
                    "COMPLETED, Failed FAILED, Cancelled CANCELLED, Skipped SKIPPED."
                ),
            },
            "run_started_at": {"type": "integer", "nullable": True},
            "ended_at": {"type": "integer", "nullable": True},
            "output": {"nullable": True},
            "error": {"type": "object", "nullable": True},
            "rerun_of": {
                "type": "object",
                "nullable": True,
                "description": (
                    "For a run a rerun started: the run it reruns (run_id), the step it was "
                    "rerun from (from_step, null: from the start), how many recorded steps "
                    "it reused (copied_steps) and 'rerun of <id>[ from step <s>]' (text)."
                ),
            },
            "waiting_for": {"type": "object", "nullable": True},
            "last_error": {
                "type": "object",
                "nullable": True,
                "description": (
                    "While a failed attempt waits for its retry: the error, the step "
                    "(null outside steps), the 0-based attempt that failed, failed_at, and "
                    "the next attempt and when it is due (epoch ms)."
                ),
                "properties": {
                    "error": {"type": "object"},
                    "step": {"type": "string", "nullable": True},
                    "attempt": {"type": "integer"},
                    "failed_at": {"type": "integer"},
                    "next_attempt": {"type": "integer"},
                    "next_attempt_at": {"type": "integer"},
                },
            },
            "app_version": {
                "type": "string",
                "nullable": True,
                "description": "The app version that started the run, if the app has one.",
            },
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "kind", "run_at", "attempt"],
        "properties": {
            "id": {"type": "string"},
            "kind": {"type": "string", "enum": [k.value for k in JobKind]},
            "step_id": {"type": "string", "nullable": True},
            "run_at": {"type": "integer"},
            "attempt": {"type": "integer"},
        },
    },
    "GraphQLRequest": {
        "type": "object",
        "required": ["query"],
        "properties": {
            "query": {"type": "string", "pattern": _NOT_BLANK},
            "variables": {"type": "object", "nullable": True},
            "operationName": {"type": "string", "nullable": True},
        },
    },
    "GraphQLResponse": {
        "type": "object",
        "properties": {"data": {"nullable": True}, "errors": {"type": "array"}},
    },
}


def data_of(schema: dict[str, Any]) -> dict[str, Any]:
    """``{"data": <schema>}``, the REST API's envelope."""
    return {"type": "object", "required": ["data"], "properties": {"data": schema}}


def _operations() -> dict[str, dict[str, Any]]:
    """Every route of the app, by path then method (authentication added after)."""
    not_found = _answer("No such item.", "Error")
    bad = _answer("A parameter or the body is malformed; the message names it.", "Error")
    too_large = _answer("The body is over this route's limit (the connection is closed).", "Error")
    run_id = _path_param("run_id", "A run id.")
    event_id = _path_param("event_id", "An internal event id.")
    return {
        "/health": {
            "get": {
                "operationId": "health",
                "summary": "Whether the server is up.",
                "responses": {"200": _answer("Up.", "Health")},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document.",
                "responses": {"200": _answer("The OpenAPI document.", {"type": "object"})},
            }
        },
        "/dev": {
            "get": {
                "operationId": "devInfo",
                "summary": "What the server is, how it was started, what it serves.",
                "responses": {"200": _answer("Server information.", {"type": "object"})},
            }
        },
        "/v0/gql": {
            "get": {
                "operationId": "graphqlGet",
                "summary": "A GraphQL query in the query string.",
                "parameters": [
                    _query(
                        "query",
                        {"type": "string", "pattern": _NOT_BLANK},
                        "The query.",
                        required=True,
                    ),
                    {
                        "name": "variables",
                        "in": "query",
                        "required": False,
                        "description": "The query's variables: a JSON object, as JSON text.",
                        "content": {JSON: {"schema": {"type": "object"}}},
                    },
                    _query("operationName", {"type": "string"}, "Which operation to run."),
                ],
                "responses": {
                    "200": _answer(
                        "The result; errors inside the query are in 'errors'.", "GraphQLResponse"
                    ),
                    "400": _answer("Not a GraphQL request.", "GraphQLErrors"),
                },
            },
            "post": {
                "operationId": "graphqlPost",
                "summary": "A GraphQL query.",
                "requestBody": _body("GraphQLRequest", "The query, its variables and operation."),
                "responses": {
                    "200": _answer(
                        "The result; errors inside the query are in 'errors'.", "GraphQLResponse"
                    ),
                    "400": _answer("Not a GraphQL request.", "GraphQLErrors"),
                    "413": too_large,
                },
            },
        },
        "/e/{key}": {
            "post": {
                "operationId": "sendEvents",
                "summary": "Send one event or an array of events (protocol §8.3).",
                "parameters": [
                    _path_param("key", "The event key (any non-empty key in dev mode)."),
                    {
                        "name": "x-inngest-event-id-seed",
                        "in": "header",
                        "required": False,
                        "description": (
                            "'<unix ms>,<base64 of 10 bytes>': the same seed gives the same ids."
                        ),
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": _body("SendRequest", f"At most {limits.EVENTS_BODY_BYTES} bytes."),
                "responses": {
                    "200": _answer("Stored; the events' internal ids.", "SendResponse"),
                    "400": _answer(
                        "An event is refused; the message names it and the field.", "SendError"
                    ),
                    "413": _answer(
                        "The body is over the limit (the connection is closed).", "SendError"
                    ),
                    "503": _answer(
                        "Nothing was recorded (undone with another write that failed): send again.",
                        "SendError",
                    ),
                },
            }
        },
        "/fn/register": {
            "post": {
                "operationId": "register",
                "summary": "Sync an app's functions (protocol §1.3).",
                "parameters": [
                    {
                        "name": "x-inngest-expected-server-kind",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                    }
                ],
                "requestBody": _body(
                    "Registration", f"At most {limits.REGISTER_BODY_BYTES} bytes."
                ),
                "responses": {
                    "200": _answer("Synced.", "RegisterResponse"),
                    "400": bad,
                    "413": too_large,
                },
            }
        },
        "/fn/remove": {
            "delete": {
                "operationId": "removeApp",
                "summary": "Remove the app synced from a URL.",
                "parameters": [
                    _query(
                        "url", {"type": "string", "minLength": 1}, "The app's URL.", required=True
                    )
                ],
                "responses": {
                    "200": _answer("Removed.", {"type": "object"}),
                    "400": bad,
                    "404": not_found,
                },
            }
        },
        "/invoke/{slug}": {
            "post": {
                "operationId": "invoke",
                "summary": "Start a function by id, whatever its triggers.",
                "parameters": [_path_param("slug", "The function id.")],
                "requestBody": _body(
                    "InvokeRequest",
                    f"Optional; at most {limits.INVOKE_BODY_BYTES} bytes.",
                    required=False,
                ),
                "responses": {
                    "200": _answer("Started; the invocation event's id.", "InvokeResponse"),
                    "400": bad,
                    "404": not_found,
                    "413": too_large,
                },
            }
        },
        "/v1/apps/{app}/functions": {
            "get": {
                "operationId": "appFunctions",
                "summary": "An app's functions.",
                "parameters": [_path_param("app", "The app's name.")],
                "responses": {
                    "200": _answer("The functions.", data_of({"type": "object"})),
                    "404": not_found,
                },
            }
        },
        "/v1/events": {
            "get": {
                "operationId": "listEvents",
                "summary": "Recent events, newest first.",
                "parameters": [
                    _query("name", {"type": "string"}, "Only events of this name."),
                    _limit_query(),
                    _query(
                        "cursor",
                        {"type": "string", "pattern": _ULID_PATTERN},
                        "The internal id of the last event of the previous page.",
                    ),
                ],
                "responses": {
                    "200": _answer(
                        "A page of events.",
                        {
                            "type": "object",
                            "required": ["data", "metadata"],
                            "properties": {
                                "data": {"type": "array", "items": _ref("StoredEvent")},
                                "metadata": {"type": "object"},
                            },
                        },
                    ),
                    "400": bad,
                },
            }
        },
        "/v1/events/{event_id}": {
            "get": {
                "operationId": "getEvent",
                "summary": "One event.",
                "parameters": [event_id],
                "responses": {
                    "200": _answer("The event.", data_of(_ref("StoredEvent"))),
                    "404": not_found,
                },
            }
        },
        "/v1/events/{event_id}/runs": {
            "get": {
                "operationId": "eventRuns",
                "summary": "The runs an event started.",
                "parameters": [event_id],
                "responses": {
                    "200": _answer("The runs.", data_of({"type": "array", "items": _ref("Run")}))
                },
            }
        },
        "/v1/runs/{run_id}": {
            "get": {
                "operationId": "getRun",
                "summary": "One run.",
                "parameters": [run_id],
                "responses": {"200": _answer("The run.", data_of(_ref("Run"))), "404": not_found},
            },
            "delete": {
                "operationId": "cancelRun",
                "summary": "Cancel a run.",
                "parameters": [run_id],
                "responses": {
                    "200": _answer(
                        "Whether it was cancelled (false: it had finished).",
                        data_of(
                            {"type": "object", "properties": {"cancelled": {"type": "boolean"}}}
                        ),
                    ),
                    "404": not_found,
                },
            },
        },
        "/v1/runs/{run_id}/jobs": {
            "get": {
                "operationId": "runJobs",
                "summary": "A run's queued work, soonest first.",
                "parameters": [run_id],
                "responses": {
                    "200": _answer("The jobs.", data_of({"type": "array", "items": _ref("Job")})),
                    "404": not_found,
                },
            }
        },
        "/v0/runs/{run_id}": {
            "delete": {
                "operationId": "cancelRunV0",
                "summary": "Cancel a run (the SDKs' form).",
                "parameters": [run_id],
                "responses": {"204": {"description": "Cancelled."}, "404": not_found},
            }
        },
        "/v0/runs/{run_id}/batch": {
            "get": {
                "operationId": "runBatch",
                "summary": "A run's events, for an SDK told to fetch them (protocol §2.4).",
                "parameters": [run_id],
                "responses": {
                    "200": _answer("The events.", {"type": "array", "items": {"type": "object"}}),
                    "410": _answer("No such run (any more).", "Error"),
                },
            }
        },
        "/v0/runs/{run_id}/actions": {
            "get": {
                "operationId": "runActions",
                "summary": "A run's step results by step id (protocol §2.4).",
                "parameters": [run_id],
                "responses": {
                    "200": _answer("The memoised steps.", {"type": "object"}),
                    "410": _answer("No such run (any more).", "Error"),
                },
            }
        },
    }


#: Answered whatever the configuration: no bearer key needed.
_PUBLIC = {"/health", "/openapi.json", "/e/{key}"}


def openapi_document(*, authenticated: bool) -> dict[str, Any]:
    """The document for a server that requires a bearer signing key (``mainspring
    start``) or not (``mainspring dev``)."""

    paths = {**_operations(), **runs_openapi.operations(), **checkpoint_openapi.operations()}
    unexpected = _answer("An unexpected error (the connection stays open).", "Error")
    no_route = _answer("No such route (a path parameter holding '/') or item.", "Error")
    for path, item in paths.items():
        for operation in item.values():
            responses = operation["responses"]
            responses["500"] = unexpected
            if "{" in path:
                responses.setdefault("404", no_route)
            if authenticated and path == "/e/{key}":
                responses["401"] = _answer("Event key not found.", "SendError")
            elif authenticated and path not in _PUBLIC:
                responses["401"] = _answer("No valid bearer signing key.", "Error")
            if authenticated and path in _PUBLIC:
                operation["security"] = []
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": "Mainspring server",
            "version": mainspring.__version__,
            "description": (
                "The REST and event API of `mainspring dev` / `mainspring start`. Every "
                "answer carries X-Inngest-Server-Kind; errors are JSON naming the problem."
            ),
        },
        "paths": paths,
        "components": {"schemas": {**_SCHEMAS, **runs_openapi.SCHEMAS}},
    }
    if authenticated:
        document["components"]["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "The signing key, raw or hashed (protocol §9).",
            }
        }
        document["security"] = [{"bearerAuth": []}]
    return document
