"""Provider adapters for ``step.ai.infer``, as in ``inngest.experimental.ai``.

Each provider module has an ``Adapter(auth_key=..., model=..., base_url=None,
headers=None)``: ``openai``, ``anthropic``, ``gemini``, ``grok`` and ``deepseek``.
The server makes the call; the function only says what to send where.
"""

from mainspring.experimental.ai import anthropic, deepseek, gemini, grok, openai
from mainspring.experimental.ai.base import BaseAdapter

__all__ = ["BaseAdapter", "anthropic", "deepseek", "gemini", "grok", "openai"]
