"""Serializers: how outputs declared with ``output_type=`` become JSON, and back.

A step or function output is recorded as JSON. With ``output_type=SomeModel`` on
``step.run``, ``step.invoke`` or ``create_function``, the client's :class:`Serializer`
turns the output into JSON before it is recorded and the recorded JSON back into
``SomeModel`` where user code receives it: so a step's caller gets a ``SomeModel`` both
when the step has just run and on every replay (the value always comes back through
JSON). Without ``output_type`` nothing is converted.

A client without a serializer uses :class:`PydanticSerializer` where an ``output_type``
is given: the reference SDK ignores ``output_type`` then, which only shows up later as an
"unserializable data" failure (or a dict where a model was declared).
"""

from __future__ import annotations

import collections
import inspect
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, NamedTuple, Protocol, cast, runtime_checkable

import pydantic
import pydantic_core

from mainspring.errors import FunctionConfigInvalidError, NonRetriableError

#: Type adapters kept by one :class:`PydanticSerializer` (least recently used go first).
_ADAPTER_CACHE_SIZE = 512


@runtime_checkable
class Serializer(Protocol):
    """Converts outputs declared with ``output_type=`` to JSON and back.

    Pass one to the client (``Client(serializer=...)``); :class:`PydanticSerializer` is
    the one provided. Either method may raise to say that a value does not fit ``typ``;
    the step or function is then failed with an error naming it and the type.
    """

    def serialize(self, obj: object, typ: object) -> object:
        """``obj`` (an output declared as ``typ``) as a JSON value: dict, list, str, ..."""
        ...

    def deserialize(self, obj: object, typ: object) -> object:
        """The JSON value ``obj`` (as recorded) as an instance of ``typ``."""
        ...


class PydanticSerializer:
    """A :class:`Serializer` built on pydantic's ``TypeAdapter``.

    ``typ`` is anything pydantic can validate: a model, ``list[Model]``, ``Model | None``,
    a dataclass, ``datetime``... ``serialize`` dumps in JSON mode; a value that is not
    already of the type (a dict for a model, say) is first validated into it, so it is
    refused with pydantic's validation error when it does not fit.
    """

    def __init__(self) -> None:
        self._adapters = _AdapterCache(_ADAPTER_CACHE_SIZE)

    def serialize(self, obj: object, typ: object) -> object:
        adapter = self._adapters.get(typ)
        try:
            # warnings="error": pydantic only warns (and dumps whatever it got) when the
            # value is not of the type; here that means "validate it first".
            return adapter.dump_python(obj, mode="json", warnings="error")
        except pydantic_core.PydanticSerializationError:
            return adapter.dump_python(adapter.validate_python(obj), mode="json")

    def deserialize(self, obj: object, typ: object) -> object:
        return self._adapters.get(typ).validate_python(obj)


class _CachedAdapter(NamedTuple):
    adapter: pydantic.TypeAdapter[Any]
    #: Holds the type alive while its entry may be found by ``id`` (see _key).
    typ: object


class _AdapterCache:
    """``TypeAdapter`` per type, bounded: building one is slow, and pydantic keeps what
    it builds for a type forever, so a new adapter per step call would leak."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: collections.OrderedDict[Hashable, _CachedAdapter] = collections.OrderedDict()
        self._lock = threading.Lock()  # sync steps run on executor threads

    def get(self, typ: object) -> pydantic.TypeAdapter[Any]:
        key = _key(typ)
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                return item.adapter
        # Any: typ is whatever type form the user declared; pydantic validates it.
        adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(cast(Any, typ))
        with self._lock:
            self._items[key] = _CachedAdapter(adapter, typ)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return adapter

    def __len__(self) -> int:
        return len(self._items)


def _key(typ: object) -> Hashable:
    try:
        hash(typ)
    except TypeError:
        # Annotated[...] with unhashable metadata: keyed by identity, safe because the
        # entry keeps the type alive, so its id cannot be reused while it is cached.
        return ("id", id(typ))
    return typ


# -- output_type, as the step API and functions use it ---------------------------------------


class OutputTypeError(NonRetriableError):
    """An output does not fit its ``output_type`` (or the serializer cannot handle it).

    Not retried: the same code would fail the same way. Raised in a step's handler it
    fails the step (the function sees a :class:`~mainspring.StepError` it may catch).
    """


#: Used where an ``output_type`` is given and the client has no serializer.
DEFAULT_SERIALIZER: Serializer = PydanticSerializer()


def type_name(typ: object) -> str:
    """``Model`` for a class, ``list[Model]`` and the like for other type forms."""
    if isinstance(typ, type):
        return typ.__qualname__
    return repr(typ).replace("typing.", "")


class OutputType:
    """An ``output_type`` bound to its serializer and to what declared it (for errors)."""

    __slots__ = ("serializer", "typ", "what")

    def __init__(self, typ: object, serializer: Serializer | None, what: str) -> None:
        self.typ = typ
        self.serializer = serializer if serializer is not None else DEFAULT_SERIALIZER
        #: ``step 'load'`` or ``function 'app-fn'``.
        self.what = what

    def dump(self, value: object) -> object:
        """``value`` as JSON, as the serializer makes it; OutputTypeError if it cannot."""
        try:
            return self.serializer.serialize(value, self.typ)
        except Exception as exc:
            raise OutputTypeError(
                f"{self.what} returned {type(value).__name__}, which does not fit "
                f"output_type={type_name(self.typ)}: {exc}"
            ) from exc

    def load(self, value: object) -> Any:
        """A recorded JSON output as ``output_type``; OutputTypeError if it does not fit."""
        try:
            return self.serializer.deserialize(value, self.typ)
        except Exception as exc:
            raise OutputTypeError(
                f"the recorded output of {self.what} does not fit "
                f"output_type={type_name(self.typ)}: {exc}"
            ) from exc

    def wrap_async(self, handler: Callable[..., Any]) -> Callable[..., Awaitable[object]]:
        """``handler``, with its output serialised before it is recorded."""

        async def serialised(*args: Any) -> object:
            result = handler(*args)
            if inspect.isawaitable(result):
                result = await result
            return self.dump(result)

        return serialised

    def wrap_sync(self, handler: Callable[..., Any]) -> Callable[..., object]:
        """The sync twin of :meth:`wrap_async`."""

        def serialised(*args: Any) -> object:
            result = handler(*args)
            if inspect.isawaitable(result):
                return result  # refused by the caller, as it is without an output_type
            return self.dump(result)

        return serialised


def bind_output_type(typ: object, serializer: Serializer | None, what: str) -> OutputType | None:
    """None when no ``output_type`` was given (nothing is converted)."""
    return None if typ is None else OutputType(typ, serializer, what)


def check_serializer(serializer: object) -> Serializer | None:
    if serializer is None or isinstance(serializer, Serializer):
        return serializer
    raise FunctionConfigInvalidError(
        f"Client: serializer must have serialize(obj, typ) and deserialize(obj, typ) methods, "
        f"got {type(serializer).__name__}"
    )
