"""The GraphQL API of the server (``/v0/gql``): see :mod:`.schema`, and :mod:`.limits` for
what one request may ask for."""

from __future__ import annotations

from typing import Any

import orjson
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType

from mainspring.engine.engine import Engine
from mainspring.server.graphql.context import Context, QueryTime, off_loop
from mainspring.server.graphql.limits import check_text, text_too_large
from mainspring.server.graphql.schema import schema

__all__ = ["execute", "schema"]


async def execute(
    engine: Engine, request: Any, *, read_only: bool = False
) -> tuple[int, dict[str, Any]]:
    """Run one GraphQL-over-HTTP request (``{query, variables?, operationName?}``).

    A request that is not a GraphQL request at all, or whose query text is over the size
    limit, gets a 400 naming the problem; errors inside a well-formed query (a syntax
    error, a query over one of the limits, a failing field) come back with 200 in
    ``errors``, beside any ``data``, as GraphQL clients expect.

    The query runs in the GraphQL thread (see :mod:`.context`), never on this loop, and
    its ``data`` is encoded to JSON there too: it comes back as an ``orjson.Fragment``,
    which ``orjson.dumps`` copies into the response as it is.

    ``read_only`` (a ``GET``) runs queries only: a mutation is refused, as GraphQL over
    HTTP requires, so that no link or prefetch can act on a run.
    """
    if not isinstance(request, dict):
        return 400, _error("the body must be a JSON object with a 'query' string")
    query = request.get("query")
    if not isinstance(query, str) or not query.strip():
        return 400, _error("'query' must be a non-empty string")
    if (too_large := text_too_large(query)) is not None:
        return 400, _error(too_large)
    variables = request.get("variables")
    if variables is not None and not isinstance(variables, dict):
        return 400, _error("'variables' must be a JSON object")
    operation = request.get("operationName")
    if operation is not None and not isinstance(operation, str):
        return 400, _error("'operationName' must be a string")
    context = Context.of(engine)
    allowed = {OperationType.QUERY} if read_only else None
    try:
        return 200, await off_loop(_answer(context, query, variables, operation, allowed))
    except InvalidOperationTypeError:
        return 400, _error("a mutation needs POST: GET runs queries only")


async def _answer(
    context: Context,
    query: str,
    variables: dict[str, Any] | None,
    operation: str | None,
    allowed: set[OperationType] | None = None,
) -> dict[str, Any]:
    """The answer to a query, worked out in the GraphQL thread; the objects it was built
    from are freed before the query's time ends."""
    if (refused := check_text(query)) is not None:
        return {"data": None, "errors": [refused.formatted]}
    with QueryTime():
        try:
            result = await schema.execute(
                query,
                variable_values=variables,
                context_value=context,
                operation_name=operation,
                allowed_operation_types=allowed,
            )
        except CannotGetOperationTypeError:
            # The document parses but holds no operation to run: only fragments, or none
            # with the name asked for (strawberry raises instead of answering an error).
            wanted = "an operation" if operation is None else f"an operation named {operation!r}"
            return _error(f"the document does not contain {wanted} to run")
        payload: dict[str, Any] = {"data": orjson.Fragment(orjson.dumps(result.data))}
        if result.errors:
            payload["errors"] = [error.formatted for error in result.errors]
        del result
    return payload


def _error(message: str) -> dict[str, Any]:
    return {"data": None, "errors": [{"message": message}]}
