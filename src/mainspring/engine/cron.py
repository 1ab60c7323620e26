"""Cron triggers: one durable job per schedule, fired by the queue like any other job.

The job stands for its next tick. Firing it records an ``inngest/scheduled.timer`` event
whose id is the tick's time, starts the function, and moves the job to the following tick,
all in one unit: a crash before the commit fires the same tick again, and the event id
(the run's idempotency key) makes that a no-op. Ticks missed while the engine was stopped
fire once, as the latest of them, and the schedule resumes from now.
"""

from __future__ import annotations

import datetime
import hashlib
import random
from collections.abc import Iterable
from typing import Any

from mainspring.engine.intake import (
    IntakePlan,
    PlannedRun,
    TriggerIndex,
    cancel_pauses,
    new_run,
    plan_intake,
    validate_events,
)
from mainspring.engine.records import Job, JobKind
from mainspring.protocol import consts
from mainspring.protocol.cron import parse_cron
from mainspring.protocol.durations import parse_duration_ms
from mainspring.sdk.event import Event
from mainspring.sdk.function import Function
from mainspring.sdk.triggers import TriggerCron

#: Cron jobs belong to no run; this prefix marks their run id.
CRON_RUN_PREFIX = "cron:"


def _iso(ms: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _jitter_ms(trigger: TriggerCron) -> int:
    if trigger.jitter is None:
        return 0
    return random.randint(0, int(parse_duration_ms(trigger.jitter)))


def cron_job(function: Function[Any], trigger: TriggerCron, scheduled: int) -> Job:
    digest = hashlib.sha1(trigger.cron.encode(), usedforsecurity=False).hexdigest()[:12]
    return Job(
        id=f"{CRON_RUN_PREFIX}{function.id}:{digest}",
        run_id=f"{CRON_RUN_PREFIX}{function.id}",
        kind=JobKind.CRON,
        run_at=scheduled + _jitter_ms(trigger),
        data={"function_id": function.id, "cron": trigger.cron, "scheduled": scheduled},
    )


def wanted_jobs(functions: Iterable[Function[Any]], now: int) -> list[Job]:
    """One job per cron trigger, due at its next tick after ``now``."""
    jobs = []
    for function in functions:
        for trigger in function.config.triggers:
            if isinstance(trigger, TriggerCron):
                scheduled = parse_cron(trigger.cron).next_after(now)
                jobs.append(cron_job(function, trigger, scheduled))
    return jobs


def fire(
    job: Job, function: Function[Any], index: TriggerIndex, now: int
) -> tuple[IntakePlan, Job]:
    """The event and run of one tick, and the job for the next tick."""
    data = job.data or {}
    expression = str(data["cron"])
    scheduled = int(data["scheduled"])
    event = Event(
        name=consts.SCHEDULED_TIMER_EVENT,
        id=_iso(scheduled),
        data={"cron": expression, "scheduledAt": _iso(scheduled), "fireAt": _iso(now)},
    )
    plan = plan_intake(validate_events([event], allow_internal=True), index, now)
    stored = plan.events[0]
    events_json = b"[" + stored.wire_json() + b"]"
    # The tick starts only its own function, whatever else listens to timer events.
    run, start = new_run(function, events_json, stored.internal_id, stored.id, now)
    plan.runs = [PlannedRun(run, start, function)]
    plan.cancels = (
        {run.run_id: cancel_pauses(function, run.run_id, stored.to_wire(), now)}
        if function.config.cancel
        else {}
    )
    trigger = next(
        t for t in function.config.triggers if isinstance(t, TriggerCron) and t.cron == expression
    )
    following = parse_cron(expression).next_after(max(now, scheduled))
    return plan, cron_job(function, trigger, following)
