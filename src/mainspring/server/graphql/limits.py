"""What one GraphQL request may ask for, checked before any of it runs.

The text is checked first, without parsing it: its size in bytes, its tokens, and how deep
its braces, brackets and parentheses nest (the parser recurses on those). The parsed
document is then measured before the standard validation rules run (some of them cost more
than linear time on large documents): how deep its fields nest, how many aliases and how
many fields it selects, fragments counted each time they are spread, as executing them
would. A query over a limit gets an error naming the limit and nothing of it runs.

Why these numbers: the deepest useful query of the schema (a page of runs, their traces,
the steps' attempts) is 7 fields deep, and the standard introspection query that GraphiQL
and code generators send is 15 deep and selects 229 fields in 183 tokens (its recursion
through ``fields { type { fields ... } }`` is refused by graphql-core's own
``MaxIntrospectionDepthRule``); dashboards batch a page's worth of aliases at most. Each
limit leaves room above those.

List arguments are capped where they are read (:func:`check_page`, :func:`check_list`):
their values may come from variables, which are only known at execution. A page is at
most 200 runs or events (dashboards ask for 40 or 50; pages were silently cut to 1,000
before, which under 30 aliases made answers of 30,000 runs), a list argument at most 100
items (a dashboard's function filter; the filter is one SQL query whatever its size).

Together the limits bound the worst query: 30 aliases, each a page of 200 runs with their
traces to depth 16, took 0.6-1.8 s in the GraphQL thread and 50 MB, against 2,000 stored
runs on a 2-core machine, with ``/health`` answering meanwhile (see
``tests/integration/test_graphql_limits.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

from graphql import GraphQLError, GraphQLSyntaxError
from graphql.language import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    Lexer,
    OperationDefinitionNode,
    SelectionSetNode,
    Source,
    TokenKind,
)
from strawberry.extensions import SchemaExtension

#: Largest query text, in bytes (UTF-8).
MAX_QUERY_BYTES = 64 * 1024
#: Most tokens in the query text (names, values, punctuation; comments do not count).
MAX_TOKENS = 5000
#: Deepest nesting of braces, brackets and parentheses in the text, and of selection sets
#: and fragment spreads in the document (fragments spreading fragments).
MAX_NESTING = 32
#: Deepest chain of fields (a root field is at depth 1).
MAX_DEPTH = 16
#: Most aliased fields.
MAX_ALIASES = 30
#: Most fields selected, fragments counted each time they are spread.
MAX_FIELDS = 500
#: Largest page of ``runs(first:)`` and ``events(query: {limit:})``.
MAX_PAGE = 200
#: Most items in a list argument (``functionIDs``, ``status``, ``orderBy``).
MAX_LIST_ITEMS = 100

_OPENING = frozenset({TokenKind.BRACE_L, TokenKind.BRACKET_L, TokenKind.PAREN_L})
_CLOSING = frozenset({TokenKind.BRACE_R, TokenKind.BRACKET_R, TokenKind.PAREN_R})


def text_too_large(query: str) -> str | None:
    """Why the query text is refused unread (its size), or None."""
    size = len(query.encode())
    if size > MAX_QUERY_BYTES:
        return f"the query is {size} bytes, over the limit of {MAX_QUERY_BYTES} bytes"
    return None


def check_text(query: str) -> GraphQLError | None:
    """The first limit the query text breaks, without parsing it: its tokens, its nesting.

    A text that does not lex is left to the parser, which reports the syntax error (up to
    that point, the text is within the limits).
    """
    lexer = Lexer(Source(query))
    tokens = nesting = 0
    try:
        while (token := lexer.advance()).kind is not TokenKind.EOF:
            tokens += 1
            if tokens > MAX_TOKENS:
                return GraphQLError(
                    f"the query has more than {MAX_TOKENS} tokens, the limit (max tokens)"
                )
            if token.kind in _OPENING:
                nesting += 1
                if nesting > MAX_NESTING:
                    return _nesting_error()
            elif token.kind in _CLOSING:
                nesting -= 1
    except GraphQLSyntaxError:
        return None
    return None


def _nesting_error() -> GraphQLError:
    return GraphQLError(
        f"the query nests more than {MAX_NESTING} levels deep (braces, brackets, parentheses "
        "or fragments spreading fragments), the limit (max nesting)"
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Cost:
    """What a selection set asks for, fragments expanded; ``nesting`` counts the selection
    sets and fragment spreads nested in it, itself included."""

    fields: int = 0
    aliases: int = 0
    depth: int = 0
    nesting: int = 0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.fields + other.fields,
            self.aliases + other.aliases,
            max(self.depth, other.depth),
            max(self.nesting, other.nesting),
        )


class _TooDeep(Exception):
    pass


class _Measure:
    """Costs of selection sets, each fragment's measured once (its cost is the same
    wherever it is spread), so a document is measured in time linear in its size."""

    def __init__(self, document: DocumentNode) -> None:
        self._fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self._costs: dict[str, Cost] = {}
        self._entered: set[str] = set()

    def selections(self, node: SelectionSetNode | None, nesting: int = 1) -> Cost:
        """The cost of a selection set found ``nesting`` levels deep."""
        if node is None:
            return Cost()
        if nesting > MAX_NESTING:
            raise _TooDeep
        total = Cost()
        for selection in node.selections:
            if isinstance(selection, FieldNode):
                inner = self.selections(selection.selection_set, nesting + 1)
                alias = 1 if selection.alias is not None else 0
                total += Cost(
                    1 + inner.fields, alias + inner.aliases, 1 + inner.depth, inner.nesting
                )
            elif isinstance(selection, InlineFragmentNode):
                total += self.selections(selection.selection_set, nesting + 1)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._fragment(selection.name.value, nesting + 1)
        return dataclasses.replace(total, nesting=total.nesting + 1)

    def _fragment(self, name: str, nesting: int) -> Cost:
        cost = self._costs.get(name)
        if cost is None:
            fragment = self._fragments.get(name)
            if fragment is None or name in self._entered:
                return Cost()  # unknown, or a cycle: validation reports both
            self._entered.add(name)
            try:
                cost = self.selections(fragment.selection_set, nesting)
            finally:
                self._entered.discard(name)
            self._costs[name] = cost
        if nesting - 1 + cost.nesting > MAX_NESTING:  # measured where it nested less
            raise _TooDeep
        return cost


def check_document(document: DocumentNode) -> GraphQLError | None:
    """The first limit the parsed document breaks (every operation in it counts), or None."""
    measure = _Measure(document)
    total = Cost()
    try:
        for definition in document.definitions:
            if isinstance(definition, OperationDefinitionNode):
                total += measure.selections(definition.selection_set)
    except _TooDeep:
        return _nesting_error()
    for found, limit, what in (
        (total.depth, MAX_DEPTH, "depth"),
        (total.aliases, MAX_ALIASES, "aliases"),
        (total.fields, MAX_FIELDS, "fields"),
    ):
        if found > limit:
            return GraphQLError(
                f"the query's {_SAID[what]} is {found}, over the limit of {limit} (max {what})"
            )
    return None


_SAID = {"depth": "depth", "aliases": "count of aliases", "fields": "count of fields"}


class DocumentLimits(SchemaExtension):
    """Checks the parsed document against the limits before the validation rules run;
    a document over a limit is answered with that error alone (nothing executes)."""

    def on_operation(self) -> Iterator[None]:
        # The text was checked before (see ``check_text``); the parser keeps to it anyway.
        self.execution_context.parse_options["max_tokens"] = MAX_TOKENS
        yield

    def on_validate(self) -> Iterator[None]:
        document = self.execution_context.graphql_document
        if document is not None and (error := check_document(document)) is not None:
            # Set before validation runs, this makes strawberry skip the other rules.
            self.execution_context.pre_execution_errors = [error]
        yield


def check_page(field: str, argument: str, value: int) -> int:
    """``value`` if it is a page size within the limit; else ``ValueError`` naming it."""
    if not 1 <= value <= MAX_PAGE:
        raise ValueError(
            f"{field}: argument {argument!r} must be between 1 and {MAX_PAGE}, got {value}"
        )
    return value


def check_list(field: str, argument: str, items: Sequence[Any] | None) -> None:
    """``ValueError`` naming the argument if the list holds more than allowed."""
    if items is not None and len(items) > MAX_LIST_ITEMS:
        raise ValueError(
            f"{field}: argument {argument!r} holds {len(items)} items, over the limit of "
            f"{MAX_LIST_ITEMS}"
        )
