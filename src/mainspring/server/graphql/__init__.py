"""The GraphQL API of the server (``/v0/gql``): see :mod:`.schema`."""

from __future__ import annotations

from typing import Any

from mainspring.engine.engine import Engine
from mainspring.server.graphql.schema import schema

__all__ = ["execute", "schema"]


async def execute(engine: Engine, request: Any) -> tuple[int, dict[str, Any]]:
    """Run one GraphQL-over-HTTP request (``{query, variables?, operationName?}``).

    A request that is not a GraphQL request at all gets a 400 naming the problem; errors
    inside a well-formed query come back with 200 in ``errors``, beside any ``data``, as
    GraphQL clients expect.
    """
    if not isinstance(request, dict):
        return 400, _error("the body must be a JSON object with a 'query' string")
    query = request.get("query")
    if not isinstance(query, str) or not query.strip():
        return 400, _error("'query' must be a non-empty string")
    variables = request.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return 400, _error("'variables' must be a JSON object")
    operation = request.get("operationName")
    if operation is not None and not isinstance(operation, str):
        return 400, _error("'operationName' must be a string")
    result = await schema.execute(
        query, variable_values=variables, context_value=engine, operation_name=operation
    )
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    return 200, payload


def _error(message: str) -> dict[str, Any]:
    return {"data": None, "errors": [{"message": message}]}
