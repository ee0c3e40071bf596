"""トランスポートの共通の形: MCP サーバーとの 1 本の接続 (:mod:`~llm_router.mcp.stdio` と :mod:`~llm_router.mcp.http`)。

クライアント (:mod:`~llm_router.mcp.client`) はこの型だけを知る: ``open`` → ``send`` (セッションから) →
ハンドシェイクの後に ``listen`` → 取り消しでは ``abandon`` → ``close``。受け取ったメッセージは ``on_message``、
使えなくなった理由は ``on_closed`` に渡す。
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_router.config.schema import McpConfig


@dataclass(frozen=True)
class Link:
    """どのトランスポートもクライアントから受け取るもの (接続のクライアント側の端)。

    Attributes:
        name: サーバー名 (ログとエラー文用)。
        on_message: 受け取った JSON-RPC メッセージを渡す関数。
        on_closed: 接続 (セッション) が使えなくなったとき理由の文を渡す関数。
        limits: MCP クライアントの設定 (時間切れと大きさの上限を読む。``max_message_bytes`` は 1 メッセージの
            上限で、超えたときの扱いはトランスポートごと)。
    """

    name: str
    on_message: Callable[[Any], None]
    on_closed: Callable[[str], None]
    limits: McpConfig


class Transport:
    """stdio と HTTP のトランスポートが共有する状態と、要らないトランスポートでは何もしない操作。

    Args:
        link: クライアント側の端 (サーバー名、受け取ったものの渡し先、上限)。
    """

    def __init__(self, link: Link) -> None:
        """共通の設定を受け取る。"""
        self.name = link.name
        self._on_message = link.on_message
        self._on_closed = link.on_closed
        self._limits = link.limits
        self._max_message = link.limits.max_message_bytes
        # ハンドシェイクで取り決めた版 (クライアントが入れる。HTTP は以後のヘッダに付ける)
        self.protocol_version: str | None = None

    @property
    def pid(self) -> int | None:
        """サーバーの子プロセスの PID (子プロセスを持たないトランスポートでは ``None``)。"""
        return None

    def open(self) -> None:
        """接続を始める (HTTP は接続が要求ごとなので何もしない)。"""

    def send(self, message: dict[str, Any]) -> None:
        """メッセージを 1 つ送る。送れなければ :class:`~llm_router.mcp.errors.McpUnavailable`。"""
        raise NotImplementedError

    def listen(self) -> None:
        """サーバーからの通知の受信を始める (stdio では通知も同じ標準出力で来るので何もしない)。"""

    def abandon(self, request_id: int) -> None:
        """取り消した要求の受信を打ち切る (stdio では応答が同じパイプで来て、遅れたものはセッションが捨てる)。"""

    def close(self, timeout: float) -> None:
        """接続を閉じる (``timeout`` 秒まで待つ)。"""
        raise NotImplementedError
