"""Where an app talks to and with which keys: arguments first, then the environment.

Names follow the reference SDK (``INNGEST_*``, §11 of the protocol notes); each also
reads a ``MAINSPRING_*`` twin first. Dev mode (no signatures) comes from
``is_production=False`` or a truthy ``MAINSPRING_DEV`` / ``INNGEST_DEV``; a URL in the
latter also sets the server's origin.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

DEV_ORIGIN = "http://127.0.0.1:8288"
CLOUD_API_ORIGIN = "https://api.inngest.com"
CLOUD_EVENT_ORIGIN = "https://inn.gs"
DEV_EVENT_KEY = "NO_EVENT_KEY_SET"


def _env(environ: Mapping[str, str], name: str) -> str | None:
    for prefix in ("MAINSPRING_", "INNGEST_"):
        value = environ.get(prefix + name)
        if value:
            return value
    return None


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


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
    base = _env(environ, "BASE_URL")
    dev_url = dev_value if dev_value is not None and _is_url(dev_value) else None
    default_api = DEV_ORIGIN if dev else CLOUD_API_ORIGIN
    default_events = DEV_ORIGIN if dev else CLOUD_EVENT_ORIGIN
    api = api_base_url or _env(environ, "API_BASE_URL") or base or dev_url or default_api
    events = (
        event_api_base_url
        or _env(environ, "EVENT_API_BASE_URL")
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
        env=env or _env(environ, "ENV"),
        serve_origin=_env(environ, "SERVE_ORIGIN"),
        serve_path=_env(environ, "SERVE_PATH"),
    )
