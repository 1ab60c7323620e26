"""Anthropic's Messages API."""

from __future__ import annotations

from mainspring.experimental.ai._chat import ChatAdapter


class Adapter(ChatAdapter):
    """Anthropic adapter: ``POST {base_url}/messages``, the key in ``x-api-key``.

    Without ``headers`` it sends ``anthropic-version: 2023-06-01``, which the API requires.
    """

    DEFAULT_URL = "https://api.anthropic.com/v1"
    PATH = "/messages"
    FORMAT = "anthropic"

    @classmethod
    def default_headers(cls) -> dict[str, str]:
        return {"anthropic-version": "2023-06-01"}
