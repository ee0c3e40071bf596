"""MCP サーバー 1 つのクライアント: 起動 (遅延か即時)、ハンドシェイク、ツール一覧、呼び出し、再起動、停止。

流れは README.md の図のとおり。接続 (トランスポート + セッション) は死んだら捨て、次に使うときに作り直す。
ハンドシェイクは MCP 仕様 "Lifecycle": ``initialize`` (私たちの版、空の capabilities、clientInfo) に答えた版が
``mcp.accepted_protocol_versions`` に無ければ切る。答えを受けたら ``notifications/initialized``。
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from llm_router.config.schema import McpConfig
from llm_router.core.cancel import CancelToken
from llm_router.mcp.config import ServerSpec, check_allowed
from llm_router.mcp.errors import McpError, McpUnavailable
from llm_router.mcp.http import HttpTransport
from llm_router.mcp.session import JsonRpcSession
from llm_router.mcp.stdio import StdioTransport, child_environment
from llm_router.mcp.transport import Link, Transport

logger = logging.getLogger(__name__)


@dataclass
class Connection:
    """生きている接続 1 本: トランスポート、セッション、取り決めた版、サーバーの名乗り。"""

    transport: Transport
    session: JsonRpcSession
    protocol_version: str
    server_info: dict[str, Any]
    capabilities: dict[str, Any]


class McpServer:
    """設定にある MCP サーバー 1 つ。スレッド安全 (起動は 1 本のロックで直列にする)。

    Args:
        spec: 検証済みの設定。
        config: ``mcp`` 全体の設定 (版、時間切れ、上限)。
        on_tools_changed: ツール一覧が変わったとき (``list_changed`` の後の取り直し) に呼ぶ関数。
    """

    def __init__(
        self, spec: ServerSpec, config: McpConfig, on_tools_changed: Callable[[str], None] | None = None
    ) -> None:
        """まだ起動しない。"""
        self.spec = spec
        self.name = spec.name
        self._config = config
        self._on_tools_changed = on_tools_changed
        self._lock = threading.RLock()
        self._conn: Connection | None = None
        self._tools: list[dict[str, Any]] | None = None
        self._closed = False
        self.last_error: str | None = None
        self.failed_at: float | None = None
        self.starts = 0
        # ツール一覧を取り直すたびに増える (一覧から作ったものの作り直しの判定用)
        self.tools_version = 0

    # ------------------------------------------------------------ 接続

    @property
    def connected(self) -> bool:
        """生きている接続があれば真。"""
        conn = self._conn
        return conn is not None and conn.session.alive

    @property
    def connection(self) -> Connection | None:
        """今の接続 (テストと診断用)。"""
        return self._conn

    def ensure(self) -> Connection:
        """生きている接続を返す (無ければ起動してハンドシェイクし、ツール一覧を取る)。

        Raises:
            McpUnavailable: 起動・ハンドシェイク・一覧の取得に失敗したとき (理由の文つき)。
        """
        conn = self._conn
        if conn is not None and conn.session.alive:
            return conn
        with self._lock:
            if self._closed:
                raise McpUnavailable(f"MCP server '{self.name}' is stopped")
            conn = self._conn
            if conn is not None and conn.session.alive:
                return conn
            if conn is not None:
                self._drop(conn)
            try:
                conn = self._connect()
                self._conn = conn
                self._tools = self._list_tools(conn)
                self.tools_version += 1
            except Exception as exc:
                failed = self._conn
                self._conn = None
                if failed is not None:
                    self._drop(failed)
                self.last_error = str(exc) if isinstance(exc, McpError) else f"{type(exc).__name__}: {exc}"
                self.failed_at = time.monotonic()
                logger.warning("MCP server %s unavailable: %s", self.name, self.last_error)
                if isinstance(exc, McpUnavailable):
                    raise
                raise McpUnavailable(f"MCP server '{self.name}' could not be started: {self.last_error}") from None
            self.last_error = None
            self.failed_at = None
            return conn

    def _connect(self) -> Connection:
        """トランスポートを開き、ハンドシェイクする。"""
        self.starts += 1
        holder: dict[str, JsonRpcSession] = {}

        def on_message(message: Any) -> None:
            """受け取ったメッセージをセッションへ。"""
            holder["session"].handle(message)

        def on_closed(reason: str) -> None:
            """切れた: 待っている要求を理由つきで終える。"""
            holder["session"].close(reason)

        transport = self._transport(Link(self.name, on_message, on_closed, self._config), holder)
        session = JsonRpcSession(self.name, transport.send, self._notification, transport.abandon)
        holder["session"] = session
        transport.open()
        try:
            return self._handshake(transport, session)
        except Exception:
            session.close(f"MCP server '{self.name}' handshake failed")
            transport.close(self._config.shutdown_timeout_s)
            raise

    def _transport(self, link: Link, holder: dict) -> Transport:
        """設定のトランスポートを作る (stdio は起動の直前にもう一度許可リストを確かめる)。"""
        spec = self.spec
        if spec.transport == "stdio":
            check_allowed(self.name, spec.where, spec.command[0], list(self._config.allowed_commands))
            env = child_environment(list(self._config.inherited_env), spec.env)
            return StdioTransport(link, spec.command, env, spec.cwd)
        return HttpTransport(
            link,
            spec.url or "",
            spec.headers,
            lambda request_id, exc: holder["session"].fail(request_id, exc),
            lambda request_id: holder["session"].expects(request_id),
        )

    def _handshake(self, transport: Transport, session: JsonRpcSession) -> Connection:
        """``initialize`` と ``notifications/initialized``。答えた版が受け入れられなければ失敗。"""
        params = {
            "protocolVersion": self._config.protocol_version,
            "capabilities": {},
            "clientInfo": {"name": self._config.client_name, "version": self._config.client_version},
        }
        result = session.request("initialize", params, self.spec.startup_timeout_s, cancellable=False)
        if not isinstance(result, dict):
            raise McpUnavailable(f"MCP server '{self.name}' answered initialize without a result object")
        version = result.get("protocolVersion")
        accepted = list(self._config.accepted_protocol_versions)
        if version not in accepted:
            raise McpUnavailable(
                f"MCP server '{self.name}' speaks protocol version {str(version)[:40]!r}; "
                f"llm_router accepts {', '.join(accepted)}"
            )
        transport.protocol_version = version
        session.notify("notifications/initialized")
        transport.listen()
        info = result.get("serverInfo") if isinstance(result.get("serverInfo"), dict) else {}
        capabilities = result.get("capabilities") if isinstance(result.get("capabilities"), dict) else {}
        logger.info("MCP server %s ready (protocol %s, %s)", self.name, version, str(info.get("name", "?"))[:80])
        return Connection(transport, session, str(version), info, capabilities)

    def _notification(self, method: str, params: dict[str, Any]) -> None:
        """サーバーからの通知。``notifications/tools/list_changed`` なら別スレッドで一覧を取り直す。"""
        if method == "notifications/tools/list_changed":
            threading.Thread(target=self._refresh, name=f"mcp-{self.name}-refresh", daemon=True).start()
        elif method == "notifications/message":
            logger.info(
                "MCP server %s log: %s", self.name, str(params.get("data"))[: self._config.max_stderr_line_chars]
            )

    def _refresh(self) -> None:
        """ツール一覧を取り直す (失敗はログだけ: 次に使うときにもう一度)。"""
        conn = self._conn
        if conn is None or not conn.session.alive:
            return
        try:
            tools = self._list_tools(conn)
        except Exception as exc:
            logger.warning("MCP server %s: refreshing the tool list failed: %s", self.name, exc)
            return
        self._tools = tools
        self.tools_version += 1
        logger.info("MCP server %s: tool list changed (%d tools)", self.name, len(tools))
        if self._on_tools_changed is not None:
            self._on_tools_changed(self.name)

    def _list_tools(self, conn: Connection) -> list[dict[str, Any]]:
        """``tools/list`` を ``nextCursor`` が無くなるまで繰り返す (ページ数に上限、同じカーソルの繰り返しは止める)。"""
        tools: list[dict[str, Any]] = []
        cursor: str | None = None
        seen: set[str] = set()
        for _ in range(self._config.max_tool_pages):
            result = conn.session.request(
                "tools/list", {"cursor": cursor} if cursor else {}, self._config.request_timeout_s
            )
            if not isinstance(result, dict) or not isinstance(result.get("tools", []), list):
                raise McpUnavailable(f"MCP server '{self.name}' answered tools/list without a 'tools' list")
            tools.extend(t for t in result.get("tools", []) if isinstance(t, dict) and isinstance(t.get("name"), str))
            cursor = result.get("nextCursor")
            if not cursor:
                return tools
            if not isinstance(cursor, str) or cursor in seen:
                logger.warning("MCP server %s repeated a tools/list cursor; listing stopped", self.name)
                return tools
            seen.add(cursor)
        logger.warning(
            "MCP server %s: more than %d pages of tools; the rest ignored", self.name, self._config.max_tool_pages
        )
        return tools

    # ------------------------------------------------------------ 利用

    def tools(self, start: bool = True) -> list[dict[str, Any]]:
        """知っているツールの定義 (MCP の形のまま)。まだ知らず ``start`` なら起動して取る。

        Raises:
            McpUnavailable: 起動に失敗したとき (一度も一覧を取れていなければ)。
        """
        if self._tools is None and start:
            self.ensure()
        return list(self._tools or [])

    def call(self, tool: str, arguments: dict[str, Any], cancel: CancelToken | None = None) -> dict[str, Any]:
        """``tools/call`` を送り、結果 (``content`` など) の辞書を返す。

        Raises:
            McpUnavailable: サーバーが居ない・途中で落ちた・時間切れ (次の呼び出しで起動し直す)。
            McpError: JSON-RPC のエラー応答。
            RequestCancelled: ``cancel`` で取り消した (``notifications/cancelled`` は送り済み)。
        """
        conn = self.ensure()
        result = conn.session.request(
            "tools/call", {"name": tool, "arguments": arguments}, self.spec.call_timeout_s, cancel
        )
        if not isinstance(result, dict):
            raise McpError(f"MCP server '{self.name}' answered tools/call without a result object")
        return result

    def ping(self, timeout: float | None = None) -> None:
        """``ping`` を送って答えを待つ (生きているかの確認)。"""
        conn = self.ensure()
        conn.session.request("ping", None, timeout or self._config.request_timeout_s)

    def _drop(self, conn: Connection) -> None:
        """接続を閉じる (子プロセスを止める、HTTP のセッションを DELETE する)。"""
        conn.session.close(f"MCP server '{self.name}' was restarted")
        try:
            conn.transport.close(self._config.shutdown_timeout_s)
        except Exception:
            logger.warning("MCP server %s: closing failed", self.name, exc_info=True)

    def close(self) -> None:
        """止める (以後は使えない)。"""
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.session.close(f"MCP server '{self.name}' is stopped")
            try:
                conn.transport.close(self._config.shutdown_timeout_s)
            except Exception:
                logger.warning("MCP server %s: closing failed", self.name, exc_info=True)
