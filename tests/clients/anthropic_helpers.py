"""Anthropic クライアントのテストで共有する道具 (偽サーバーに向けた設定とクライアント)。"""

import random

from llm_router.config.schema import ModelOptions, ProviderConfig, RetryConfig
from llm_router.core.clients.anthropic_client import AnthropicClient
from llm_router.core.schemas.common import ChatRequest, Message, ToolDefinition

KEY = "sk-ant-secret-0123456789abcdef"
MODEL = "claude-test-4"

WEATHER = ToolDefinition(
    "get_weather",
    "都市の天気を調べる",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = ToolDefinition("current_time", "現在時刻", {"type": "object", "properties": {}})


def config(base_url: str, **overrides) -> ProviderConfig:
    """偽サーバーに向けた設定 (再試行の待ちは短く、思考できるモデルとできないモデル)。"""
    values = {
        "base_url": base_url,
        "api_version": "2023-06-01",
        "chat_model": MODEL,
        "default_max_tokens": 1024,
        "read_timeout_s": 10,
        "retry": RetryConfig(max_retries=2, initial_backoff_s=0.01, max_backoff_s=0.05),
        "reasoning_levels": {"low": 1024, "medium": 4096, "high": 16000},
        "models": {
            "claude-3-opus-20240229": ModelOptions(retired=True, note="2026-01-05 提供終了"),
            "claude-adaptive*": ModelOptions(reasoning=True, reasoning_style="adaptive"),
            "claude-test-*": ModelOptions(reasoning=True, reasoning_style="budget"),
        },
    }
    values.update(overrides)
    return ProviderConfig(**values)


def client(fake, **overrides) -> AnthropicClient:
    """偽サーバーに向けたクライアント。"""
    return AnthropicClient(config(fake.base_url, **overrides), KEY, rng=random.Random(0))


def request(text: str = "こんにちは", **kwargs) -> ChatRequest:
    """最小のリクエスト。"""
    messages = kwargs.pop("messages", None) or [Message.system("あなたは助手です。"), Message.user(text)]
    return ChatRequest(kwargs.pop("model", MODEL), messages, **kwargs)
