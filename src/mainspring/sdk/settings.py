"""Where an app talks to and with which keys: arguments first, then the environment.

Names follow the reference SDK (``INNGEST_*``, §11 of the protocol notes); each also
reads a ``MAINSPRING_*`` twin first. Dev mode (no signatures) comes from
``is_production=False`` or a truthy ``MAINSPRING_DEV`` / ``INNGEST_DEV``; a URL in the
latter also sets the server's origin.

The server's origins: the argument, else ``INNGEST_API_BASE_URL`` (or
``INNGEST_EVENT_API_BASE_URL``), else ``INNGEST_BASE_URL``, else a URL in ``INNGEST_DEV``,
else the mode's default. An origin may leave out its scheme (``my-host:8288``): https in
cloud mode, http in dev mode, as the reference does. The branch environment is ``env``, else
``INNGEST_ENV``, else the platforms' branch variables (Railway, Render, Vercel).

A value that cannot mean what its variable asks for (``INNGEST_STREAMING=maybe``,
``INNGEST_ENABLE_UNAUTHED_SYNC=no``, a base URL without a host) raises :class:`ValueError`
naming the variable, rather than being ignored: ignoring ``=no`` would leave unsigned syncs
open, the opposite of what was asked.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Mapping

DEV_ORIGIN = "http://127.0.0.1:8288"
CLOUD_API_ORIGIN = "https://api.inngest.com"
CLOUD_EVENT_ORIGIN = "https://inn.gs"
DEV_EVENT_KEY = "NO_EVENT_KEY_SET"


def _env_item(environ: Mapping[str, str], name: str) -> tuple[str, str] | None:
    """The variable that sets ``name`` (``MAINSPRING_`` first) and its value, if any."""
    for prefix in ("MAINSPRING_", "INNGEST_"):
        value = environ.get(prefix + name)
        if value:
            return prefix + name, value
    return None


def _env(environ: Mapping[str, str], name: str) -> str | None:
    item = _env_item(environ, name)
    return None if item is None else item[1]


#: Where a platform puts the git branch it deploys (Railway, Render, Vercel), in the order
#: the reference reads them after ``INNGEST_ENV``.
PLATFORM_BRANCH_VARIABLES = ("RAILWAY_GIT_BRANCH", "RENDER_GIT_BRANCH", "VERCEL_GIT_COMMIT_REF")


class Streaming(enum.Enum):
    """Whether a served execution answers as a stream: ``FORCE`` answers 201 at once, sends a
    space every few seconds while the function runs, then the real answer as JSON
    ``{body, headers, status}`` (for hosts that cut responses slow to start)."""

    DISABLE = "disable"
    FORCE = "force"


def _as_url(value: str, *, dev: bool) -> str | None:
    """``value`` as an origin URL, its scheme added when missing; None if it has no host.

    As the reference: without ``://`` a value names a host only if it has a dot or a colon
    (``INNGEST_DEV=1`` is a flag, ``INNGEST_DEV=localhost:8288`` a server).
    """
    value = value.strip()
    if "://" not in value:
        if "." not in value and ":" not in value:
            return None
        value = f"{'http' if dev else 'https'}://{value}"
    scheme, _, rest = value.partition("://")
    host = rest.split("/", 1)[0]
    if scheme.lower() not in ("http", "https") or not host:
        return None
    return value


def _url(value: str | None, what: str, *, dev: bool) -> str | None:
    if not value:
        return None
    url = _as_url(value, dev=dev)
    if url is None:
        raise ValueError(f"{what}={value!r} is not an http(s) URL with a host")
    return url


def _env_url(environ: Mapping[str, str], name: str, *, dev: bool) -> str | None:
    item = _env_item(environ, name)
    return None if item is None else _url(item[1], item[0], dev=dev)


def _streaming(environ: Mapping[str, str]) -> Streaming | None:
    item = _env_item(environ, "STREAMING")
    if item is None:
        return None
    word = item[1].strip().lower()
    if word == "allow":  # the TypeScript SDK's word; the reference takes it as force
        return Streaming.FORCE
    try:
        return Streaming(word)
    except ValueError:
        raise ValueError(f"{item[0]}={item[1]!r}: expected 'disable', 'force' or 'allow'") from None


def _unauthed_sync(environ: Mapping[str, str]) -> bool:
    """``INNGEST_ENABLE_UNAUTHED_SYNC``: on unless set false (the reference's default)."""
    item = _env_item(environ, "ENABLE_UNAUTHED_SYNC")
    if item is None:
        return True
    word = item[1].strip().lower()
    if word in ("true", "1"):
        return True
    if word in ("false", "0"):
        return False
    raise ValueError(f"{item[0]}={item[1]!r}: expected 'true', 'false', '1' or '0'")


def _max_workers(environ: Mapping[str, str]) -> int | None:
    item = _env_item(environ, "THREAD_POOL_MAX_WORKERS")
    if item is None:
        return None
    try:
        count = int(item[1].strip())
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"{item[0]}={item[1]!r}: expected a whole number, 0 or more")
    return count


def _branch(environ: Mapping[str, str]) -> str | None:
    found = _env(environ, "ENV")
    for name in PLATFORM_BRANCH_VARIABLES:
        found = found or environ.get(name) or None
    return found


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The resolved connection settings of a client."""

    dev: bool
    api_origin: str
    event_api_origin: str
    signing_key: str | None
    signing_key_fallback: str | None
    event_key: str | None
    env: str | None
    serve_origin: str | None
    serve_path: str | None
    #: ``INNGEST_STREAMING``; None when unset (the adapter's default applies).
    streaming: Streaming | None = None
    #: ``INNGEST_ENABLE_UNAUTHED_SYNC``: may an unsigned PUT sync the app in cloud mode.
    enable_unauthed_sync: bool = True
    #: ``INNGEST_THREAD_POOL_MAX_WORKERS``: threads running sync steps (0: none, inline).
    thread_pool_max_workers: int | None = None


def resolve(
    *,
    is_production: bool | None = None,
    api_base_url: str | None = None,
    event_api_base_url: str | None = None,
    signing_key: str | None = None,
    event_key: str | None = None,
    env: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Apply the precedence: argument > specific variable > BASE_URL > DEV URL > default."""
    environ = os.environ if environ is None else environ
    dev_value = _env(environ, "DEV")
    if is_production is None:
        dev = dev_value is not None and dev_value.strip().lower() not in ("0", "false", "")
    else:
        dev = not is_production
    base = _env_url(environ, "BASE_URL", dev=dev)
    dev_url = None if dev_value is None else _as_url(dev_value, dev=dev)
    default_api = DEV_ORIGIN if dev else CLOUD_API_ORIGIN
    default_events = DEV_ORIGIN if dev else CLOUD_EVENT_ORIGIN
    api = (
        _url(api_base_url, "api_base_url", dev=dev)
        or _env_url(environ, "API_BASE_URL", dev=dev)
        or base
        or dev_url
        or default_api
    )
    events = (
        _url(event_api_base_url, "event_api_base_url", dev=dev)
        or _env_url(environ, "EVENT_API_BASE_URL", dev=dev)
        or base
        or dev_url
        or default_events
    )
    return Settings(
        dev=dev,
        api_origin=api.rstrip("/"),
        event_api_origin=events.rstrip("/"),
        signing_key=signing_key or _env(environ, "SIGNING_KEY"),
        signing_key_fallback=_env(environ, "SIGNING_KEY_FALLBACK"),
        event_key=event_key or _env(environ, "EVENT_KEY") or (DEV_EVENT_KEY if dev else None),
        env=env or _branch(environ),
        serve_origin=_env(environ, "SERVE_ORIGIN"),
        serve_path=_env(environ, "SERVE_PATH"),
        streaming=_streaming(environ),
        enable_unauthed_sync=_unauthed_sync(environ),
        thread_pool_max_workers=_max_workers(environ),
    )
