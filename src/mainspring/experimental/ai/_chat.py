"""The behaviour every shipped adapter shares; each provider module sets its defaults."""

from __future__ import annotations

from typing import ClassVar


class ChatAdapter:
    """An adapter for a provider's chat endpoint: ``{base_url}{path}``.

    Args:
        auth_key: the provider's API key.
        base_url: the API's base URL (default: the provider's public API).
        headers: extra request headers (default: the provider's defaults, if any).
        model: the model a request body without one asks for.
    """

    #: Set by each provider.
    DEFAULT_URL: ClassVar[str] = ""
    PATH: ClassVar[str] = "/chat/completions"
    FORMAT: ClassVar[str] = "openai-chat"

    def __init__(
        self,
        *,
        auth_key: str,
        base_url: str | None = None,
        headers: dict[str, str] | None = None,
        model: str,
    ) -> None:
        self._auth_key = auth_key
        # An empty mapping also means "the defaults", as in the official SDK.
        self._headers = headers or self.default_headers()
        self._model = model
        self._url = base_url or self.DEFAULT_URL

    @classmethod
    def default_headers(cls) -> dict[str, str]:
        return {}

    def auth_key(self) -> str:
        return self._auth_key

    def format(self) -> str:
        return self.FORMAT

    def headers(self) -> dict[str, str]:
        return self._headers

    def on_call(self, body: dict[str, object]) -> None:
        """Ask for the adapter's model unless the body names one."""
        if not body.get("model"):
            body["model"] = self._model

    def url_infer(self) -> str:
        return self._url.rstrip("/") + self.PATH
