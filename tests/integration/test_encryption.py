"""The encryption middleware (mainspring/encryption.py): wire-compatible with the
reference's ``inngest_encryption`` both ways, and what the server keeps is ciphertext."""

from __future__ import annotations

from typing import Any

import inngest as official
import inngest_encryption
import orjson
import pytest
from inngest._internal import server_lib

import mainspring as inngest
from mainspring.encryption import DecryptionError, EncryptionMiddleware, is_encrypted
from mainspring.protocol.opcodes import Opcode
from mainspring.sdk.middleware import EMPTY, Output, StepMemos, TransformOutputStepInfo
from tests.conftest import EngineFactory, run_to_end, store_rows, wait_for_pauses

pytestmark = pytest.mark.backends("sqlite")

KEY = "correct horse battery staple"
HEX_KEY = b"11" * 32
VALUE = {"card": "4242", "amounts": [1, 2.5, None], "name": "Zoë"}


def ours(key: str | bytes = KEY, **options: Any) -> EncryptionMiddleware:
    return EncryptionMiddleware.factory(key, **options)(inngest.Client(app_id="enc"), None)


def theirs(key: str | bytes = KEY, **options: Any) -> Any:
    client = official.Inngest(app_id="enc", is_production=False)
    return inngest_encryption.EncryptionMiddleware.factory(key, **options)(client, None)


@pytest.mark.parametrize("key", [KEY, HEX_KEY], ids=["str-key", "hex-bytes-key"])
def test_what_the_reference_encrypts_we_decrypt(key: str | bytes) -> None:
    result = official.TransformOutputResult(error=None, output=VALUE, step=None)
    theirs(key).transform_output(result)
    assert is_encrypted(result.output)
    memos = StepMemos({"s": Output(data=result.output)})
    ctx = _context({"encrypted": theirs(key)._encrypt("secret"), "plain": 1})
    ours(key).transform_input(ctx, None, memos)  # type: ignore[arg-type]
    assert [m.data for m in memos.values()] == [VALUE]
    assert dict(ctx.event.data) == {"encrypted": "secret", "plain": 1}


@pytest.mark.parametrize("key", [KEY, HEX_KEY], ids=["str-key", "hex-bytes-key"])
def test_what_we_encrypt_the_reference_decrypts(key: str | bytes) -> None:
    result = inngest.TransformOutputResult(error=None, output=VALUE, step=None)
    ours(key).transform_output(result)
    assert is_encrypted(result.output)
    memos = official.StepMemos.from_raw({"s": {"data": result.output}})
    events = [inngest.Event(name="e", data={"encrypted": "secret", "plain": 1})]
    ours(key).before_send_events(events)
    ctx = _official_context(dict(events[0].data))
    theirs(key).transform_input(ctx, None, memos)
    assert [m.data for m in memos.values()] == [VALUE]
    assert dict(ctx.event.data) == {"encrypted": "secret", "plain": 1}


def test_fallback_keys_open_old_data_and_a_wrong_key_is_an_error() -> None:
    old = ours("old key").encrypt(VALUE)
    assert ours("new key", fallback_decryption_keys=["old key"]).decrypt(old) == VALUE
    with pytest.raises(DecryptionError, match="none of the keys"):
        ours("new key").decrypt(old)


def test_invoke_payloads_and_decrypt_only() -> None:
    opts: dict[str, Any] = {"payload": {"data": {"encrypted": "s3", "keep": 1}}}
    step = TransformOutputStepInfo(id="call", op=Opcode.INVOKE_FUNCTION, opts=opts)
    result = inngest.TransformOutputResult(error=None, output=EMPTY, step=step)
    ours().transform_output(result)
    data = opts["payload"]["data"]
    assert data["keep"] == 1
    assert is_encrypted(data["encrypted"])
    # The reference encrypts an invoke payload the same way: it reads ours.
    assert theirs()._decrypt(data["encrypted"]) == "s3"
    plain = inngest.TransformOutputResult(error=None, output=VALUE, step=None)
    ours(decrypt_only=True).transform_output(plain)
    assert plain.output == VALUE
    assert server_lib.Opcode.INVOKE.value == Opcode.INVOKE_FUNCTION.value


@pytest.mark.parametrize("sync", [False, True], ids=["async", "sync"])
async def test_the_server_keeps_only_ciphertext(make_engine: EngineFactory, sync: bool) -> None:
    client = inngest.Client(app_id="enc", middleware=[EncryptionMiddleware.factory(KEY)])
    trigger = inngest.TriggerEvent(event="enc/go")
    if sync:

        @client.create_function(fn_id="pay", trigger=trigger, retries=0)
        def pay_sync(ctx: inngest.ContextSync) -> Any:
            card = ctx.step.run("card", lambda: ctx.event.data["encrypted"]["card"])
            ctx.step.wait_for_event("w", event="enc/resume", timeout=3_600_000)
            return ctx.step.run("charge", lambda: f"charged {card}")

        fn: inngest.Function[Any] = pay_sync
    else:

        @client.create_function(fn_id="pay", trigger=trigger, retries=0)
        async def pay(ctx: inngest.Context) -> Any:
            card = await ctx.step.run("card", lambda: ctx.event.data["encrypted"]["card"])
            await ctx.step.wait_for_event("w", event="enc/resume", timeout=3_600_000)
            return await ctx.step.run("charge", lambda: f"charged {card}")

        fn = pay
    event = inngest.Event(name="enc/go", data={"encrypted": {"card": "4242"}, "user": 7})
    async with make_engine(client, [fn]) as engine:
        [event_id] = await client.send(event)
        [run] = await engine.runs(event_id)
        await wait_for_pauses(engine, run.id)
    # A new engine replays the run from what is stored: it must decrypt the card.
    async with make_engine(client, [fn]) as engine:
        await engine.send(inngest.Event(name="enc/resume"))
        done = await engine.wait(run.id, timeout=10)
        assert done.status is inngest.RunStatus.COMPLETED, done.error
        stored = await store_rows(engine, "SELECT data FROM events WHERE name = ?", "enc/go")
        memos = await store_rows(engine, "SELECT memo FROM steps WHERE run_id = ?", run.id)
    assert ours().decrypt(done.output) == "charged 4242"
    [[data]] = stored
    sent = orjson.loads(bytes(data))
    assert sent["user"] == 7
    assert is_encrypted(sent["encrypted"])
    assert b"4242" not in bytes(data)
    for [memo] in memos:
        assert b"4242" not in bytes(memo)


async def test_a_run_started_by_the_reference_is_read_by_ours(make_engine: EngineFactory) -> None:
    """An event encrypted by the reference's middleware (an app not yet moved over)
    starts a run of ours that reads it."""
    event = official.Event(name="enc/go", data={"encrypted": {"card": "4242"}})
    theirs().before_send_events([event])
    client = inngest.Client(app_id="enc", middleware=[EncryptionMiddleware.factory(KEY)])

    @client.create_function(fn_id="read", trigger=inngest.TriggerEvent(event="enc/go"))
    async def read(ctx: inngest.Context) -> Any:
        return ctx.event.data["encrypted"]["card"]

    async with make_engine(client, [read]) as engine:
        run = await run_to_end(engine, inngest.Event(name="enc/go", data=dict(event.data)))
    assert theirs()._decrypt(run.output) == "4242"


def _context(data: dict[str, Any]) -> Any:
    class Ctx:
        def __init__(self) -> None:
            self.event = inngest.Event(name="e", data=data)
            self.events = [self.event]

    return Ctx()


def _official_context(data: dict[str, Any]) -> Any:
    class Ctx:
        def __init__(self) -> None:
            self.event = official.Event(name="e", data=data)
            self.events = [self.event]

    return Ctx()
