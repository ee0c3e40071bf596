"""Gemini クライアントのテストで共有する道具 (偽サーバーに向けた設定とクライアント)。"""

import random

from llm_router.config.schema import ModelOptions, ProviderConfig, RetryConfig
from llm_router.core.clients.gemini_client import GeminiClient
from llm_router.core.schemas.common import ChatRequest, Message, ToolDefinition

KEY = "AIzaSy-secret-0123456789abcdef"
MODEL = "gemini-test-2.5"

WEATHER = ToolDefinition(
    "get_weather",
    "都市の天気を調べる",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)
CLOCK = ToolDefinition("current_time", "現在時刻", {"type": "object", "properties": {}})


def config(base_url: str, **overrides) -> ProviderConfig:
    """偽サーバーに向けた設定 (再試行の待ちは短く、思考の予算型・段階型・非対応のモデル)。"""
    values = {
        "base_url": base_url,
        "api_version": "v1beta",
        "chat_model": MODEL,
        "embedding_model": "gemini-embedding-001",
        "embedding_batch_size": 3,
        "default_max_tokens": 2048,
        "read_timeout_s": 10,
        "retry": RetryConfig(max_retries=2, initial_backoff_s=0.01, max_backoff_s=0.05, max_retry_after_s=1),
        "reasoning_levels": {"low": 1024, "medium": 8192, "high": 24576},
        "models": {
            "gemini-1.5-*": ModelOptions(retired=True, note="v1beta で 404"),
            "gemini-test-3*": ModelOptions(reasoning=True, reasoning_style="level"),
            "gemini-test-2.5*": ModelOptions(reasoning=True, reasoning_style="budget"),
        },
    }
    values.update(overrides)
    return ProviderConfig(**values)


def client(fake, **overrides) -> GeminiClient:
    """偽サーバーに向けたクライアント。"""
    return GeminiClient(config(fake.base_url, **overrides), KEY, rng=random.Random(0))


def request(text: str = "こんにちは", **kwargs) -> ChatRequest:
    """最小のリクエスト。"""
    messages = kwargs.pop("messages", None) or [Message.system("あなたは助手です。"), Message.user(text)]
    return ChatRequest(kwargs.pop("model", MODEL), messages, **kwargs)
