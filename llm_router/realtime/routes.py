"""Socket.IO の ``/agent`` 名前空間: ``start`` / ``user_message`` / ``tool_result`` / ``cancel`` と、
スレッドのイベント ``list_threads`` / ``get_history`` / ``rewind`` / ``update_thread`` / ``delete_thread`` のハンドラ。

各ハンドラは「検証 → 認可 → 登録簿の呼び出し → ack を返す」だけ (python-socketio のクラス型名前空間に倣い、
``on_<event>`` の戻り値が ack になる)。例外をプロトコルのエラーコードに変えるのは :meth:`AgentNamespace._handle`
の 1 か所だけ。``internal`` のメッセージにスタックトレースや秘密を入れない (詳細はサーバーログへ、
ログは秘密を伏せるフィルタを通る)。
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import request
from flask_socketio import Namespace
from socketio.exceptions import ConnectionRefusedError as RefuseConnection

from llm_router.core.redaction import redact_value, secret_list
from llm_router.realtime.auth import Authenticator, RateLimiter
from llm_router.realtime.registry import ThreadRegistry
from llm_router.realtime.schemas import (
    CLIENT_EVENTS,
    INTERNAL,
    RATE_LIMITED,
    STORE_UNAVAILABLE,
    UNAUTHORIZED,
    ProtocolError,
    check_size,
    invalid,
    parse_cancel,
    parse_list_threads,
    parse_rewind,
    parse_start,
    parse_thread_ref,
    parse_tool_result,
    parse_update_thread,
    parse_user_message,
    single_payload,
)
from llm_router.store.errors import StoreUnavailable

logger = logging.getLogger(__name__)
NAMESPACE = "/agent"
_RESERVED = ("connect", "disconnect")


class AgentNamespace(Namespace):
    """``/agent`` 名前空間のハンドラ群。

    Args:
        registry: スレッド登録簿。
        authenticator: 接続トークンの検査。
        rate_limiter: 主体ごとのレート制限。
        max_payload_bytes: ``server.max_payload_bytes``。
    """

    def __init__(
        self, registry: ThreadRegistry, authenticator: Authenticator, rate_limiter: RateLimiter, max_payload_bytes: int
    ) -> None:
        """依存を受け取る。"""
        super().__init__(NAMESPACE)
        self.registry = registry
        self.authenticator = authenticator
        self.rate_limiter = rate_limiter
        self.max_payload_bytes = max_payload_bytes
        self._principals: dict[str, str] = {}
        # ack の文字列 (エラーのメッセージ、start の warnings) も、イベントと同じ規則で秘密の値を伏せる
        self._secrets = secret_list(registry.settings.secrets.all_values())

    # ------------------------------------------------------------ 接続

    def on_connect(self, auth: Any = None) -> None:
        """接続時にトークンを調べる。合わなければ ``connect_error`` (``unauthorized``) で拒否する。"""
        principal = self.authenticator.principal(auth)
        if principal is None:
            # python-socketio の例外 (組み込みの ConnectionRefusedError では message が既定の文言になる)
            raise RefuseConnection(UNAUTHORIZED)
        self._principals[request.sid] = principal

    def on_disconnect(self, reason: Any = None) -> None:
        """切断。ランは続ける (登録簿が切断タイムアウトを仕掛ける)。"""
        sid = request.sid
        self._principals.pop(sid, None)
        self.registry.disconnect(sid)

    def trigger_event(self, event: str, *args: Any) -> Any:
        """知らないイベント名には ``invalid_payload`` の ack を返す (打ち間違いを黙って捨てない)。"""
        if event in _RESERVED or event in CLIENT_EVENTS:
            return super().trigger_event(event, *args)
        return invalid(f"unknown event '{str(event)[:64]}' (events: {', '.join(CLIENT_EVENTS)})").to_ack()

    # ------------------------------------------------------------ クライアントのイベント

    def on_start(self, *args: Any) -> dict[str, Any]:
        """``start``: スレッドを開く・再接続する。"""
        return self._handle(args, lambda sid, who, p: self.registry.start(sid, who, parse_start(p)))

    def on_user_message(self, *args: Any) -> dict[str, Any]:
        """``user_message``: ランを始める。"""
        limit = self.registry.settings.config.server.max_image_bytes
        return self._handle(
            args, lambda sid, who, p: self.registry.user_message(sid, who, parse_user_message(p, limit))
        )

    def on_tool_result(self, *args: Any) -> dict[str, Any]:
        """``tool_result``: クライアント側ツールの結果。"""
        return self._handle(args, lambda sid, who, p: self.registry.tool_result(sid, who, parse_tool_result(p)))

    def on_cancel(self, *args: Any) -> dict[str, Any]:
        """``cancel``: ランのキャンセル (冪等)。"""
        return self._handle(args, lambda sid, who, p: self.registry.cancel(sid, who, parse_cancel(p)))

    def on_list_threads(self, *args: Any) -> dict[str, Any]:
        """``list_threads``: 自分のスレッドの一覧 (新しい順)。"""
        return self._handle(
            args, lambda sid, who, p: self.registry.list_threads(sid, who, parse_list_threads(p)), optional=True
        )

    def on_get_history(self, *args: Any) -> dict[str, Any]:
        """``get_history``: 会話を描き直すための履歴。"""
        return self._handle(args, lambda sid, who, p: self.registry.get_history(sid, who, parse_thread_ref(p)))

    def on_rewind(self, *args: Any) -> dict[str, Any]:
        """``rewind``: あるランから後を履歴から外す。"""
        return self._handle(args, lambda sid, who, p: self.registry.rewind(sid, who, parse_rewind(p)))

    def on_update_thread(self, *args: Any) -> dict[str, Any]:
        """``update_thread``: 題名を変える。"""
        return self._handle(args, lambda sid, who, p: self.registry.update_thread(sid, who, parse_update_thread(p)))

    def on_delete_thread(self, *args: Any) -> dict[str, Any]:
        """``delete_thread``: スレッドを消す。"""
        return self._handle(args, lambda sid, who, p: self.registry.delete_thread(sid, who, parse_thread_ref(p)))

    # ------------------------------------------------------------ 共通の処理

    def _handle(
        self, args: tuple[Any, ...], action: Callable[[str, str, Any], dict[str, Any]], optional: bool = False
    ) -> dict[str, Any]:
        """認可・レート制限・大きさ・形の検査の後に ``action`` を呼び、例外をエラーの ack に変える (唯一の場所)。

        ``optional`` のイベント (``list_threads``) はペイロードを省いてよい (空のオブジェクトと同じ)。
        """
        sid = request.sid
        try:
            principal = self._principals.get(sid)
            if principal is None:
                raise ProtocolError(UNAUTHORIZED, "not authenticated")
            if not self.rate_limiter.allow(principal):
                raise ProtocolError(RATE_LIMITED, "too many events; slow down (server.rate_limit_per_minute)")
            check_size(args, self.max_payload_bytes)
            payload = {} if optional and not args else single_payload(args)
            return redact_value(action(sid, principal, payload), self._secrets)
        except ProtocolError as exc:
            return redact_value(exc.to_ack(), self._secrets)
        except StoreUnavailable as exc:
            error = ProtocolError(STORE_UNAVAILABLE, f"the thread store refused the write: {exc.message}")
            return redact_value(error.to_ack(), self._secrets)
        except Exception:
            logger.exception("unexpected error in a %s handler", request.event.get("message") if request else "?")
            return ProtocolError(INTERNAL, "internal server error").to_ack()
