"""Apps synced over HTTP: which functions each app serves, where, and from which SDK.

The registry edits the engine's function table and its routing table in place: a
registered function is an ordinary function of the engine whose calls go over HTTP to its
app. Persistence (the stored registrations) and cron schedules stay with the engine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mainspring.engine.records import AppInfo
from mainspring.engine.remote import Registration
from mainspring.engine.transport import Transport
from mainspring.errors import MainspringError
from mainspring.sdk.function import Function


class AppRegistry:
    def __init__(
        self,
        functions: dict[str, Function[Any]],
        routes: dict[str, Transport],
        connect: Callable[[str], Transport],
    ) -> None:
        self._functions = functions
        self._routes = routes
        #: Makes the transport to one serve URL.
        self._connect = connect
        #: Function ids of each app.
        self._ids: dict[str, set[str]] = {}
        #: Each app's last sync: its serve URL and the SDK it reported.
        self._syncs: dict[str, tuple[str, str]] = {}
        #: The ``appVersion`` of the app serving each function synced over HTTP (None: its
        #: app gave none); functions loaded in process are not in it.
        self._versions: dict[str, str | None] = {}

    def install(self, registration: Registration) -> None:
        """Route the app's functions to its URL, replacing its previous ones."""
        for fn in registration.functions:
            owner = next((app for app, ids in self._ids.items() if fn.id in ids), None)
            if fn.id in self._functions and owner != registration.app_name:
                raise MainspringError(f"function {fn.id!r} already belongs to another app")
        self._drop(registration.app_name)
        transports: dict[str, Transport] = {}
        for fn in registration.functions:
            url = registration.urls[fn.id]
            transport = transports.get(url)
            if transport is None:
                transport = transports[url] = self._connect(url)
            self._functions[fn.id] = fn
            self._routes[fn.id] = transport
            version = registration.body.get("appVersion")
            self._versions[fn.id] = version if isinstance(version, str) and version else None
        self._ids[registration.app_name] = {fn.id for fn in registration.functions}
        self._syncs[registration.app_name] = (registration.url, registration.sdk)

    def remove(self, url: str) -> list[str]:
        """Forget the apps last synced from ``url``; their names."""
        names = sorted(name for name, (synced, _) in self._syncs.items() if synced == url)
        for name in names:
            self._drop(name)
            del self._syncs[name]
        return names

    def _drop(self, name: str) -> None:
        for fn_id in self._ids.pop(name, set()):
            self._functions.pop(fn_id, None)
            self._routes.pop(fn_id, None)
            self._versions.pop(fn_id, None)

    def version_of(self, fn_id: str, local: str | None) -> str | None:
        """The app version serving ``fn_id``: its app's last sync's, else ``local`` (the
        version of the engine's own client) for a function loaded in process. Called
        for every job: one dict lookup."""
        return self._versions.get(fn_id, local)

    def owner(self, fn_id: str) -> str | None:
        """The app serving ``fn_id`` now, if an app synced over HTTP does."""
        return next((app for app, ids in self._ids.items() if fn_id in ids), None)

    def ids_of(self, name: str) -> set[str]:
        """The function ids app ``name`` serves now (none if it is not synced)."""
        return set(self._ids.get(name, ()))

    def by_name(self) -> dict[str, list[Function[Any]]]:
        """Each app's functions, by app name."""
        return {
            name: [self._functions[i] for i in sorted(ids) if i in self._functions]
            for name, ids in self._ids.items()
        }

    def listing(self, local_app: str) -> list[AppInfo]:
        """Every app: ``local_app`` for the functions loaded in process (if any), then
        those synced over HTTP, by name."""
        remote = {fn_id for ids in self._ids.values() for fn_id in ids}
        local = [fn for fn_id, fn in self._functions.items() if fn_id not in remote]
        listed = [AppInfo(local_app, None, "mainspring", local)] if local else []
        for name, functions in sorted(self.by_name().items()):
            url, sdk = self._syncs.get(name, ("", ""))
            listed.append(AppInfo(name, url, sdk, functions))
        return listed
