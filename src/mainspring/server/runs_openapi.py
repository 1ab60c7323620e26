"""The OpenAPI description of :mod:`.runs_api`'s routes, merged into ``/openapi.json`` by
:func:`~.openapi.openapi_document`."""

from __future__ import annotations

from typing import Any

from mainspring.engine.records import RunStatus
from mainspring.server.openapi_parts import (
    _ULID_PATTERN,
    _answer,
    _body,
    _limit_query,
    _path_param,
    _query,
    _ref,
)
from mainspring.server.run_wait import (
    DEFAULT_WAIT_S,
    MAX_ID_CHARS,
    MAX_WAIT_IDS,
    MAX_WAIT_S,
)
from mainspring.server.runs_api import (
    MAX_EPOCH_MS,
    MAX_EXPRESSION_CHARS,
    MAX_FILTER_VALUES,
)

#: How the statuses read in each API: REST, the CLI and the pages use the ``RunStatus``
#: values; GraphQL keeps the reference's enum.
STATUS_VOCABULARY = (
    "Run statuses are RunStatus values everywhere but GraphQL: Queued, Running, Completed, "
    "Failed, Cancelled, Skipped (a filter takes them in any case). GraphQL keeps the "
    "reference's FunctionRunStatus enum: QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, "
    "SKIPPED (Queued is QUEUED, and so on)."
)

_TIME = {
    "description": "RFC 3339 (no offset: UTC), or epoch milliseconds.",
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "integer", "minimum": 0, "maximum": MAX_EPOCH_MS},
    ],
}
_EXPRESSION = {"type": "string", "pattern": r"\S", "maxLength": MAX_EXPRESSION_CHARS}
_IDS = {
    "type": "array",
    "items": {"type": "string", "minLength": 1, "maxLength": MAX_ID_CHARS},
    "maxItems": MAX_WAIT_IDS,
    "nullable": True,
}

SCHEMAS: dict[str, Any] = {
    "RunWaitRequest": {
        "type": "object",
        "description": (
            f"At least one id, at most {MAX_WAIT_IDS} of both lists together. The runs "
            "waited for are those each event had started when the request arrived, then "
            "the runs named (each run once)."
        ),
        "properties": {
            "event_ids": {**_IDS, "description": "Event ids, as POST /e/{key} answers them."},
            "run_ids": {**_IDS, "description": "Run ids."},
            "timeout": {
                "type": "number",
                "minimum": 0,
                "maximum": MAX_WAIT_S,
                "default": DEFAULT_WAIT_S,
                "description": "Seconds to wait at most (0: answer at once).",
            },
        },
    },
    "RunWaitAnswer": {
        "type": "object",
        "required": ["data", "done"],
        "properties": {
            "data": {
                "type": "array",
                "items": _ref("Run"),
                "description": (
                    "The runs, as GET /v1/runs/{run_id} shows them less waiting_for, "
                    "last_error and rerun_of (each would cost a read per run)."
                ),
            },
            "done": {
                "type": "boolean",
                "description": "Whether every run had finished (false: the timeout passed).",
            },
        },
    },
    "RunPage": {
        "type": "object",
        "required": ["data", "cursor"],
        "properties": {
            "data": {"type": "array", "items": _ref("Run")},
            "cursor": {
                "type": "string",
                "nullable": True,
                "description": (
                    "Pass as 'cursor' for the next page; null when there is none. With 'q', "
                    "a page may hold fewer runs than 'limit' and still have a next page "
                    "(one request reads at most 10,000 runs)."
                ),
            },
        },
    },
    "RerunRequest": {
        "type": "object",
        "properties": {
            "from_step": {
                "type": "string",
                "minLength": 1,
                "nullable": True,
                "description": (
                    "Rerun from this step (its id as the function wrote it, or its hashed "
                    "id): the steps recorded before it reuse their recorded results."
                ),
            }
        },
    },
    "CancellationRequest": {
        "type": "object",
        "required": ["function_id"],
        "properties": {
            "function_id": {
                "type": "string",
                "minLength": 1,
                "description": "The function id (or its slug within 'app_id').",
            },
            "app_id": {"type": "string", "nullable": True},
            "started_after": {**_TIME, "nullable": True},
            "started_before": {**_TIME, "nullable": True},
            "if": {
                **_EXPRESSION,
                "nullable": True,
                "description": "CEL on the triggering 'event' (and 'events' for a batch).",
            },
        },
    },
    "App": {
        "type": "object",
        "description": (
            "An app the server serves, or an app URL that serves none (name null): a -u URL "
            "that never synced, or one whose registration was refused. The sync fields "
            "cover the time since the server started (it keeps them in memory)."
        ),
        "required": ["name", "url", "function_count", "last_synced_at", "last_sync_error"],
        "properties": {
            "name": {"type": "string", "nullable": True},
            "url": {
                "type": "string",
                "nullable": True,
                "description": "Its serve URL; null for functions loaded in process.",
            },
            "sdk": {"type": "string", "nullable": True, "description": "e.g. py:v0.5.1"},
            "app_version": {"type": "string", "nullable": True},
            "function_count": {"type": "integer", "minimum": 0},
            "function_ids": {"type": "array", "items": {"type": "string"}},
            "last_synced_at": {
                "type": "integer",
                "nullable": True,
                "description": "When it last synced (registered), epoch milliseconds.",
            },
            "last_sync_error": {
                "type": "object",
                "nullable": True,
                "description": (
                    "The last failed attempt to sync it (kept after a later sync: compare "
                    "'at' with last_synced_at, or read sync_failing)."
                ),
                "required": ["at", "message", "source"],
                "properties": {
                    "at": {"type": "integer", "description": "Epoch milliseconds."},
                    "message": {"type": "string"},
                    "fix": {"type": "string", "nullable": True, "description": "What to try."},
                    "source": {
                        "type": "string",
                        "enum": ["poll", "resync", "register"],
                        "description": (
                            "Who saw it fail: the server asking the app to sync, the "
                            "dashboard's Resync, or the app's registration being refused."
                        ),
                    },
                },
            },
            "sync_failing": {
                "type": "boolean",
                "description": "Whether the last attempt failed (no sync since).",
            },
        },
    },
}


def _data(schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": ["data"], "properties": {"data": schema}}


def operations() -> dict[str, dict[str, Any]]:
    bad = _answer("A parameter or the body is malformed; the message names it.", "Error")
    not_found = _answer("No such item.", "Error")
    too_large = _answer("The body is over this route's limit (the connection is closed).", "Error")
    status = {"type": "string", "enum": [s.value for s in RunStatus]}
    return {
        "/v1/runs": {
            "get": {
                "operationId": "listRuns",
                "summary": "Runs, newest first, filtered; cursor paging.",
                "description": STATUS_VOCABULARY,
                "parameters": [
                    _query(
                        "function_id",
                        {
                            "type": "array",
                            "items": {"type": "string", "minLength": 1},
                            "maxItems": MAX_FILTER_VALUES,
                        },
                        "Only runs of these functions (repeat the parameter).",
                    ),
                    _query(
                        "status",
                        {"type": "array", "items": status, "maxItems": MAX_FILTER_VALUES},
                        "Only runs in these statuses (repeat the parameter).",
                    ),
                    _query("from", _TIME, "Only runs created at or after this time."),
                    _query("until", _TIME, "Only runs created before this time."),
                    _query(
                        "q",
                        _EXPRESSION,
                        "A CEL expression on the triggering event, e.g. "
                        "'event.data.user == \"a\"' ('events' holds a batch's).",
                    ),
                    _limit_query(),
                    _query(
                        "cursor",
                        {"type": "string", "pattern": _ULID_PATTERN},
                        "The 'cursor' of the previous page (the id of its last run).",
                    ),
                ],
                "responses": {"200": _answer("A page of runs.", "RunPage"), "400": bad},
            }
        },
        "/v1/runs/wait": {
            "post": {
                "operationId": "waitForRuns",
                "summary": "Answer once the runs of these events (or these runs) have finished.",
                "description": (
                    "A long poll: the answer comes when the last run finishes, or when "
                    "'timeout' seconds have passed ('done' false: ask again). No poll "
                    "interval: the server wakes the request as the run settles."
                ),
                "requestBody": _body("RunWaitRequest", "What to wait for, and how long."),
                "responses": {
                    "200": _answer("The runs as they are now.", "RunWaitAnswer"),
                    "400": bad,
                    "404": _answer("A run id that names no run.", "Error"),
                    "413": too_large,
                },
            }
        },
        "/v1/runs/{run_id}/rerun": {
            "post": {
                "operationId": "rerunRun",
                "summary": "Start a new run of the run's function with the same events.",
                "parameters": [_path_param("run_id", "A run id.")],
                "requestBody": _body(
                    "RerunRequest", "Optional: the step to rerun from.", required=False
                ),
                "responses": {
                    "200": _answer(
                        "Started; the new run's id.",
                        _data(
                            {
                                "type": "object",
                                "required": ["run_id"],
                                "properties": {"run_id": {"type": "string"}},
                            }
                        ),
                    ),
                    "400": _answer(
                        "A step the run never recorded, a function no longer registered, or "
                        "a malformed body; the message says which.",
                        "Error",
                    ),
                    "404": not_found,
                    "413": too_large,
                },
            }
        },
        "/v1/cancellations": {
            "post": {
                "operationId": "cancelRuns",
                "summary": "Cancel a function's unfinished runs created in a window.",
                "requestBody": _body("CancellationRequest", "Which runs."),
                "responses": {
                    "200": _answer(
                        "The ids of the runs cancelled.",
                        _data(
                            {
                                "type": "object",
                                "required": ["cancelled"],
                                "properties": {
                                    "cancelled": {"type": "array", "items": {"type": "string"}}
                                },
                            }
                        ),
                    ),
                    "400": bad,
                    "404": _answer("No such function, and no unfinished run of it.", "Error"),
                    "413": too_large,
                },
            }
        },
        "/v1/functions": {
            "get": {
                "operationId": "listFunctions",
                "summary": "Every function: ids, app, triggers, a summary of its options.",
                "responses": {
                    "200": _answer(
                        "The functions.", _data({"type": "array", "items": {"type": "object"}})
                    )
                },
            }
        },
        "/v1/apps": {
            "get": {
                "operationId": "listApps",
                "summary": "Every app: name, URL, SDK, app version, functions, last sync.",
                "description": (
                    "The apps the server serves, then the app URLs it knows that serve none "
                    "(a -u URL that never synced, a refused registration), each with its "
                    "last sync and its last failed attempt with the fix to try."
                ),
                "responses": {
                    "200": _answer("The apps.", _data({"type": "array", "items": _ref("App")}))
                },
            }
        },
    }
