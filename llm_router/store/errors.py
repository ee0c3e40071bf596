"""ストアのエラー。どれも共有のエラー木 (:class:`~llm_router.core.schemas.errors.LLMRouterError`) の下にある。"""

from __future__ import annotations

from llm_router.core.schemas.errors import ConfigurationError, LLMRouterError


class StoreUnavailable(LLMRouterError):
    """ストアが書き込み (または読み取り) を拒んだ: ディスクが一杯、読み取り専用、ロック、接続断など。

    この例外が出たとき、その呼び出しの書き込みは何も残っていない (トランザクションごと取り消した)。
    ``code`` はプロトコルの ``run_error`` のコード ``store_unavailable``。
    """

    code = "store_unavailable"


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
