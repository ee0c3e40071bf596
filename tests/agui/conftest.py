"""AG-UI のエンドポイントのテストの部品: 本物のサーバープロセス (eventlet / threading / gevent) と偽のプロバイダ。

gevent は WSGI サーバーがソケットを見せないので、切断には書き込みの失敗 (ジェネレータの ``GeneratorExit``) で
気づく。eventlet と threading はソケットを覗いて気づく。3 つとも abort のテストを通すことで両方の道を確かめる。

上流は OpenAI の偽サーバー (規則モード: 発話の ``[stall]`` / ``[fail:400]`` などで振る舞いを選ぶ) と、推論
(thinking) を流す Anthropic の偽サーバー。主体は 2 つ (トークン ``ALICE`` と ``BOB``)。キープアライブは短くして、
止まった上流の間にコメント行が届くことを確かめられるようにする。終了時にサーバーログに秘密の値が無いことを確かめる。
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.agui.client import AguiClient
from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.openai_fake import OpenAIFake
from tests.realtime.harness import ServerProcess

ASYNC_MODES = ("eventlet", "threading", "gevent")
ALICE = "tok-alice-4f1e2d3c"
BOB = "tok-bob-9a8b7c6d"
SECRETS = {
    "OPENAI_API_KEY": "sk-test-agui-NEVER-LEAK-1a2b3c",
    "ANTHROPIC_API_KEY": "sk-ant-test-agui-NEVER-LEAK-4d5e6f",
    "LLM_ROUTER_API_TOKENS": f"{ALICE},{BOB}",
}
KEEPALIVE_S = 0.3


class LiveAgui:
    """起動中のサーバー、その AG-UI クライアント、上流の偽サーバー。"""

    def __init__(self, process: ServerProcess, openai: OpenAIFake, anthropic: AnthropicFake, mode: str) -> None:
        """部品を受け取る。"""
        self.process = process
        self.openai = openai
        self.anthropic = anthropic
        self.mode = mode
        self.client = AguiClient(process.url)


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[OpenAIFake]:
    """規則モードの OpenAI の偽サーバー。"""
    with OpenAIFake(rules=True) as fake:
        yield fake


@pytest.fixture(scope="module")
def anthropic_fake() -> Iterator[AnthropicFake]:
    """規則モードの Anthropic の偽サーバー (思考が要求されれば thinking ブロックを流す)。"""
    fake = AnthropicFake(rule_based=True, api_key=SECRETS["ANTHROPIC_API_KEY"])
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture(scope="module", params=ASYNC_MODES)
def agui(request: pytest.FixtureRequest, openai_fake: OpenAIFake, anthropic_fake: AnthropicFake) -> Iterator[LiveAgui]:
    """``request.param`` の非同期モードのサーバー。"""
    overrides = [
        f"providers.openai.base_url={openai_fake.base_url}",
        f"providers.anthropic.base_url={anthropic_fake.base_url}",
        "agent.model=openai/gpt-4.1-mini",
        "providers.openai.retry.initial_backoff_s=0.01",
        "providers.openai.retry.max_backoff_s=0.05",
        f"agui.keepalive_s={KEEPALIVE_S}",
        "agui.disconnect_poll_s=0.05",
        "server.rate_limit_per_minute=100000",
    ]
    process = ServerProcess(overrides=overrides, secrets=SECRETS, async_mode=request.param).start()
    try:
        yield LiveAgui(process, openai_fake, anthropic_fake, request.param)
    finally:
        process.stop()
        try:
            log = process.log_text()
            for name, value in SECRETS.items():
                assert value not in log, f"{name} found in the server log"
        finally:
            process.close()


@pytest.fixture
def live(agui: LiveAgui) -> LiveAgui:
    """記録を消した偽サーバーつきのサーバー。"""
    agui.openai.reset()
    agui.anthropic.server.requests.clear()
    return agui
