"""ストアのエラー。どれも共有のエラー木 (:class:`~llm_router.core.schemas.errors.LLMRouterError`) の下にある。"""

from __future__ import annotations

from llm_router.core.schemas.errors import ConfigurationError, LLMRouterError, StoreUnavailable

__all__ = ["RunAlreadyEnded", "StoreConfigurationError", "StoreUnavailable", "ThreadExists", "UnknownThread"]


class UnknownThread(LLMRouterError):
    """ストアに無いスレッドを指定した。"""

    code = "unknown_thread"

    def __init__(self, thread_id: str) -> None:
        """スレッド ID を受け取る。"""
        super().__init__(f"unknown thread '{thread_id}'")
        self.thread_id = thread_id


class ThreadExists(LLMRouterError):
    """同じ ID のスレッドが既にある (作成の競合)。"""

    code = "invalid_payload"

    def __init__(self, thread_id: str) -> None:
        """スレッド ID を受け取る。"""
        super().__init__(f"thread '{thread_id}' already exists")
        self.thread_id = thread_id


class StoreConfigurationError(ConfigurationError):
    """``store.*`` の設定の誤り (未知のバックエンド、まだ使えないバックエンドなど)。"""


class RunAlreadyEnded(StoreUnavailable):
    """終わりの記録のあるランの終わりをもう一度書こうとした (redis: 別のプロセスが先に閉じた)。何も書かれていない。"""
