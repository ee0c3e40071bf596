"""各プロバイダの終了理由の名前が、正規化した終了理由になることの表のテスト。"""

from __future__ import annotations

import pytest

from llm_router.core.clients.anthropic_mapping import STOP_REASONS
from llm_router.core.clients.gemini_mapping import FINISH_REASONS as GEMINI
from llm_router.core.clients.ollama_mapping import FINISH_REASONS as OLLAMA
from llm_router.core.clients.openai_mapping import FINISH_REASONS as OPENAI


@pytest.mark.parametrize(
    ("table", "name", "expected"),
    [
        (STOP_REASONS, "end_turn", "stop"),
        (STOP_REASONS, "tool_use", "tool_calls"),
        (STOP_REASONS, "model_context_window_exceeded", "length"),
        (STOP_REASONS, "refusal", "content_filter"),
        (GEMINI, "MAX_TOKENS", "length"),
        (GEMINI, "SPII", "content_filter"),
        (GEMINI, "MALFORMED_FUNCTION_CALL", "error"),
        (GEMINI, "OTHER", "stop"),
        (OPENAI, "function_call", "tool_calls"),
        (OPENAI, "content_filter", "content_filter"),
        (OLLAMA, "unload", "stop"),
        (OLLAMA, "length", "length"),
    ],
)
def test_provider_names_map_to_the_canonical_reason(table, name, expected):
    """プロバイダの名前が、その意味の正規化した終了理由になる。"""
    assert table.normalise(name) == expected


@pytest.mark.parametrize("name", [None, "", "a_reason_added_later"])
def test_missing_or_unknown_reason_is_stop(name):
    """理由が無いときと表に無い名前は ``stop`` になる。"""
    assert STOP_REASONS.normalise(name) == "stop"
    assert GEMINI.normalise(name) == "stop"
