"""The curated public surface: ``mainspring.__all__`` changes only on purpose.

Adding or removing a public name must fail here, so that the change is made knowingly
(and this list, the docs and the changelog move with it).
"""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest

import mainspring
import mainspring as inngest

EXPECTED_ALL = {
    # The client and function definitions.
    "Client",
    "Inngest",
    "Function",
    "TriggerEvent",
    "TriggerCron",
    "Cancel",
    "Timeouts",
    # Flow control.
    "Concurrency",
    "RunConcurrency",
    "Throttle",
    "RateLimit",
    "Debounce",
    "Batch",
    "Priority",
    "Singleton",
    # What a function receives.
    "Context",
    "ContextSync",
    "Step",
    "StepSync",
    "Group",
    "GroupSync",
    "ParallelMode",
    "Event",
    "JSON",
    # Serving over HTTP.
    "Streaming",
    # Middleware.
    "Middleware",
    "MiddlewareSync",
    "LoggerMiddleware",
    "TransformOutputResult",
    "StepMemos",
    "SendEventsResult",
    # Outputs declared with output_type=.
    "Serializer",
    "PydanticSerializer",
    # The embedded engine.
    "Engine",
    "ManualClock",
    "Run",
    "RunStatus",
    "StepAttempt",
    # Errors.
    "MainspringError",
    "EventInvalidError",
    "FunctionConfigInvalidError",
    "NonRetriableError",
    "RetryAfterError",
    "RunNotFoundError",
    "SendEventsError",
    "StepError",
    "StepUsageError",
}

#: Top-level names of the reference SDK (``inngest.__all__``) that Mainspring provides
#: under the same name, so code written for it runs after ``import mainspring as inngest``.
REFERENCE_NAMES = {
    "Batch",
    "Cancel",
    "Concurrency",
    "Context",
    "ContextSync",
    "Debounce",
    "Event",
    "Function",
    "Inngest",
    "JSON",
    "Middleware",
    "MiddlewareSync",
    "NonRetriableError",
    "ParallelMode",
    "Priority",
    "PydanticSerializer",
    "RateLimit",
    "RetryAfterError",
    "SendEventsResult",
    "Serializer",
    "Singleton",
    "Step",
    "StepError",
    "StepMemos",
    "StepSync",
    "Streaming",
    "Throttle",
    "Timeouts",
    "TransformOutputResult",
    "TriggerCron",
    "TriggerEvent",
}

#: Reference option classes (pydantic models) whose fields ours take under the same names.
REFERENCE_OPTIONS = sorted(
    {"Batch", "Concurrency", "Debounce", "Priority", "RateLimit", "Singleton", "Throttle"}
)


def test_all_is_exactly_the_curated_surface() -> None:
    exported = set(mainspring.__all__)
    assert len(mainspring.__all__) == len(exported), "duplicate names in __all__"
    assert exported - EXPECTED_ALL == set(), "new public names: add them to EXPECTED_ALL"
    assert EXPECTED_ALL - exported == set(), "public names removed from __all__"


@pytest.mark.parametrize("name", sorted(EXPECTED_ALL))
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(mainspring, name, None) is not None


def test_star_import_gives_all_and_nothing_else() -> None:
    namespace: dict[str, object] = {}
    exec("from mainspring import *", namespace)
    namespace.pop("__builtins__", None)
    assert set(namespace) == EXPECTED_ALL


#: ``JSON`` is ``typing.Any`` under the reference SDK's name, not a class of ours.
PUBLIC_CLASSES = sorted(
    name for name in EXPECTED_ALL - {"JSON"} if inspect.isclass(getattr(mainspring, name))
)


@pytest.mark.parametrize("name", PUBLIC_CLASSES)
def test_public_classes_live_in_mainspring_and_have_docstrings(name: str) -> None:
    cls = getattr(mainspring, name)
    assert cls.__module__.split(".")[0] == "mainspring"
    assert not any(part.startswith("_") for part in cls.__module__.split(".")), cls.__module__
    assert vars(cls).get("__doc__"), f"{name} has no docstring of its own"


def test_errors_share_one_root() -> None:
    errors = [
        getattr(mainspring, name)
        for name in PUBLIC_CLASSES
        if issubclass(getattr(mainspring, name), BaseException)
    ]
    assert len(errors) == 9
    for error in errors:
        assert issubclass(error, mainspring.MainspringError), error


def test_version_matches_the_installed_distribution() -> None:
    assert mainspring.__version__ == importlib.metadata.version("mainspring")


# -- the reference SDK's spelling ----------------------------------------------------------


def test_reference_names_are_exported() -> None:
    assert REFERENCE_NAMES - set(inngest.__all__) == set()


def test_reference_names_exist_in_the_reference_sdk() -> None:
    import inngest as reference

    assert REFERENCE_NAMES - set(reference.__all__) == set()


@pytest.mark.parametrize("name", REFERENCE_OPTIONS)
def test_option_classes_take_the_reference_fields(name: str) -> None:
    import inngest as reference

    theirs = getattr(reference, name).model_fields
    ours = getattr(mainspring, name).model_fields
    assert set(theirs) <= set(ours)
    # What the reference lets a call leave out, ours does too (ours may ask less).
    for field, info in theirs.items():
        assert info.is_required() or not ours[field].is_required(), field


def test_import_mainspring_as_inngest() -> None:
    assert inngest.Inngest is inngest.Client
    client = inngest.Inngest(app_id="my-app")
    assert isinstance(client, inngest.Client)
    assert client.app_id == "my-app"

    trigger = inngest.TriggerEvent(event="my-event")
    assert trigger.event == "my-event"
    assert inngest.TriggerCron(cron="* * * * *").cron == "* * * * *"

    assert inngest.ParallelMode.RACE.value == "race"
    assert inngest.ParallelMode.WAIT.value == "wait"
    assert {mode.name for mode in inngest.ParallelMode} == {"RACE", "WAIT"}

    event = inngest.Event(name="my-event", data={"user_id": 1})
    assert event.data["user_id"] == 1

    for name in ("Context", "ContextSync", "Step", "StepSync", "Function"):
        assert inspect.isclass(getattr(inngest, name)), name
    for name in ("NonRetriableError", "RetryAfterError", "StepError"):
        assert issubclass(getattr(inngest, name), Exception), name


def test_seed_function_definition_spelling() -> None:
    inngest_client = inngest.Inngest(app_id="seed")

    @inngest_client.create_function(
        fn_id="my-function",
        trigger=inngest.TriggerEvent(event="my-event"),
    )
    async def fn(ctx: inngest.Context) -> None:
        await ctx.group.parallel((lambda: ctx.step.run("a", lambda: 1),))

    assert isinstance(fn, inngest.Function)
    assert fn.id == "seed-my-function"
