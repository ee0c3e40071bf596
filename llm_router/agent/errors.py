"""例外をプロトコルの ``run_error.error`` (code / message / provider / retryable / phase) に変える唯一の場所。

予期しない例外は ``internal`` にし、メッセージには例外の型名だけを書く (スタックトレースや、
どこかで紛れ込んだかもしれない秘密の値を出さないため。トレースはサーバーのログにだけ残す)。
"""

from __future__ import annotations

from typing import Any

from llm_router.core.redaction import redact
from llm_router.core.schemas.errors import (
    ConfigurationError,
    LLMRouterError,
    MissingCredentialError,
    ProviderError,
)

RUN_ERROR_CODES = frozenset(
    {
        "provider_auth",
        "provider_rate_limited",
        "provider_unavailable",
        "provider_bad_request",
        "provider_stream_broken",
        "timeout",
        "internal",
        "store_unavailable",
        "interrupted",
    }
)


def interrupted_error(phase: str) -> dict[str, Any]:
    """サーバーが落ちて途中で切れたランの ``run_error.error`` (起動時の回復が書く。再試行してよい)。"""
    return {
        "code": "interrupted",
        "message": "the server stopped while this run was active (サーバーの停止でランが中断されました)",
        "provider": None,
        "retryable": True,
        "phase": phase,
    }


def unexpected_end_error(phase: str) -> dict[str, Any]:
    """終わりのイベントを出さずにループが終わったランの ``run_error.error`` (``internal``)。"""
    return {
        "code": "internal",
        "message": "the run ended unexpectedly",
        "provider": None,
        "retryable": False,
        "phase": phase,
    }


def is_retryable(exc: BaseException) -> bool:
    """次のモデルへの切り替えやステップのやり直しに値する失敗なら真。"""
    return isinstance(exc, ProviderError) and exc.retryable


def error_payload(
    exc: BaseException, phase: str, provider: str, secrets: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """例外から ``run_error`` の ``error`` オブジェクトを作る。

    Args:
        exc: 起きた例外。
        phase: ``before_output`` / ``mid_stream`` / ``tool``。
        provider: そのとき使っていたプロバイダ名 (例外が持っていなければこれを使う。不明なら ``None`` になる)。
        secrets: メッセージから伏せる秘密の値 (API キーなど)。
    """
    retryable = False
    if isinstance(exc, MissingCredentialError):
        code, message = "provider_auth", exc.message
        provider = exc.provider or provider
    elif isinstance(exc, ProviderError):
        code, message, retryable = exc.code, str(exc), exc.retryable
        provider = exc.provider or provider
    elif isinstance(exc, ConfigurationError):
        code, message = "provider_bad_request", exc.message
    elif isinstance(exc, LLMRouterError) and exc.code in RUN_ERROR_CODES:
        code, message = exc.code, exc.message
    else:
        code, message = "internal", f"internal error ({type(exc).__name__}); see the server log (内部エラー)"
    if code not in RUN_ERROR_CODES:
        code = "internal"
    message = redact(message, secrets)
    return {"code": code, "message": message, "provider": provider or None, "retryable": retryable, "phase": phase}
