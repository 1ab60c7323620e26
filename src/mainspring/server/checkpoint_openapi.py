"""The OpenAPI description of :mod:`.checkpoint_api`'s routes, merged into
``/openapi.json`` by :func:`~.openapi.openapi_document`."""

from __future__ import annotations

from typing import Any

from mainspring.server.checkpoint_api import PREFIXES
from mainspring.server.openapi_parts import JSON, _answer, _path_param

_ASYNC_BODY: dict[str, Any] = {
    "type": "object",
    "required": ["qi_id", "steps"],
    "properties": {
        "run_id": {"type": "string", "description": "The run (as in the path)."},
        "fn_id": {"type": "string", "description": "The call's ctx.fn_id."},
        "qi_id": {"type": "string", "description": "The call's ctx.qi_id (its queue item)."},
        "request_id": {"type": "string", "description": "The call's x-request-id."},
        "generation_id": {"type": "integer"},
        "steps": {
            "type": "array",
            "minItems": 1,
            "description": (
                "Ops in the 206 shape: StepRun and StepFailed are recorded now; StepPlanned "
                "and RunComplete take effect with the call's answer."
            ),
            "items": {"type": "object"},
        },
        "ts": {"type": "integer"},
        "request_started_at": {"type": "integer"},
    },
}

_RECORDED: dict[str, Any] = {
    "type": "object",
    "properties": {
        "data": {
            "type": "object",
            "properties": {
                "run_id": {"type": "string"},
                "recorded": {"type": "integer", "description": "Steps new to the run."},
            },
        }
    },
}


def operations() -> dict[str, Any]:
    run_id = _path_param("run_id", "The run's ULID.")
    unsupported = _answer("Sync-mode checkpointing (durable endpoints) is not served.", "Error")
    paths: dict[str, Any] = {}
    for prefix in PREFIXES:
        alias = prefix != PREFIXES[0]
        suffix = "Alias" if alias else ""
        paths[f"{prefix}/{{run_id}}/async"] = {
            "post": {
                "operationId": f"checkpointAsync{suffix}",
                "summary": "Record steps of the call in flight for a run (protocol §13).",
                "parameters": [run_id],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ASYNC_BODY}},
                },
                "responses": {
                    "200": _answer("Recorded.", _RECORDED),
                    "400": _answer("Malformed, or not a checkpoint this call may make.", "Error"),
                    "409": _answer("Stale dispatch: no such call in flight; stop.", "Error"),
                    "413": _answer("The body is too large.", "Error"),
                    "503": _answer("Not recorded (the store failed): send it again.", "Error"),
                },
            }
        }
        paths[prefix] = {
            "post": {
                "operationId": f"checkpointNewRun{suffix}",
                "summary": "Sync mode: not served (404).",
                "responses": {"404": unsupported},
            }
        }
        paths[f"{prefix}/{{run_id}}/steps"] = {
            "post": {
                "operationId": f"checkpointSteps{suffix}",
                "summary": "Sync mode: not served (404).",
                "parameters": [run_id],
                "responses": {"404": unsupported},
            }
        }
        paths[f"{prefix}/{{run_id}}/output"] = {
            "get": {
                "operationId": f"checkpointOutput{suffix}",
                "summary": "Sync mode: not served (404).",
                "parameters": [run_id],
                "responses": {"404": unsupported},
            }
        }
    return paths
