"""The GraphQL API (``POST /v0/gql``) on strawberry: runs, their triggers, traces and
step outputs, events and their runs, apps and functions.

Resolvers read through the engine's public query methods only, on the server's loop
(``info.context`` is a :class:`~.context.Context`; queries run in a thread of their own).
Fields that need more reads (a run's trace, an event's runs) are resolved lazily and in
batches, so a page of runs costs one query, and one more for all their traces if asked for.
Stored values are encoded to JSON only when asked for, and never fail to be (see
:func:`~.types.to_json`). List arguments are capped (see :mod:`.limits`).
"""

from __future__ import annotations

import datetime
import enum
import re
from typing import Annotated, Any, NewType

import strawberry
from strawberry.schema.config import StrawberryConfig

from mainspring.engine.records import Run, StoredEvent
from mainspring.errors import MainspringError
from mainspring.server.graphql.context import Context
from mainspring.server.graphql.limits import DocumentLimits, check_list, check_page
from mainspring.server.graphql.trace import OutputRef, find_output
from mainspring.server.graphql.types import (
    RUN_STATUS,
    App,
    FunctionInfo,
    FunctionRunStatus,
    PageInfo,
    RunTraceSpan,
    RunTraceSpanOutput,
    RunTraceTrigger,
    StepError,
    _time,
    event_json,
    run_output_json,
    to_json,
)


def _context(info: strawberry.Info) -> Context:
    context = info.context
    assert isinstance(context, Context)
    return context


async def _get_run(context: Context, run_id: str) -> Run | None:
    try:
        return await context.call(context.engine.run, run_id)
    except MainspringError:
        return None


async def _require_run(context: Context, run_id: str) -> Run:
    run = await _get_run(context, run_id)
    if run is None:
        raise ValueError(f"no run with id {run_id!r}")
    return run


async def _trace(context: Context, run: Run) -> RunTraceSpan:
    return await context.loaders.traces.load(run)


@strawberry.type(name="FunctionRunV2")
class FunctionRunV2:
    run: strawberry.Private[Run]
    id: strawberry.ID
    status: FunctionRunStatus
    function_id: str = strawberry.field(name="functionID")
    source_id: str = strawberry.field(name="sourceID")
    trigger_ids: list[str] = strawberry.field(name="triggerIDs")
    queued_at: datetime.datetime | None
    started_at: datetime.datetime | None
    ended_at: datetime.datetime | None
    is_batch: bool = False
    cron_schedule: str | None = None
    #: The app version that started the run (``Client(app_version=)``, a sync's
    #: ``appVersion``), when the app has one.
    app_version: str | None = strawberry.field(name="appVersion", default=None)

    @staticmethod
    def of(run: Run) -> FunctionRunV2:
        return FunctionRunV2(
            run=run,
            id=strawberry.ID(run.id),
            status=RUN_STATUS[run.status],
            function_id=run.function_id,
            source_id=run.event_id,
            trigger_ids=[run.event_id],
            queued_at=_time(run.created_at),
            started_at=_time(run.started_at),
            ended_at=_time(run.ended_at),
            app_version=run.app_version,
        )

    @strawberry.field
    def output(self) -> str | None:
        return run_output_json(self.run)

    @strawberry.field
    def function(self, info: strawberry.Info) -> FunctionInfo | None:
        context = _context(info)
        fn = context.functions.get(self.run.function_id)
        if fn is None:
            return None
        app = context.app_of.get(fn.id)
        return FunctionInfo.of(fn, app.name if app is not None else context.default_app)

    @strawberry.field
    def app(self, info: strawberry.Info) -> App | None:
        app = _context(info).app_of.get(self.run.function_id)
        return None if app is None else App.of(app)

    @strawberry.field
    async def trace(self, info: strawberry.Info) -> RunTraceSpan:
        return await _trace(_context(info), self.run)

    @strawberry.field
    async def rerun_of(self, info: strawberry.Info) -> RerunOf | None:
        """For a run a rerun started: where it came from; null for any other run."""
        return await _rerun_of(info, self.run.id)


@strawberry.type(name="FunctionRun")
class FunctionRun:
    """The older run type that ``event { functionRuns }`` returns."""

    run: strawberry.Private[Run]
    id: strawberry.ID
    status: FunctionRunStatus
    function_id: str = strawberry.field(name="functionID")
    event_id: str = strawberry.field(name="eventID")
    name: str
    started_at: datetime.datetime | None
    finished_at: datetime.datetime | None

    @staticmethod
    def of(run: Run, function_name: str) -> FunctionRun:
        return FunctionRun(
            run=run,
            id=strawberry.ID(run.id),
            status=RUN_STATUS[run.status],
            function_id=run.function_id,
            event_id=run.event_id,
            name=function_name,
            started_at=_time(run.started_at or run.created_at),
            finished_at=_time(run.ended_at),
        )

    @strawberry.field
    def output(self) -> str | None:
        return run_output_json(self.run)

    @strawberry.field
    async def rerun_of(self, info: strawberry.Info) -> RerunOf | None:
        """As ``FunctionRunV2.rerunOf``."""
        return await _rerun_of(info, self.run.id)


@strawberry.type(
    name="RerunOf",
    description="Where a run that a rerun started came from (not in the reference).",
)
class RerunOf:
    """Where a rerun came from (``Engine.rerun``). Not in the reference, whose runs do not
    say which run they rerun."""

    run_id: strawberry.ID = strawberry.field(
        name="runID", description="The run it reruns (the original)."
    )
    from_step: str | None = strawberry.field(
        description="The step it was rerun from, as it was named (the step's id or hashed "
        "id); null: from the start."
    )
    copied_steps: int = strawberry.field(
        description="How many of the original's recorded steps it reused instead of running."
    )
    created_at: datetime.datetime

    @strawberry.field
    async def run(self, info: strawberry.Info) -> FunctionRunV2 | None:
        """The original run; null if it is no longer stored."""
        found = await _get_run(_context(info), str(self.run_id))
        return None if found is None else FunctionRunV2.of(found)


async def _rerun_of(info: strawberry.Info, run_id: str) -> RerunOf | None:
    origin = await _context(info).loaders.rerun_origins.load(run_id)
    if origin is None:
        return None
    return RerunOf(
        run_id=strawberry.ID(origin.original_id),
        from_step=origin.from_step,
        copied_steps=origin.copied,
        created_at=_time(origin.created_at) or datetime.datetime.fromtimestamp(0, datetime.UTC),
    )


@strawberry.type(name="Event")
class EventNode:
    event: strawberry.Private[StoredEvent]
    id: strawberry.ID
    external_id: str = strawberry.field(name="externalID")
    name: str
    created_at: datetime.datetime | None

    @staticmethod
    def of(event: StoredEvent) -> EventNode:
        return EventNode(
            event=event,
            id=strawberry.ID(event.internal_id),
            external_id=event.id,
            name=event.name,
            created_at=_time(event.received_at),
        )

    @strawberry.field
    def payload(self) -> str:
        """The event's data, as stored (whatever its depth)."""
        stored = self.event.data_json
        return stored.decode() if stored is not None else to_json(self.event.data)

    @strawberry.field
    def raw(self) -> str:
        return event_json(self.event)

    @strawberry.field
    async def function_runs(self, info: strawberry.Info) -> list[FunctionRun]:
        context = _context(info)
        runs = await context.loaders.event_runs.load(self.event.internal_id)
        return [FunctionRun.of(r, context.function_name(r.function_id)) for r in runs]

    @strawberry.field
    async def total_runs(self, info: strawberry.Info) -> int:
        return len(await _context(info).loaders.event_runs.load(self.event.internal_id))


@strawberry.input
class EventQuery:
    event_id: strawberry.ID
    workspace_id: strawberry.ID | None = None


@strawberry.input
class EventsQuery:
    last_event_id: strawberry.ID | None = None
    name: str | None = None
    limit: int = 50
    workspace_id: strawberry.ID | None = None


@strawberry.input(name="RunsFilterV2")
class RunsFilter:
    from_: datetime.datetime | None = strawberry.field(name="from", default=None)
    until: datetime.datetime | None = None
    function_ids: list[str] | None = strawberry.field(name="functionIDs", default=None)
    status: list[FunctionRunStatus] | None = None


@strawberry.enum(name="RunsV2OrderByField")
class RunsOrderByField(enum.Enum):
    QUEUED_AT = "QUEUED_AT"
    STARTED_AT = "STARTED_AT"
    ENDED_AT = "ENDED_AT"


@strawberry.enum(name="RunsOrderByDirection")
class RunsOrderByDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.input(name="RunsV2OrderBy")
class RunsOrderBy:
    field: RunsOrderByField
    direction: RunsOrderByDirection


@strawberry.type(name="FunctionRunV2Edge")
class RunEdge:
    node: FunctionRunV2
    cursor: str


@strawberry.type(name="RunsV2Connection")
class RunsConnection:
    edges: list[RunEdge]
    page_info: PageInfo


async def _output_by_id(
    info: strawberry.Info, output_id: Annotated[str, strawberry.argument(name="outputID")]
) -> RunTraceSpanOutput:
    context = _context(info)
    ref = OutputRef.decode(output_id)
    run = await _get_run(context, ref.run_id)
    found = None
    if run is not None:
        found = find_output(ref, run, await context.call(context.engine.history, run.id))
    if found is None:
        raise ValueError(f"outputID {output_id!r}: no such output")
    data, error = found
    if error is not None:
        return RunTraceSpanOutput(data=None, error=_step_error(error))
    return RunTraceSpanOutput(data=to_json(data), error=None)


_STATUS_FROM_GQL = {gql: status for status, gql in RUN_STATUS.items()}


@strawberry.type
class Query:
    @strawberry.field
    async def run(
        self, info: strawberry.Info, run_id: Annotated[str, strawberry.argument(name="runID")]
    ) -> FunctionRunV2 | None:
        run = await _get_run(_context(info), run_id)
        return None if run is None else FunctionRunV2.of(run)

    @strawberry.field
    async def run_trace(
        self, info: strawberry.Info, run_id: Annotated[str, strawberry.argument(name="runID")]
    ) -> RunTraceSpan:
        context = _context(info)
        return await _trace(context, await _require_run(context, run_id))

    @strawberry.field
    async def run_trigger(
        self, info: strawberry.Info, run_id: Annotated[str, strawberry.argument(name="runID")]
    ) -> RunTraceTrigger:
        context = _context(info)
        run = await _require_run(context, run_id)
        event = await context.call(context.engine.event, run.event_id)
        if event is None:
            raise ValueError(f"run {run_id!r}: its triggering event is not stored")
        return RunTraceTrigger.of(event)

    run_trace_span_output_by_id: RunTraceSpanOutput = strawberry.field(
        name="runTraceSpanOutputByID", resolver=_output_by_id
    )

    @strawberry.field
    async def event(self, info: strawberry.Info, query: EventQuery) -> EventNode | None:
        context = _context(info)
        event = await context.call(context.engine.event, str(query.event_id))
        return None if event is None else EventNode.of(event)

    @strawberry.field
    async def events(
        self, info: strawberry.Info, query: EventsQuery | None = None
    ) -> list[EventNode]:
        query = query or EventsQuery()
        limit = check_page("events", "limit", query.limit)
        before = None if query.last_event_id is None else str(query.last_event_id)
        context = _context(info)
        found = await context.call(
            context.engine.events, name=query.name, limit=limit, before=before
        )
        return [EventNode.of(e) for e in found]

    @strawberry.field
    async def runs(
        self,
        info: strawberry.Info,
        first: int = 40,
        after: str | None = None,
        filter: RunsFilter | None = None,
        order_by: list[RunsOrderBy] | None = None,
    ) -> RunsConnection:
        """A page of runs. Runs are ordered by when they were queued (their ids are
        ULIDs); the order's direction is honoured, its field is taken as ``QUEUED_AT``."""
        filter = filter or RunsFilter()
        size = check_page("runs", "first", first)
        check_list("runs", "functionIDs", filter.function_ids)
        check_list("runs", "status", filter.status)
        check_list("runs", "orderBy", order_by)
        newest_first = not order_by or order_by[0].direction is RunsOrderByDirection.DESC
        statuses = (
            None
            if filter.status is None
            else [_STATUS_FROM_GQL[s] for s in filter.status if s in _STATUS_FROM_GQL]
        )
        context = _context(info)
        found = await context.call(
            context.engine.list_runs,
            # An empty list filters nothing, as no list does.
            function_ids=filter.function_ids or None,
            statuses=statuses,
            created_after=filter.from_,
            created_before=filter.until,
            limit=size + 1,
            after=after,
            newest_first=newest_first,
        )
        page, more = found[:size], len(found) > size
        return RunsConnection(
            edges=[RunEdge(node=FunctionRunV2.of(r), cursor=r.id) for r in page],
            page_info=PageInfo(
                has_next_page=more,
                has_previous_page=after is not None,
                start_cursor=page[0].id if page else None,
                end_cursor=page[-1].id if page else None,
            ),
        )

    @strawberry.field
    def apps(self, info: strawberry.Info) -> list[App]:
        return [App.of(app) for app in _context(info).apps]

    @strawberry.field
    def functions(self, info: strawberry.Info) -> list[FunctionInfo]:
        return [fn for app in _context(info).apps for fn in App.of(app).functions]


#: The reference's run id scalar (a ULID, as text): its mutations take ``runID: ULID!``.
ULID = NewType("ULID", str)
_ULID_TEXT = re.compile(r"[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}")


def _parse_ulid(value: object) -> str:
    if not isinstance(value, str) or not _ULID_TEXT.fullmatch(value):
        raise ValueError(f"expected a ULID (26 characters of Crockford base32), got {value!r:.60}")
    return value.upper()


ULID_SCALAR = strawberry.scalar(
    name="ULID", description="A ULID, as its 26 characters.", serialize=str, parse_value=_parse_ulid
)


@strawberry.input(name="RerunFromStepInput")
class RerunFromStepInput:
    """The step a rerun starts from (the reference's input): its id as the function wrote
    it, or its hashed id. ``input`` (a new input for that step) is not supported."""

    step_id: str = strawberry.field(name="stepID")
    input: str | None = None


@strawberry.type
class Mutation:
    """Actions on runs, with the reference's names and arguments."""

    @strawberry.mutation
    async def cancel_run(
        self, info: strawberry.Info, run_id: Annotated[ULID, strawberry.argument(name="runID")]
    ) -> FunctionRunV2:
        """Cancel a run (nothing happens to a finished one); the run as it is now."""
        context = _context(info)
        await _require_run(context, run_id)
        await context.call(context.engine.cancel, run_id)
        return FunctionRunV2.of(await _require_run(context, run_id))

    @strawberry.mutation
    async def rerun(
        self,
        info: strawberry.Info,
        run_id: Annotated[ULID, strawberry.argument(name="runID")],
        from_step: Annotated[
            RerunFromStepInput | None, strawberry.argument(name="fromStep")
        ] = None,
    ) -> ULID:
        """Start a new run with the run's events; from a step, the steps recorded before it
        reuse their results. The new run's id."""
        if from_step is not None and from_step.input is not None:
            raise ValueError("fromStep.input: a new input for the step is not supported")
        context = _context(info)
        step = None if from_step is None else from_step.step_id
        try:
            new_id = await context.call(context.engine.rerun, run_id, from_step=step)
        except MainspringError as exc:
            raise ValueError(str(exc)) from None
        return ULID(new_id)


def _step_error(error: dict[str, Any]) -> StepError:
    cause = error.get("cause")
    return StepError(
        message=str(error.get("message", "")),
        name=error.get("name"),
        stack=error.get("stack"),
        cause=None if cause is None else to_json(cause),
    )


#: The reference calls its timestamp scalar ``Time`` (RFC 3339 strings).
TIME = strawberry.scalar(
    name="Time",
    serialize=lambda value: value.isoformat(),
    parse_value=lambda value: datetime.datetime.fromisoformat(value),
)

schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    config=StrawberryConfig(scalar_map={datetime.datetime: TIME, ULID: ULID_SCALAR}),
    extensions=[DocumentLimits],
)
