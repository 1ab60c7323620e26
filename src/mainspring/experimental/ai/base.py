"""What ``step.ai.infer`` needs of a provider adapter."""

from __future__ import annotations

from typing import Protocol


class BaseAdapter(Protocol):
    """A provider adapter: where the server sends an inference request and how it
    authenticates. Any object with these methods works, the official SDK's adapters too."""

    def auth_key(self) -> str:
        """The provider's API key (the server sends it; it is never stored)."""
        ...

    def format(self) -> str:
        """The request format, which says how the key is sent: ``openai-chat``,
        ``anthropic``, ``gemini`` or ``bedrock``."""
        ...

    def headers(self) -> dict[str, str]:
        """Extra request headers."""
        ...

    def on_call(self, body: dict[str, object]) -> None:
        """Adjust the request body in place before it is sent (fill in the model)."""
        ...

    def url_infer(self) -> str:
        """The full URL the server POSTs the body to."""
        ...
