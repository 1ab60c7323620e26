"""Who may use the dashboard, and which of their requests are really theirs.

In ``start`` mode (signing keys configured) every page is behind a login form taking the
signing key. A successful login sets a session cookie: a random session id, when it was
issued, and an HMAC of both keyed by a secret derived from the signing key (so a server
restarted with the same key keeps its sessions, and a rotated key ends them). Nothing is
stored server side. In ``dev`` mode nobody logs in, but a session is issued all the same
(keyed by a per-process secret): it is what the CSRF token is bound to.

Every ``POST`` must carry the session's CSRF token (a form field or the ``X-CSRF-Token``
header: an HMAC of the session id, so a cross-site page cannot know it) and come from the
dashboard's own origin (``Origin``, else ``Referer``). Comparisons are constant-time.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import Response

from mainspring.protocol import signing
from mainspring.server import limits

#: Name of the session cookie.
COOKIE = "mainspring_session"
#: Largest form accepted (a function's invoke payload is the largest field).
FORM_BYTES = 1024 * 1024
#: How long a session lasts (seconds).
SESSION_SECONDS = 12 * 3600


def _secret(key: str) -> bytes:
    return hashlib.sha256(b"mainspring-dashboard-session\0" + key.encode()).digest()


def _mac(secret: bytes, message: str) -> str:
    return hmac.new(secret, message.encode(), hashlib.sha256).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    """A verified session: its id and its CSRF token."""

    sid: str
    csrf: str


class Guard:
    """Sessions, logins and CSRF checks for one server."""

    def __init__(self, signing_keys: Sequence[str]) -> None:
        self.signing_keys = list(signing_keys)
        #: Whether pages need a login (``start`` mode).
        self.login_required = bool(self.signing_keys)
        if self.login_required:
            self._secrets = [_secret(key) for key in self.signing_keys]
        else:
            self._secrets = [secrets.token_bytes(32)]

    # -- sessions --------------------------------------------------------------------

    def _csrf(self, secret: bytes, sid: str) -> str:
        return _mac(secret, f"csrf:{sid}")

    def new_session(self) -> tuple[Session, str]:
        """A fresh session and its cookie value."""
        sid = secrets.token_urlsafe(24)
        issued = str(int(time.time()))
        secret = self._secrets[0]
        cookie = f"{sid}.{issued}.{_mac(secret, f'{sid}.{issued}')}"
        return Session(sid, self._csrf(secret, sid)), cookie

    def session(self, request: Request) -> Session | None:
        """The request's session if its cookie is valid and not expired."""
        raw = request.cookies.get(COOKIE, "")
        sid, _, rest = raw.partition(".")
        issued, _, mac = rest.partition(".")
        if not sid or not issued.isdigit() or not mac:
            return None
        if time.time() - int(issued) > SESSION_SECONDS:
            return None
        found: Session | None = None
        for secret in self._secrets:  # every key is tried: timing does not tell which
            expected = _mac(secret, f"{sid}.{issued}")
            if hmac.compare_digest(expected.encode(), mac.encode()) and found is None:
                found = Session(sid, self._csrf(secret, sid))
        return found

    def set_cookie(self, response: Response, request: Request, cookie: str) -> None:
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=SESSION_SECONDS,
            path="/",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )

    def key_accepted(self, presented: str) -> bool:
        """Whether ``presented`` is one of the signing keys (raw or hashed)."""
        return bool(presented.strip()) and signing.any_key_matches(
            presented.strip(), self.signing_keys
        )

    # -- requests --------------------------------------------------------------------

    @staticmethod
    def same_origin(request: Request) -> bool:
        """Whether a request comes from the dashboard's own origin (``Origin``, else
        ``Referer``); a request with neither is refused."""
        own = f"{request.url.scheme}://{request.headers.get('host', request.url.netloc)}"
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            return origin == own
        referer = request.headers.get("referer")
        if referer:
            parts = urlsplit(referer)
            return f"{parts.scheme}://{parts.netloc}" == own
        return False

    @staticmethod
    def csrf_matches(session: Session, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(
            session.csrf.encode(), presented.encode("utf-8", "surrogatepass")
        )


async def form_of(request: Request) -> dict[str, str]:
    """The request's URL-encoded form (read once, capped; the last value of a repeated
    field), without python-multipart: the dashboard's forms post nothing else."""
    cached = getattr(request.state, "dashboard_form", None)
    if isinstance(cached, dict):
        return cached
    form: dict[str, str] = {}
    kind = request.headers.get("content-type", "")
    if kind.startswith("application/x-www-form-urlencoded"):
        body = await limits.read_body(request, FORM_BYTES)
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    request.state.dashboard_form = form
    return form
