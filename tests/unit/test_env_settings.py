"""The client's settings from arguments and ``INNGEST_*`` variables, in the reference's order.

Each test hands ``resolve`` an environment of its own, so nothing leaks from the process's.
"""

from __future__ import annotations

import pytest

from mainspring.sdk.settings import (
    CLOUD_API_ORIGIN,
    CLOUD_EVENT_ORIGIN,
    DEV_ORIGIN,
    Settings,
    Streaming,
    resolve,
)


def settings(environ: dict[str, str], **arguments: object) -> Settings:
    return resolve(environ=environ, **arguments)  # type: ignore[arg-type]


# -- the server's origins ----------------------------------------------------------------


def test_origins_default_by_mode() -> None:
    cloud = settings({})
    assert not cloud.dev
    assert (cloud.api_origin, cloud.event_api_origin) == (CLOUD_API_ORIGIN, CLOUD_EVENT_ORIGIN)
    dev = settings({"INNGEST_DEV": "1"})
    assert dev.dev
    assert (dev.api_origin, dev.event_api_origin) == (DEV_ORIGIN, DEV_ORIGIN)


def test_origin_precedence_argument_specific_base_dev_url() -> None:
    environ = {
        "INNGEST_DEV": "http://dev-url:1",
        "INNGEST_BASE_URL": "http://base:2",
        "INNGEST_API_BASE_URL": "http://api:3",
        "INNGEST_EVENT_API_BASE_URL": "http://events:4",
    }
    assert settings(environ, api_base_url="http://arg:5").api_origin == "http://arg:5"
    assert settings(environ).api_origin == "http://api:3"
    assert settings(environ).event_api_origin == "http://events:4"
    del environ["INNGEST_API_BASE_URL"], environ["INNGEST_EVENT_API_BASE_URL"]
    assert settings(environ).api_origin == "http://base:2"
    assert settings(environ).event_api_origin == "http://base:2"
    del environ["INNGEST_BASE_URL"]
    found = settings(environ)
    assert found.dev  # a URL in INNGEST_DEV is truthy: dev mode, and the server's origin
    assert (found.api_origin, found.event_api_origin) == ("http://dev-url:1", "http://dev-url:1")


def test_the_base_url_does_not_depend_on_the_mode() -> None:
    # Self-hosting: a cloud-mode client (signatures on) pointed at its own server.
    found = settings({"INNGEST_BASE_URL": "http://my-inngest:8288/"})
    assert not found.dev
    assert found.api_origin == found.event_api_origin == "http://my-inngest:8288"


def test_mainspring_twins_come_first() -> None:
    found = settings({"MAINSPRING_BASE_URL": "http://ours:1", "INNGEST_BASE_URL": "http://b:2"})
    assert found.api_origin == "http://ours:1"


@pytest.mark.parametrize(
    ("dev_value", "dev", "origin"),
    [
        ("1", True, DEV_ORIGIN),
        ("true", True, DEV_ORIGIN),
        ("0", False, CLOUD_API_ORIGIN),
        ("false", False, CLOUD_API_ORIGIN),
        ("localhost:9000", True, "http://localhost:9000"),
        ("https://dev.example.com", True, "https://dev.example.com"),
    ],
)
def test_inngest_dev_is_a_flag_or_a_url(dev_value: str, dev: bool, origin: str) -> None:
    found = settings({"INNGEST_DEV": dev_value})
    assert (found.dev, found.api_origin) == (dev, origin)


def test_a_url_without_scheme_gets_the_modes_scheme() -> None:
    assert settings({"INNGEST_BASE_URL": "my-host:8288"}).api_origin == "https://my-host:8288"
    dev = settings({"INNGEST_BASE_URL": "my-host:8288"}, is_production=False)
    assert dev.api_origin == "http://my-host:8288"
    assert settings({}, api_base_url="api.example.com").api_origin == "https://api.example.com"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INNGEST_BASE_URL", "nohost"),
        ("INNGEST_API_BASE_URL", "ftp://files.example.com"),
        ("MAINSPRING_EVENT_API_BASE_URL", "http://"),
    ],
)
def test_a_base_url_that_is_no_url_is_refused_naming_the_variable(
    variable: str, value: str
) -> None:
    with pytest.raises(ValueError, match=variable):
        settings({variable: value})


# -- keys and the branch environment -------------------------------------------------------


def test_the_fallback_signing_key_comes_from_the_environment_only() -> None:
    found = settings(
        {"INNGEST_SIGNING_KEY": "signkey-prod-aa", "INNGEST_SIGNING_KEY_FALLBACK": "signkey-b"},
        signing_key="signkey-prod-arg",
    )
    assert (found.signing_key, found.signing_key_fallback) == ("signkey-prod-arg", "signkey-b")


def test_env_precedence_argument_inngest_env_then_platform_branches() -> None:
    environ = {
        "INNGEST_ENV": "mine",
        "RAILWAY_GIT_BRANCH": "railway",
        "RENDER_GIT_BRANCH": "render",
        "VERCEL_GIT_COMMIT_REF": "vercel",
    }
    assert settings(environ, env="arg").env == "arg"
    order = ["mine", "railway", "render", "vercel"]
    for variable, expected in zip(list(environ), order, strict=True):
        assert settings(environ).env == expected
        del environ[variable]
    assert settings(environ).env is None


# -- serving -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("force", Streaming.FORCE),
        ("FORCE", Streaming.FORCE),
        ("allow", Streaming.FORCE),  # the TypeScript SDK's word, force to the reference
        ("disable", Streaming.DISABLE),
    ],
)
def test_streaming(value: str | None, expected: Streaming | None) -> None:
    environ = {} if value is None else {"INNGEST_STREAMING": value}
    assert settings(environ).streaming is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("true", True), ("1", True), ("false", False), ("0", False), ("FALSE", False)],
)
def test_unauthed_sync_is_on_unless_set_false(value: str | None, expected: bool) -> None:
    environ = {} if value is None else {"INNGEST_ENABLE_UNAUTHED_SYNC": value}
    assert settings(environ).enable_unauthed_sync is expected


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("0", 0), ("8", 8)])
def test_thread_pool_max_workers(value: str | None, expected: int | None) -> None:
    environ = {} if value is None else {"INNGEST_THREAD_POOL_MAX_WORKERS": value}
    assert settings(environ).thread_pool_max_workers == expected


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("INNGEST_STREAMING", "maybe"),
        # Read as "on", a typo would leave unsigned syncs open: refused instead.
        ("INNGEST_ENABLE_UNAUTHED_SYNC", "no"),
        ("INNGEST_THREAD_POOL_MAX_WORKERS", "-1"),
        ("INNGEST_THREAD_POOL_MAX_WORKERS", "many"),
    ],
)
def test_a_value_the_variable_cannot_take_is_refused(variable: str, value: str) -> None:
    with pytest.raises(ValueError, match=f"{variable}={value!r}"):
        settings({variable: value})


def test_serve_origin_and_path() -> None:
    found = settings({"INNGEST_SERVE_ORIGIN": "https://shop.example", "INNGEST_SERVE_PATH": "/x"})
    assert (found.serve_origin, found.serve_path) == ("https://shop.example", "/x")
