"""End-to-end encryption of step outputs, function outputs and one field of event data.

``EncryptionMiddleware.factory(secret_key)`` is a middleware (``Client(middleware=[...])``)
compatible on the wire with the reference's ``inngest_encryption`` package: the same
libsodium ``SecretBox`` (XSalsa20-Poly1305), the same key derivation and the same envelope,
so data encrypted by either is decrypted by the other, and an app can move between them
with its recorded runs in flight. The server stores and shows only envelopes::

    {"__ENCRYPTED__": true, "__STRATEGY__": "inngest/libsodium", "data": "<base64>"}

What is encrypted: every step's output and the function's return value; of events sent
(``client.send``, ``step.send_event``) and of invoke payloads, only
``data[event_encryption_field]`` (``"encrypted"`` by default), so the rest stays readable
for triggers, concurrency keys and the like. Recorded outputs and events' data are
decrypted on their way into the function, with the current key and then each of
``fallback_decryption_keys`` (key rotation). ``decrypt_only=True`` decrypts but writes
plaintext (the first step of turning encryption off).

Keys: a ``str`` is hashed to 32 bytes with BLAKE2b; ``bytes`` are the hex encoding of a
32-byte key. Needs PyNaCl: ``pip install 'mainspring[encryption]'``.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, cast

import orjson

from mainspring.protocol.opcodes import Opcode
from mainspring.sdk.middleware import MiddlewareSync, StepMemos, TransformOutputResult

if TYPE_CHECKING:
    import nacl.secret

    from mainspring.sdk.client import Client
    from mainspring.sdk.context import Context, ContextSync
    from mainspring.sdk.event import Event
    from mainspring.sdk.function import Function

MARKER: Final = "__ENCRYPTED__"
STRATEGY_KEY: Final = "__STRATEGY__"
STRATEGY: Final = "inngest/libsodium"
DEFAULT_EVENT_FIELD: Final = "encrypted"

Key = str | bytes


class DecryptionError(ValueError):
    """An envelope none of the keys opens."""


def _nacl() -> Any:
    try:
        import nacl.encoding
        import nacl.hash
        import nacl.secret
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ImportError(
            "mainspring.encryption needs PyNaCl: pip install 'mainspring[encryption]'"
        ) from None
    return nacl


@functools.lru_cache(maxsize=16)  # a fresh middleware serves each call: derive each key once
def _box(key: Key) -> nacl.secret.SecretBox:
    lib = _nacl()
    if isinstance(key, str):
        raw = lib.hash.generichash(
            key.encode(),
            digest_size=lib.secret.SecretBox.KEY_SIZE,
            encoder=lib.encoding.RawEncoder,
        )
    elif isinstance(key, bytes):
        raw = bytes.fromhex(key.decode())
    else:
        raise TypeError(f"an encryption key is a str or hex bytes, got {type(key).__name__}")
    box = lib.secret.SecretBox(raw)
    return cast("nacl.secret.SecretBox", box)


def is_encrypted(value: object) -> bool:
    return (
        isinstance(value, Mapping)
        and value.get(MARKER) is True
        and value.get(STRATEGY_KEY) == STRATEGY
    )


class EncryptionMiddleware(MiddlewareSync):
    """See the module's docstring; made by :meth:`factory`."""

    def __init__(
        self,
        client: Client,
        raw_request: object,
        secret_key: Key,
        *,
        decrypt_only: bool = False,
        event_encryption_field: str = DEFAULT_EVENT_FIELD,
        fallback_decryption_keys: Sequence[Key] | None = None,
    ) -> None:
        super().__init__(client, raw_request)
        self._box = _box(secret_key)
        self._openers = [self._box, *(_box(key) for key in fallback_decryption_keys or ())]
        self._decrypt_only = decrypt_only
        self._field = event_encryption_field

    @classmethod
    def factory(
        cls,
        secret_key: Key,
        *,
        decrypt_only: bool = False,
        event_encryption_field: str = DEFAULT_EVENT_FIELD,
        fallback_decryption_keys: Sequence[Key] | None = None,
    ) -> Callable[[Client, object], EncryptionMiddleware]:
        """A factory for ``middleware=``; the keys are checked (and derived) now."""
        _box(secret_key)
        for key in fallback_decryption_keys or ():
            _box(key)

        def make(client: Client, raw_request: object) -> EncryptionMiddleware:
            return cls(
                client,
                raw_request,
                secret_key,
                decrypt_only=decrypt_only,
                event_encryption_field=event_encryption_field,
                fallback_decryption_keys=fallback_decryption_keys,
            )

        return make

    # -- the envelope ------------------------------------------------------------------

    def encrypt(self, value: object) -> dict[str, Any]:
        if is_encrypted(value):
            assert isinstance(value, dict)
            return value  # already an envelope: not sealed twice
        sealed = self._box.encrypt(orjson.dumps(value))
        return {MARKER: True, STRATEGY_KEY: STRATEGY, "data": base64.b64encode(sealed).decode()}

    def decrypt(self, value: object) -> Any:
        if not is_encrypted(value):
            return value
        assert isinstance(value, Mapping)
        sealed = value.get("data")
        if not isinstance(sealed, str):
            return value
        raw = base64.b64decode(sealed)
        for box in self._openers:
            try:
                return orjson.loads(box.decrypt(raw))
            except Exception:  # this key does not open it: the next may
                continue
        raise DecryptionError(
            "cannot decrypt data: none of the keys (the secret key and "
            f"{len(self._openers) - 1} fallback keys) opens it"
        )

    def _decrypt_event_data(self, data: Mapping[str, Any]) -> Mapping[str, Any]:
        if is_encrypted(data):
            # All of the data sealed; what sits beside the envelope (an invoke's
            # "_inngest") stays as it is.
            opened = self.decrypt(data)
            if not isinstance(opened, Mapping):
                raise DecryptionError("encrypted event data is not an object once decrypted")
            beside = {k: v for k, v in data.items() if k not in (MARKER, STRATEGY_KEY, "data")}
            return {**beside, **opened}
        # The expected field first; a producer may have used another.
        for key in sorted(data, key=lambda k: k != self._field):
            if is_encrypted(data[key]):
                return {**data, key: self.decrypt(data[key])}
        return data

    # -- hooks -------------------------------------------------------------------------

    def transform_input(
        self, ctx: Context | ContextSync, function: Function[Any], steps: StepMemos
    ) -> None:
        for memo in steps.values():
            memo.data = self.decrypt(memo.data)
        ctx.event.data = self._decrypt_event_data(ctx.event.data)
        for event in ctx.events:
            if event is not ctx.event:
                event.data = self._decrypt_event_data(event.data)

    def transform_output(self, result: TransformOutputResult) -> None:
        if self._decrypt_only:
            return
        if result.has_output():
            result.output = self.encrypt(result.output)
        step = result.step
        if step is not None and step.op is Opcode.INVOKE_FUNCTION and step.opts is not None:
            payload = step.opts.get("payload")
            data = payload.get("data") if isinstance(payload, dict) else None
            if isinstance(payload, dict) and isinstance(data, dict) and self._field in data:
                payload["data"] = {**data, self._field: self.encrypt(data[self._field])}

    def before_send_events(self, events: list[Event]) -> None:
        if self._decrypt_only:
            return
        for event in events:
            value = event.data.get(self._field)
            if value is not None:
                event.data = {**event.data, self._field: self.encrypt(value)}
