"""``GET /dev``: what the server is and serves (protocol §12), for tools and the SDKs'
test harnesses: version, how it was started, its functions, and the apps ("handlers")
that synced them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mainspring
from mainspring.engine.engine import Engine


def dev_server_info(
    engine: Engine, *, kind: str, start_options: Mapping[str, Any]
) -> dict[str, Any]:
    functions: list[dict[str, Any]] = []
    handlers: list[dict[str, Any]] = []
    for app in engine.app_list():
        url = app.url or "in-process"
        for fn in app.functions:
            functions.append({**fn.config.to_wire(url), "slug": fn.id, "appName": app.name})
        handlers.append(
            {
                "appName": app.name,
                "url": app.url,
                "sdk": {"language": "py", "version": app.sdk},
                "functionIDs": [fn.id for fn in app.functions],
            }
        )
    return {
        "version": mainspring.__version__,
        "serverKind": kind,
        "startOpts": dict(start_options),
        "functions": functions,
        "handlers": handlers,
        "features": {"graphql": True, "useAPI": True},
    }
