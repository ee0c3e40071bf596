"""JSON-RPC 2.0 のセッション: 要求と応答の対応付け、通知、取り消し、時間切れ (トランスポートに依らない)。

トランスポート (stdio / HTTP) は受け取ったメッセージを :meth:`JsonRpcSession.handle` に渡し、切れたら
:meth:`JsonRpcSession.close` を呼ぶ。要求の送り手は :meth:`JsonRpcSession.request` で応答を待つ。
待ちはキャンセルトークンでも起こされ、そのときは ``notifications/cancelled`` を送って即座に戻る
(MCP 仕様 "Cancellation": ``{"requestId", "reason"}``。遅れて届いた応答は捨てる)。
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

from llm_router.core.cancel import CancelToken
from llm_router.core.schemas.errors import RequestCancelled
from llm_router.mcp.errors import McpError, McpUnavailable

logger = logging.getLogger(__name__)

JSONRPC = "2.0"
METHOD_NOT_FOUND = -32601


class _Pending:
    """応答を待つ要求 1 つ。"""

    def __init__(self) -> None:
        """未完了で作る。"""
        self.event = threading.Event()
        self.result: Any = None
        self.error: Exception | None = None
        self.cancelled = False


class JsonRpcSession:
    """1 本の接続の上の JSON-RPC のやりとり。

    Args:
        name: サーバー名 (ログとエラー文用)。
        send: メッセージ (dict) を 1 つ送る関数。送れなければ :class:`McpUnavailable` を投げる。
        on_notification: サーバーからの通知 ``(method, params)`` を受け取る関数。
        abandon: 取り消した・時間切れの要求の ID を受け取り、その受信を打ち切る関数 (HTTP の応答ストリーム)。
    """

    def __init__(
        self,
        name: str,
        send: Callable[[dict[str, Any]], None],
        on_notification: Callable[[str, dict[str, Any]], None],
        abandon: Callable[[int], None] | None = None,
    ) -> None:
        """依存を受け取る。"""
        self.name = name
        self._send = send
        self._on_notification = on_notification
        self._abandon = abandon
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self.closed_reason: str | None = None

    @property
    def alive(self) -> bool:
        """まだ閉じていなければ真。"""
        return self.closed_reason is None

    def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        timeout: float,
        cancel: CancelToken | None = None,
        cancellable: bool = True,
    ) -> Any:
        """要求を送り、応答の ``result`` を返す。

        ``cancellable`` が偽なら、やめるときも ``notifications/cancelled`` を送らない (仕様: ``initialize`` は
        取り消してはいけない。その接続は呼び手が閉じる)。

        Raises:
            McpUnavailable: 接続が無い・切れた、または ``timeout`` 秒で答えが無い。
            McpError: サーバーが JSON-RPC のエラーで答えた。
            RequestCancelled: ``cancel`` が立った (``notifications/cancelled`` は送り済み)。
        """
        if self.closed_reason is not None:
            raise McpUnavailable(self.closed_reason)
        request_id = next(self._ids)
        pending = _Pending()
        with self._lock:
            self._pending[request_id] = pending
        message: dict[str, Any] = {"jsonrpc": JSONRPC, "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        handle = 0
        if cancel is not None:
            handle = cancel.add_callback(lambda: self._wake_cancelled(pending))
        sent = False
        try:
            if not pending.cancelled:
                self._send(message)
                sent = True
            finished = pending.event.wait(timeout)
        except Exception:
            self._forget(request_id)
            raise
        finally:
            if cancel is not None:
                cancel.remove_callback(handle)
        if pending.cancelled:
            self._give_up(
                request_id, (cancel.reason if cancel is not None else None) or "cancelled", sent and cancellable
            )
            raise RequestCancelled(f"MCP request {method} to server '{self.name}' was cancelled")
        if not finished:
            self._give_up(request_id, "timeout", sent and cancellable)
            raise McpUnavailable(f"MCP server '{self.name}' did not answer {method} within {timeout:g}s")
        self._forget(request_id)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """通知 (応答の無いメッセージ) を送る。"""
        message: dict[str, Any] = {"jsonrpc": JSONRPC, "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)

    def _wake_cancelled(self, pending: _Pending) -> None:
        """キャンセルトークンのコールバック: 待ちを起こす (送信はしない: 待っていた側が送る)。"""
        pending.cancelled = True
        pending.event.set()

    def _give_up(self, request_id: int, reason: str, sent: bool) -> None:
        """待つのをやめた要求: 送っていればサーバーに ``notifications/cancelled`` を送り、受信を打ち切る。"""
        self._forget(request_id)
        if sent and self.closed_reason is None:
            try:
                self.notify("notifications/cancelled", {"requestId": request_id, "reason": reason})
            except Exception as exc:
                logger.info("MCP server %s: could not send notifications/cancelled (%s)", self.name, exc)
        if self._abandon is not None:
            self._abandon(request_id)

    def _forget(self, request_id: int) -> None:
        """待ちの台帳から外す。"""
        with self._lock:
            self._pending.pop(request_id, None)

    def fail(self, request_id: int, error: Exception) -> None:
        """1 つの要求を失敗で終える (HTTP の応答が壊れたときなど)。"""
        with self._lock:
            pending = self._pending.pop(request_id, None)
        if pending is not None:
            pending.error = error
            pending.event.set()

    def expects(self, request_id: Any) -> bool:
        """その ID の応答をまだ待っていれば真。"""
        with self._lock:
            return request_id in self._pending

    def handle(self, message: Any) -> None:
        """受け取ったメッセージ (応答・通知・サーバーからの要求) を処理する。"""
        if not isinstance(message, dict):
            logger.warning("MCP server %s sent a message that is not an object; ignored", self.name)
            return
        if "method" in message:
            method = message.get("method")
            params = message.get("params") if isinstance(message.get("params"), dict) else {}
            if "id" in message:
                self._answer_server_request(message["id"], str(method), params)
            else:
                self._on_notification(str(method), params)
            return
        request_id = message.get("id")
        with self._lock:
            pending = self._pending.pop(request_id, None) if isinstance(request_id, int) else None
        if pending is None:
            return  # 取り消した要求への遅れた答え、または知らない ID
        if "error" in message:
            error = message.get("error") if isinstance(message.get("error"), dict) else {}
            pending.error = McpError(
                f"MCP server '{self.name}' answered with error {error.get('code')}: {str(error.get('message'))[:500]}"
            )
        else:
            pending.result = message.get("result")
        pending.event.set()

    def _answer_server_request(self, request_id: Any, method: str, params: dict[str, Any]) -> None:
        """サーバーからの要求に答える: ``ping`` には空の結果、それ以外は未対応 (-32601)。"""
        if method == "ping":
            reply: dict[str, Any] = {"jsonrpc": JSONRPC, "id": request_id, "result": {}}
        else:
            error = {"code": METHOD_NOT_FOUND, "message": f"method not supported by this client: {method[:100]}"}
            reply = {"jsonrpc": JSONRPC, "id": request_id, "error": error}
        try:
            self._send(reply)
        except Exception as exc:
            logger.info("MCP server %s: could not answer %s (%s)", self.name, method[:100], exc)

    def close(self, reason: str) -> None:
        """接続が切れた: 待っているすべての要求を ``reason`` の :class:`McpUnavailable` で終える。"""
        with self._lock:
            if self.closed_reason is None:
                self.closed_reason = reason
            pending = list(self._pending.values())
            self._pending.clear()
        for item in pending:
            item.error = McpUnavailable(reason)
            item.event.set()
