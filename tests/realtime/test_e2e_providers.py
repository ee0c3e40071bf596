"""エンドツーエンド: 4 つのプロバイダ (OpenAI / Anthropic / Gemini / Ollama の偽サーバー) それぞれで、
そのプロバイダの形式のツール定義を使い、テキストのラン、クライアント側ツールのラン、ストリーム中のキャンセルを確かめる。

サーバーは 1 つ (eventlet)。各プロバイダの ``base_url`` を偽サーバーに向け、偽の API キーを .env で渡す。
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_fake import AnthropicFake
from tests.fakes.gemini_fake import GeminiFake
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake
from tests.realtime.conftest import LiveServer, assert_contiguous, assert_no_secret, run_events, types_of
from tests.realtime.harness import ServerProcess

KEYS = {
    "OPENAI_API_KEY": "sk-openai-fake-NEVER-LEAK-111",
    "ANTHROPIC_API_KEY": "sk-ant-fake-NEVER-LEAK-222",
    "GEMINI_API_KEY": "gemini-fake-NEVER-LEAK-333",
}
SCHEMA = {"type": "object", "properties": {"precise": {"type": "boolean"}}}
# (モデル, そのプロバイダの形式のクライアント側ツール定義)
CASES = {
    "openai": (
        "openai/gpt-4.1-mini",
        {"type": "function", "function": {"name": "get_location", "description": "現在地", "parameters": SCHEMA}},
    ),
    "anthropic": (
        "anthropic/claude-sonnet-4-5",
        {"name": "get_location", "description": "現在地", "input_schema": SCHEMA},
    ),
    "gemini": (
        "gemini/gemini-2.5-flash",
        {
            "functionDeclarations": [
                {"name": "get_location", "description": "現在地", "parameters": {"type": "OBJECT", "properties": {}}}
            ]
        },
    ),
    "ollama": ("ollama/llama3.2", {"name": "get_location", "description": "現在地", "parameters": SCHEMA}),
}


class Fakes:
    """4 つの偽サーバー。"""

    def __init__(self) -> None:
        """規則モードで起動する (Anthropic と Gemini は偽のキーも確かめる)。"""
        self.openai = OpenAIFake(rules=True)
        self.anthropic = AnthropicFake(rule_based=True, api_key=KEYS["ANTHROPIC_API_KEY"])
        self.gemini = GeminiFake(rule_based=True, api_key=KEYS["GEMINI_API_KEY"])
        self.ollama = OllamaFake(rules=True)

    def overrides(self) -> list[str]:
        """各プロバイダの base_url を偽サーバーに向けるオーバーライド。"""
        return [
            f"providers.openai.base_url={self.openai.base_url}",
            f"providers.anthropic.base_url={self.anthropic.base_url}",
            f"providers.gemini.base_url={self.gemini.base_url}",
            f"providers.ollama.base_url={self.ollama.base_url}",
            # 旧来の OpenAPI 形式では落とすキーワードがあるので、start の warnings を確かめられる
            "providers.gemini.schema_mode=openapi",
        ]

    def server_of(self, provider: str):
        """プロバイダの偽サーバーの土台 (``FakeServer``)。"""
        return getattr(self, provider).server

    def close(self) -> None:
        """すべて止める。"""
        for fake in (self.openai, self.anthropic, self.gemini, self.ollama):
            fake.close()


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    """4 つの偽サーバー (モジュールで共有)。"""
    f = Fakes()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture(scope="module")
def multi_server(fakes: Fakes) -> Iterator[LiveServer]:
    """4 つのプロバイダを偽サーバーに向けたサーバー (eventlet)。終了時に秘密の漏れを確かめる。"""
    process = ServerProcess(overrides=fakes.overrides(), secrets=KEYS, async_mode="eventlet").start()
    live = LiveServer(process, None, "eventlet")
    try:
        yield live
    finally:
        live.disconnect_all()
        process.stop()
        try:
            for key in KEYS.values():
                assert_no_secret(process, live.clients, key)
        finally:
            process.close()


@pytest.mark.parametrize("provider", list(CASES))
def test_text_and_client_tool_run_on_every_provider(multi_server, provider):
    """各プロバイダで、そのプロバイダの形式のツール定義が通り、テキストとクライアント側ツールのランが動く。"""
    model, tool = CASES[provider]
    client = multi_server.client()
    ack = client.start(model=model, tools=[tool])
    assert ack["ok"], ack
    assert ack["model"] == model and {"name": "get_location", "executor": "client"} in ack["tools"]
    thread_id = ack["thread_id"]
    text_run = client.send_message(thread_id, "こんにちは")["run_id"]
    assert client.wait_run_end(text_run)["type"] == "run_finished"
    tool_run = client.send_message(thread_id, "get_location を使って")["run_id"]
    ready = client.wait_for("tool_call_ready", lambda e: e["run_id"] == tool_run)
    assert ready["name"] == "get_location" and ready["executor"] == "client"
    reply = client.call(
        "tool_result", {"thread_id": thread_id, "tool_call_id": ready["tool_call_id"], "result": "神戸"}
    )
    assert reply == {"ok": True}
    end = client.wait_run_end(tool_run)
    assert end["type"] == "run_finished", end
    order = types_of(run_events(client, tool_run))
    assert order.index("tool_call_started") < order.index("tool_call_delta") < order.index("tool_call_ready")
    assert_contiguous(client.event_payloads(thread_id=thread_id), first=1)


@pytest.mark.parametrize("provider", list(CASES))
def test_cancel_while_streaming_closes_every_providers_connection(multi_server, fakes, provider):
    """各プロバイダで、ストリームが止まっている間の cancel が上流の接続を閉じる。"""
    model, _ = CASES[provider]
    fake = getattr(fakes, provider)
    base = fakes.server_of(provider)
    base.client_disconnected.clear()
    marker = ""
    if hasattr(fake, "stall_after"):
        # Anthropic は message_start / content_block_start / ping の後にテキストが来るので、止める位置を後ろにする
        fake.stall_after, fake.pieces = (6 if provider == "anthropic" else 2), 20
    else:
        marker = "[stall] "
    try:
        client = multi_server.client()
        ack = client.start(model=model)
        run_id = client.send_message(ack["thread_id"], marker + "長い話をして")["run_id"]
        client.wait_for("text_delta", lambda e: e["run_id"] == run_id)
        assert client.call("cancel", {"thread_id": ack["thread_id"]}) == {"ok": True, "cancelled": True}
        end = client.wait_run_end(run_id, timeout=5)
        assert end["type"] == "run_cancelled" and end["reason"] == "client"
        assert base.client_disconnected.wait(10), f"{provider}: the upstream response was not closed"
    finally:
        if hasattr(fake, "stall_after"):
            fake.stall_after, fake.pieces = None, 3


def test_start_warnings_name_dropped_schema_keywords_and_unsupported_reasoning(multi_server):
    """start の warnings: プロバイダが受け取れないスキーマのキーワード (ツール名つき) と、推論の非対応。"""
    tool = {
        "name": "send_mail",
        "description": "メール",
        "parameters": {
            "type": "object",
            "properties": {"to": {"type": "string", "format": "email"}},
            "additionalProperties": False,
        },
    }
    client = multi_server.client()
    gemini = client.start(model="gemini/gemini-2.5-flash", tools=[tool])
    assert gemini["ok"] and any("send_mail" in w and "additionalProperties" in w for w in gemini["warnings"])
    openai = client.start(model="openai/gpt-4.1-mini", tools=[tool], settings={"reasoning": "high"})
    assert openai["ok"] and any("reasoning" in w for w in openai["warnings"])
