"""The app that ``test_sigkill_http.py`` serves over HTTP and kills.

Run it with ``MAINSPRING_DEV=1``, ``MAINSPRING_API_BASE_URL`` set to the server and
``SIGKILL_HTTP_EFFECTS`` set to the side-effect log, then
``python -m uvicorn tests.e2e.sigkill_http_app:app``.

Both functions are triggered by one ``sigkill-http/go`` event:

* ``chain``: :data:`CHAIN_STEPS` sequential steps ``c00`` ... ``c39`` (lone steps, so the
  engine's step chains bundle several of them into one call);
* ``fan``: a ``group.parallel`` of :data:`GROUP_STEPS` steps ``p0`` ... ``p9``, then the
  sequential :data:`AFTER_STEPS` ``a0`` and ``a1``.

Every execution of a step handler appends ``"<run id> <step> <nonce>"`` (one ``write`` on an
``O_APPEND`` descriptor, so lines never interleave) before it sleeps a few milliseconds (3,
or 8 in the group, which is never chained) and returns the nonce, a fresh uuid per
execution: the memo the server records names the one execution it kept, and the log's
order is the order in which executions started.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable

import mainspring
from mainspring.sdk.serve.asgi import serve

APP_ID = "sigkill-http"
EVENT = "sigkill-http/go"
EFFECTS_ENV = "SIGKILL_HTTP_EFFECTS"
#: How long every step handler sleeps, in milliseconds: short enough for chains of several
#: steps within the engine's default 20 ms budget.
STEP_MS = 3
#: Parallel steps are never chained: they take a little longer, so that a kill can land
#: while a group is in flight.
GROUP_STEP_MS = 8
#: Generous retries: a call that meets a dead server or app is retried (backoff 0.2 s), and
#: an app restart takes about a second.
RETRIES = 20

CHAIN_STEPS = tuple(f"c{i:02d}" for i in range(40))
GROUP_STEPS = tuple(f"p{i}" for i in range(10))
AFTER_STEPS = ("a0", "a1")
#: Every step, per function id (without the app prefix), in order.
STEPS: dict[str, tuple[str, ...]] = {
    "chain": CHAIN_STEPS,
    "fan": GROUP_STEPS + AFTER_STEPS,
}

_effects_fd: int | None = None


def _append(line: str) -> None:
    global _effects_fd
    if _effects_fd is None:
        path = os.environ[EFFECTS_ENV]
        _effects_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_effects_fd, (line + "\n").encode())


async def effect(run_id: str, step: str) -> str:
    """One execution of a step: log it, take a little time, return its nonce."""
    nonce = uuid.uuid4().hex
    _append(f"{run_id} {step} {nonce}")
    await asyncio.sleep((GROUP_STEP_MS if step in GROUP_STEPS else STEP_MS) / 1000)
    return nonce


client = mainspring.Client(app_id=APP_ID)
TRIGGER = mainspring.TriggerEvent(event=EVENT)


@client.create_function(fn_id="chain", trigger=TRIGGER, retries=RETRIES)
async def chain(ctx: mainspring.Context) -> list[str]:
    return [await ctx.step.run(step, effect, ctx.run_id, step) for step in CHAIN_STEPS]


@client.create_function(fn_id="fan", trigger=TRIGGER, retries=RETRIES)
async def fan(ctx: mainspring.Context) -> list[str]:
    def branch(step: str) -> Callable[[], Awaitable[str]]:
        return lambda: ctx.step.run(step, effect, ctx.run_id, step)

    nonces = list(await ctx.group.parallel(tuple(branch(step) for step in GROUP_STEPS)))
    nonces += [await ctx.step.run(step, effect, ctx.run_id, step) for step in AFTER_STEPS]
    return nonces


app = serve(client, [chain, fan])
