"""OpenAI (an OpenAI-compatible chat completions endpoint)."""

from __future__ import annotations

from mainspring.experimental.ai._chat import ChatAdapter


class Adapter(ChatAdapter):
    """OpenAI adapter: ``POST {base_url}/chat/completions`` with a bearer key."""

    DEFAULT_URL = "https://api.openai.com/v1"
