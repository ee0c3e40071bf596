"""プロバイダクライアントの共通インターフェース (エージェントループとルーターはこれだけを知る)。"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol

from llm_router.core.cancel import CancelToken
from llm_router.core.schemas import common
from llm_router.errors import ProviderError

# 再試行の通知: (試行番号 1..., 待ち秒数, 原因のエラー)。型だけのために requests を読み込まないよう、ここに置く。
RetryCallback = Callable[[int, float, ProviderError], None]


class ChatClient(Protocol):
    """すべてのプロバイダクライアントが満たす形。"""

    provider: str

    def chat_stream(
        self, request: common.ChatRequest, *, cancel: CancelToken | None = None, on_retry: RetryCallback | None = None
    ) -> Iterator[common.StreamChunk]:
        """ストリーミングのチャット。最後のチャンクは必ず ``StreamEnd``。"""
        ...

    def embed(
        self,
        request: common.EmbeddingRequest,
        *,
        cancel: CancelToken | None = None,
        on_retry: RetryCallback | None = None,
    ) -> common.EmbeddingResponse:
        """埋め込み (入力順の float32 行列)。対応しないプロバイダは ``ProviderBadRequestError``。"""
        ...

    def tool_warnings(self, tools: list[common.ToolDefinition], model: str) -> list[str]:
        """このプロバイダ/モデルに送るときに落とす・書き換えるスキーマのキーワード (ツール名つき)。"""
        ...

    def reasoning_warning(self, model: str, level: common.ReasoningLevel) -> str | None:
        """``level`` が ``off`` でなく、モデルが推論に対応しないときの警告文 (対応していれば ``None``)。"""
        ...

    def close(self) -> None:
        """接続プールを閉じる。"""
        ...
