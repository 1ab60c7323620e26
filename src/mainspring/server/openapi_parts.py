"""The pieces the OpenAPI documents of the server's routes are built of (``openapi.py``,
``runs_openapi.py``): references, answers, bodies and parameters."""

from __future__ import annotations

from typing import Any

from mainspring.server import limits

JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(description: str, schema: str | dict[str, Any] | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema is not None:
        answer["content"] = {JSON: {"schema": _ref(schema) if isinstance(schema, str) else schema}}
    return answer


def _body(schema: str, description: str, *, required: bool = True) -> dict[str, Any]:
    return {
        "description": description,
        "required": required,
        "content": {JSON: {"schema": _ref(schema)}},
    }


def _path_param(name: str, description: str) -> dict[str, Any]:
    schema = {"type": "string", "minLength": 1}
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def _query(
    name: str, schema: dict[str, Any], description: str, *, required: bool = False
) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


def _limit_query() -> dict[str, Any]:
    """The ``limit`` of a listing: its bounds and default, as the route enforces them."""
    schema = {
        "type": "integer",
        "minimum": 1,
        "maximum": limits.MAX_LIMIT,
        "default": limits.DEFAULT_LIMIT,
    }
    return _query("limit", schema, "How many.")


#: Text with something besides whitespace in it.
_NOT_BLANK = r"\S"
_ULID_PATTERN = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"
