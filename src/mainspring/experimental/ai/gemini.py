"""Google's Gemini API (``generateContent``)."""

from __future__ import annotations

from mainspring.experimental.ai._chat import ChatAdapter


class Adapter(ChatAdapter):
    """Gemini adapter: ``POST {base_url}/models/{model}:generateContent?key=...``.

    The model is part of the URL, and Gemini takes the key as a query parameter, so the
    URL carries the key (as the official SDK's does); the server never shows a URL's query.
    """

    DEFAULT_URL = "https://generativelanguage.googleapis.com/v1beta/"
    FORMAT = "gemini"

    def url_infer(self) -> str:
        return f"{self._url.rstrip('/')}/models/{self._model}:generateContent?key={self._auth_key}"
