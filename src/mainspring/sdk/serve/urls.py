"""The URL an app registers with the server: where the server will call it.

By default it is the URL the sync request came in on. Behind a proxy, a tunnel or in a
container that URL is not the one the server can reach, so three options rewrite it, as in
the reference SDK:

- ``serve_origin`` (else ``INNGEST_SERVE_ORIGIN``) replaces the scheme and host; without a
  scheme (``shop.example.com``) it is https;
- ``serve_path`` (else ``INNGEST_SERVE_PATH``) replaces the path; it is also where the
  adapter mounts its route;
- ``public_path`` replaces the path again, for a proxy that rewrites paths: the server calls
  ``/public/inngest`` while the app serves ``/api/inngest``. It wins over ``serve_path``.

The request's query string is kept (it may carry parameters the app needs, protocol §1.3),
except ``deployId``, which belongs to the one sync that sent it.
"""

from __future__ import annotations

import dataclasses
import urllib.parse

DEFAULT_SERVE_PATH = "/api/inngest"


@dataclasses.dataclass(frozen=True, slots=True)
class ServeLocation:
    """The options that move the registered URL away from the request's own."""

    serve_origin: str | None = None
    serve_path: str | None = None
    public_path: str | None = None

    def origin_and_path(self, request_url: str) -> tuple[str, str]:
        """The origin (``scheme://host[:port]``) and path the server is to call."""
        parts = urllib.parse.urlsplit(request_url)
        scheme, netloc = parts.scheme, parts.netloc
        if self.serve_origin:
            if "://" in self.serve_origin:
                given = urllib.parse.urlsplit(self.serve_origin)
                scheme, netloc = given.scheme or scheme, given.netloc or netloc
            else:
                scheme, netloc = "https", self.serve_origin.rstrip("/")
        path = self.public_path or self.serve_path or parts.path or DEFAULT_SERVE_PATH
        return f"{scheme}://{netloc}", path

    def url(self, request_url: str) -> str:
        """The whole URL to register, the request's query kept but for ``deployId``."""
        origin, path = self.origin_and_path(request_url)
        query = [
            (key, value)
            for key, value in urllib.parse.parse_qsl(urllib.parse.urlsplit(request_url).query)
            if key != "deployId"
        ]
        suffix = f"?{urllib.parse.urlencode(query)}" if query else ""
        return f"{origin}{path}{suffix}"
