"""streamable HTTP トランスポート (MCP 仕様 "Transports / Streamable HTTP")。

- メッセージ 1 つを POST する。``Accept: application/json, text/event-stream``。
- 要求への答えは ``application/json`` (1 つのメッセージ) か ``text/event-stream`` (SSE: ``data:`` ごとに
  JSON-RPC のメッセージ。途中にサーバーからの通知や要求が混じり、最後に答えが来る)。SSE の解析は
  プロバイダのクライアントと同じ :class:`~llm_router.core.clients.stream_readers.SSEDecoder`。
- 通知と応答 (答えの無いもの) には 202 Accepted。
- ``initialize`` の答えの ``Mcp-Session-Id`` を覚え、以後のすべての要求に付ける。ハンドシェイクの後は
  ``MCP-Protocol-Version`` も付ける。セッションに 404 が返ったら切れたとみなす (次に使うときに初期化し直す)。
- ハンドシェイクの後、サーバーからの通知用に GET の SSE ストリームを開く (``list_changed`` がここに来る。
  405 ならサーバーが持っていないだけ)。
- 閉じるときはセッションを DELETE する (405 はサーバーが許していないだけ)。
- 設定のヘッダ (``${VAR}`` を置き換え済み) は決してログに出さない。

要求の POST は別スレッド (eventlet ではグリーンスレッド) で行い、呼び手はセッションの待ちで待つ。
取り消し・時間切れでは、その POST の応答のソケットを ``shutdown`` して読み手を即座に起こす。
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import requests
import urllib3

from llm_router.core.clients.base_client import _shutdown, _socket_of
from llm_router.core.clients.stream_readers import SSEDecoder
from llm_router.mcp.errors import McpUnavailable
from llm_router.mcp.transport import Link, Transport

logger = logging.getLogger(__name__)

SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
ACCEPT = "application/json, text/event-stream"
CHUNK = 65536


class HttpTransport(Transport):
    """1 つの MCP エンドポイント (URL) とのやりとり。

    Args:
        link: クライアント側の端。``limits`` の ``connect_timeout_s`` は接続の、``request_timeout_s`` は通知と
            DELETE の読み取りの時間切れ。``max_message_bytes`` は 1 つの答え (JSON の本文、または SSE の
            ストリーム全体) の上限で、超えたらその呼び出しを失敗にする。
        url: エンドポイントの URL (ログには出さない: 問い合わせ文字列に秘密があり得る)。
        headers: 設定のヘッダ (置き換え済み)。
        on_failure: 要求 1 つが失敗したとき ``(request_id, 例外)`` を渡す関数。
        expects: その ID の答えをまだ待っているかを答える関数。
    """

    def __init__(
        self,
        link: Link,
        url: str,
        headers: dict[str, str],
        on_failure: Callable[[int, Exception], None],
        expects: Callable[[Any], bool],
    ) -> None:
        """設定を受け取る。"""
        super().__init__(link)
        self._url = url
        self._headers = dict(headers)
        self._on_failure = on_failure
        self._expects = expects
        self._http = requests.Session()
        self._lock = threading.Lock()
        self._streams: dict[int, requests.Response] = {}
        self._listener: requests.Response | None = None
        self.session_id: str | None = None

    def headers(self) -> dict[str, str]:
        """この要求に付けるヘッダ (設定のもの、Accept、セッション ID、プロトコルの版)。"""
        # identity: SSE を届いた分ずつ (read1) 読むので、圧縮しない
        out = {**self._headers, "Accept": ACCEPT, "Content-Type": "application/json", "Accept-Encoding": "identity"}
        if self.session_id:
            out[SESSION_HEADER] = self.session_id
        if self.protocol_version:
            out[VERSION_HEADER] = self.protocol_version
        return out

    def send(self, message: dict[str, Any]) -> None:
        """メッセージを送る。要求は別スレッドで POST し、通知と応答はここで POST して 202 を確かめる。

        Raises:
            McpUnavailable: 通知・応答を送れなかったとき。
        """
        if "method" in message and "id" in message:
            threading.Thread(
                target=self._post_request, args=(message,), name=f"mcp-{self.name}-post", daemon=True
            ).start()
            return
        try:
            response = self._http.post(
                self._url,
                json=message,
                headers=self.headers(),
                timeout=(self._limits.connect_timeout_s, self._limits.request_timeout_s),
            )
        except requests.RequestException as exc:
            raise McpUnavailable(f"MCP server '{self.name}' is unreachable ({type(exc).__name__})") from None
        with response:
            if response.status_code == 404 and self.session_id:
                self._session_lost()
            if response.status_code >= 400:
                raise McpUnavailable(f"MCP server '{self.name}' refused a message (HTTP {response.status_code})")

    def _post_request(self, message: dict[str, Any]) -> None:
        """要求を POST し、答え (JSON か SSE) をセッションに渡す。答えが来ないまま終われば失敗にする。"""
        request_id = message["id"]
        try:
            response = self._http.post(
                self._url,
                data=json.dumps(message, ensure_ascii=False).encode("utf-8"),
                headers=self.headers(),
                stream=True,
                timeout=(self._limits.connect_timeout_s, None),
            )
        except requests.RequestException as exc:
            self._fail(request_id, f"MCP server '{self.name}' is unreachable ({type(exc).__name__})")
            return
        with self._lock:
            self._streams[request_id] = response
        try:
            self._read_answer(request_id, message.get("method"), response)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            if self._expects(request_id):
                self._fail(request_id, f"MCP server '{self.name}': the answer broke off ({type(exc).__name__})")
        finally:
            with self._lock:
                self._streams.pop(request_id, None)
            response.close()
        if self._expects(request_id):
            self._fail(request_id, f"MCP server '{self.name}' ended the answer without a result")

    def _read_answer(self, request_id: int, method: Any, response: requests.Response) -> None:
        """応答の状態とメディアタイプを見て、中のメッセージをセッションに渡す。"""
        status = response.status_code
        if status == 404 and self.session_id:
            self._session_lost()
            return
        if status >= 400:
            self._fail(request_id, f"MCP server '{self.name}' answered {method} with HTTP {status}")
            return
        if method == "initialize" and response.headers.get(SESSION_HEADER):
            self.session_id = response.headers[SESSION_HEADER]
        kind = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if kind == "text/event-stream":
            decoder = SSEDecoder()
            total = 0
            for chunk in _arrived(response):
                total += len(chunk)
                if total > self._max_message:
                    self._fail(request_id, self._too_large(method))
                    return
                for event in decoder.feed(chunk):
                    self._deliver_sse(event.data)
                if not self._expects(request_id):
                    return
            for event in decoder.flush():
                self._deliver_sse(event.data)
        elif kind == "application/json":
            content = bytearray()
            for chunk in _arrived(response):
                content += chunk
                if len(content) > self._max_message:
                    self._fail(request_id, self._too_large(method))
                    return
            body = json.loads(bytes(content) or b"null")
            for item in body if isinstance(body, list) else [body]:
                self._on_message(item)
        else:
            reason = f"MCP server '{self.name}' answered {method} with an unexpected content type '{kind[:80]}'"
            self._fail(request_id, reason)

    def listen(self) -> None:
        """サーバーからの通知用の SSE ストリーム (GET) を別スレッドで開く (無いサーバーは 405 で答える)。"""
        threading.Thread(target=self._listen, name=f"mcp-{self.name}-listen", daemon=True).start()

    def _listen(self) -> None:
        """GET のストリームを読み、届いたメッセージ (``list_changed`` など) をセッションに渡す。切れたらやめる。"""
        headers = {k: v for k, v in self.headers().items() if k != "Content-Type"}
        headers["Accept"] = "text/event-stream"
        try:
            response = self._http.get(
                self._url, headers=headers, stream=True, timeout=(self._limits.connect_timeout_s, None)
            )
        except requests.RequestException as exc:
            logger.info("MCP server %s: no notification stream (%s)", self.name, type(exc).__name__)
            return
        with self._lock:
            self._listener = response
        try:
            kind = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
            if response.status_code != 200 or kind != "text/event-stream":
                logger.info("MCP server %s: no notification stream (HTTP %d)", self.name, response.status_code)
                return
            decoder = SSEDecoder()
            for chunk in _arrived(response):
                for event in decoder.feed(chunk):
                    self._deliver_sse(event.data)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError):
            pass
        finally:
            with self._lock:
                self._listener = None
            response.close()

    def _fail(self, request_id: int, message: str) -> None:
        """要求 1 つを :class:`McpUnavailable` (``message``) で失敗にする (セッションがその要求の待ち手に渡す)。"""
        self._on_failure(request_id, McpUnavailable(message))

    def _too_large(self, method: Any) -> str:
        """答えが上限を超えたときの失敗の文言。"""
        return f"MCP server '{self.name}' answered {method} with more than {self._max_message} bytes"

    def _deliver_sse(self, data: str) -> None:
        """SSE の 1 イベントの ``data`` (JSON-RPC のメッセージ) を渡す (空のイベントは再接続用の印)。"""
        if not data.strip():
            return
        try:
            self._on_message(json.loads(data))
        except ValueError:
            logger.warning("MCP server %s sent an SSE event that is not JSON; ignored", self.name)

    def _session_lost(self) -> None:
        """404: サーバーがセッションを忘れた。次に使うときに初期化し直す (仕様: 新しいセッションを始める)。"""
        self.session_id = None
        self._on_closed(f"MCP server '{self.name}' ended the session (HTTP 404)")

    def abandon(self, request_id: int) -> None:
        """取り消した要求の応答ストリームのソケットを閉じ、読み手を起こす。"""
        with self._lock:
            response = self._streams.pop(request_id, None)
        sock = _socket_of(response) if response is not None else None
        if sock is not None:
            _shutdown(sock)

    def close(self, timeout: float) -> None:
        """開いている応答を閉じ、セッションがあれば DELETE する。"""
        with self._lock:
            streams = list(self._streams)
            listener, self._listener = self._listener, None
        for request_id in streams:
            self.abandon(request_id)
        sock = _socket_of(listener) if listener is not None else None
        if sock is not None:
            _shutdown(sock)
        if self.session_id:
            try:
                response = self._http.delete(
                    self._url,
                    headers=self.headers(),
                    timeout=(self._limits.connect_timeout_s, min(timeout, self._limits.request_timeout_s)),
                )
                response.close()
                if response.status_code not in (200, 202, 204, 405, 404):
                    logger.info(
                        "MCP server %s: DELETE of the session answered HTTP %d", self.name, response.status_code
                    )
            except requests.RequestException as exc:
                logger.info("MCP server %s: DELETE of the session failed (%s)", self.name, type(exc).__name__)
            self.session_id = None
        self._http.close()


def _arrived(response: requests.Response) -> Iterator[bytes]:
    """応答の本文を届いた分ずつ返す (``read1``: 揃うまで待たない。base_client.iter_bytes と同じ読み方)。"""
    raw = response.raw
    while True:
        data = raw.read1(CHUNK)
        if not data:
            return
        yield data
