"""Grok (an OpenAI-compatible chat completions endpoint)."""

from __future__ import annotations

from mainspring.experimental.ai._chat import ChatAdapter


class Adapter(ChatAdapter):
    """Grok adapter: ``POST {base_url}/chat/completions`` with a bearer key."""

    DEFAULT_URL = "https://api.x.ai/v1"
