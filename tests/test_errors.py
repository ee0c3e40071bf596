"""エラーの木: 各クラスのプロトコルのエラーコードと既定の再試行の可否の表のテスト。"""

from __future__ import annotations

import pytest

from llm_router import errors
from llm_router.mcp.errors import McpError, McpToolError, McpUnavailable


@pytest.mark.parametrize(
    ("cls", "code", "retryable"),
    [
        (errors.ProviderError, "provider_unavailable", False),
        (errors.ProviderAuthError, "provider_auth", False),
        (errors.ProviderRateLimitedError, "provider_rate_limited", True),
        (errors.ProviderUnavailableError, "provider_unavailable", True),
        (errors.ProviderBadRequestError, "provider_bad_request", False),
        (errors.ModelNotFoundError, "provider_bad_request", False),
        (errors.ProviderStreamBrokenError, "provider_stream_broken", True),
        (errors.ProviderTimeoutError, "timeout", True),
    ],
)
def test_provider_error_code_and_default_retryable(cls, code, retryable):
    """プロバイダのエラーは、クラスごとのコードと既定の再試行の可否を持ち、引数の指定が既定に勝つ。"""
    assert cls("boom", provider="openai").code == code
    assert cls("boom", provider="openai").retryable is retryable
    assert cls("boom", provider="openai", retryable=not retryable).retryable is (not retryable)


@pytest.mark.parametrize(
    ("cls", "code"),
    [
        (errors.LLMRouterError, "internal"),
        (errors.ConfigurationError, "invalid_payload"),
        (errors.RequestCancelled, "cancelled"),
        (errors.StoreUnavailable, "store_unavailable"),
        (McpError, "mcp_error"),
        (McpUnavailable, "mcp_unavailable"),
        (McpToolError, "mcp_tool_error"),
    ],
)
def test_error_code(cls, code):
    """その他のエラーもクラスごとのプロトコルのエラーコードを持つ。"""
    assert cls("boom").code == code


def test_missing_credential_keeps_the_configuration_code():
    """コードを名乗らない派生クラス (API キーの欠落) は親のコードを引き継ぐ。"""
    error = errors.MissingCredentialError("openai", ["OPENAI_API_KEY"])
    assert error.code == "invalid_payload"
    assert "OPENAI_API_KEY" in error.message
