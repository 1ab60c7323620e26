"""``step.ai.infer`` ports from the official SDK by changing the import: the adapters give
what the official ones give, and the op carries the same opts; the engine builds the
provider request each format asks for."""

from __future__ import annotations

import copy
import importlib
from typing import Any

import pytest
from inngest._internal.step_lib.base import AIInferOpts

import mainspring.experimental.ai
from mainspring.engine import ai_gateway
from mainspring.protocol.opcodes import Opcode
from mainspring.sdk.ops import Registration
from mainspring.sdk.step_ai import infer_spec

PROVIDERS = ["openai", "anthropic", "gemini", "grok", "deepseek"]
ARGS: list[dict[str, Any]] = [
    {"auth_key": "k-1", "model": "m"},
    {"auth_key": "k-2", "model": "m", "base_url": "http://proxy.test/v2/", "headers": {"a": "b"}},
    {"auth_key": "k-3", "model": "m", "headers": {}},
]


def _pair(provider: str, args: dict[str, Any]) -> tuple[Any, Any]:
    ours = importlib.import_module(f"mainspring.experimental.ai.{provider}").Adapter(**args)
    theirs = importlib.import_module(f"inngest.experimental.ai.{provider}").Adapter(**args)
    return ours, theirs


@pytest.mark.parametrize("args", ARGS)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_adapters_give_what_the_official_ones_give(provider: str, args: dict[str, Any]) -> None:
    ours, theirs = _pair(provider, args)
    for method in ("auth_key", "format", "headers", "url_infer"):
        assert getattr(ours, method)() == getattr(theirs, method)(), method
    bodies: list[dict[str, Any]] = [{}, {"model": "mine"}, {"model": ""}, {"messages": []}]
    for body in bodies:
        mine, official = copy.deepcopy(body), copy.deepcopy(body)
        ours.on_call(mine)
        theirs.on_call(official)
        assert mine == official


def test_the_package_exports_what_the_official_one_does() -> None:
    official = importlib.import_module("inngest.experimental.ai")
    assert set(official.__all__) <= set(mainspring.experimental.ai.__all__)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_the_op_is_the_official_sdks(provider: str) -> None:
    ours, theirs = _pair(provider, ARGS[1])
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    spec = infer_spec("ask", ours, copy.deepcopy(body))
    op = Registration(spec, "hashed", 0, 1, in_parallel=False, race=False, context=None)
    wire = op.to_op().to_wire()
    official_body = copy.deepcopy(body)
    theirs.on_call(official_body)
    official = AIInferOpts(
        auth_key=theirs.auth_key(),
        body=official_body,
        format=theirs.format(),
        headers=theirs.headers(),
        url=theirs.url_infer(),
    ).to_dict()
    assert wire["op"] == Opcode.AI_GATEWAY.value == "AIGateway"
    assert (wire["name"], wire["displayName"]) == ("ask", "ask")
    assert wire["opts"] == official


def test_an_official_adapter_works_with_our_step() -> None:
    theirs = importlib.import_module("inngest.experimental.ai.openai").Adapter(
        auth_key="k", model="m"
    )
    spec = infer_spec("ask", theirs, {})
    assert spec.opts is not None
    assert spec.opts["url"] == "https://api.openai.com/v1/chat/completions"
    assert spec.opts["body"] == {"model": "m"}


def _request(fmt: str, **opts: Any) -> Any:
    base = {"url": "https://p.test/x?v=1", "auth_key": "K", "format": fmt, "body": {}}
    return ai_gateway._request({**base, **opts})


def test_each_format_sends_the_key_its_way() -> None:
    assert _request("openai-chat").headers["authorization"] == "Bearer K"
    assert _request("bedrock").headers["authorization"] == "K"
    anthropic = _request("anthropic")
    assert anthropic.headers["x-api-key"] == "K"
    assert "authorization" not in anthropic.headers
    gemini = _request("gemini")
    assert gemini.url == "https://p.test/x?v=1&key=K"
    assert "authorization" not in gemini.headers
    # The official Gemini adapter puts the key in the URL already: not added twice.
    assert _request("gemini", url="https://p.test/x?key=K").url == "https://p.test/x?key=K"
    # The op's own headers win (a custom auth scheme).
    custom = _request("openai-chat", headers={"Authorization": "Token T"})
    assert custom.headers["authorization"] == "Token T"
    # The key never shows in the request's repr.
    assert "SECRETKEY" not in repr(_request("openai-chat", auth_key="SECRETKEY"))


def test_the_key_is_scrubbed_from_text() -> None:
    request = _request("gemini", auth_key='sk/with+odd"chars')
    text = f'failed for {request.url}: echo sk/with+odd\\"chars and sk%2Fwith%2Bodd%22chars'
    scrubbed = ai_gateway._scrub(text, request)
    assert "sk/with" not in scrubbed
    assert "sk%2F" not in scrubbed
    assert "https://p.test/x:" in scrubbed  # the URL without its query
