"""``POST /agui``: AG-UI の ``RunAgentInput`` を受け、エージェントのランを AG-UI のイベントの SSE で流す Flask のルート。

流れ (図は README.md): 認証 (``Authorization: Bearer``) → 本文の検証 → スレッドの所有者の確認 → ランを
バックグラウンド (``socketio.start_background_task``: eventlet ではグリーンスレッド) で動かし、写したイベントを
キューへ → 応答のジェネレータがキューから ``data: <json>\\n\\n`` を書き出す。

- イベントが ``agui.keepalive_s`` 途切れたら ``: keep-alive`` のコメント行を送る (長いツールの待ちでも
  プロキシやブラウザが接続を切らないように)。
- クライアントが接続を閉じたら (ソケットが EOF を返す、書き込みが失敗する、サーバーがジェネレータを閉じる =
  ``GeneratorExit``)、ランを ``now`` で取り消す。取り消しは上流のソケットを閉じる (llm_router/agent/README.md のキャンセル)。
  ソケットは ``agui.disconnect_poll_s`` ごとに調べる (イベントを書くまで待たない)。
- エラーは JSON (``{"error": {"code", "message", "field"?}}``): 400 本文の誤り、401 トークン、403 別の主体の
  スレッドか許されていないオリジン、409 そのスレッドで実行中、413 本文が大きすぎる、429 主体ごとの上限
  (``server.rate_limit_per_minute``、Socket.IO のバスと同じ値で別に数える)。
- CORS: ブラウザの ``Origin`` は Socket.IO と同じ規則 (``server.cors_allowed_origins``、空なら自分のオリジンと
  localhost) で調べ、許すオリジンにだけ ``Access-Control-Allow-Origin`` を返す (プリフライト ``OPTIONS`` にも答える)。
"""

from __future__ import annotations

import json
import logging
import queue
import select
import socket
import time
from typing import Any

from flask import Response, request

from llm_router.agui.events import AguiEventMapper
from llm_router.agui.input import AguiInput, InputError, complete_tool_results, parse_run_input
from llm_router.agui.threads import AguiThreads, Busy, Forbidden
from llm_router.core import json_codec
from llm_router.core.schemas.common import ToolResult
from llm_router.realtime.auth import Authenticator, RateLimiter, origin_checker
from llm_router.realtime.protocol_errors import ProtocolError

logger = logging.getLogger(__name__)
_DONE = object()
# ThreadConfigBuilder の誤りのパス (Socket.IO の start の名前) → AG-UI の RunAgentInput の名前
_FIELD_NAMES = (
    ("model", "forwardedProps.model"),
    ("server_tools", "forwardedProps.serverTools"),
    ("settings", "forwardedProps.settings"),
    ("tools", "tools"),
)


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    """JSON のエラー応答。"""
    body: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        body["field"] = field
    response = Response(json.dumps({"error": body}, ensure_ascii=False), status=status, mimetype="application/json")
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="llm_router"'
    return response


def bearer_token(header: str | None) -> str | None:
    """``Authorization: Bearer <token>`` のトークン (無い・形が違うなら ``None``)。"""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _request_socket(environ: dict[str, Any]) -> socket.socket | None:
    """要求の接続のソケット (eventlet は ``eventlet.input``、Werkzeug は ``werkzeug.socket``)。

    gevent の WSGI サーバーは environ にソケットを出さないので ``None``: そのときは次の書き込み (イベントか
    キープアライブ) の失敗でだけ切断に気づく (``agui.keepalive_s`` 以内)。
    """
    source = environ.get("eventlet.input")
    if hasattr(source, "get_socket"):
        return source.get_socket()
    return environ.get("werkzeug.socket")


def peer_closed(sock: socket.socket | None) -> bool:
    """相手が接続を閉じていれば真 (読めるのに 0 バイト、またはエラー)。待たない。"""
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):
        return True


def unbuffered(wsgi_app: Any, path: str) -> Any:
    """``path`` への要求では、eventlet の WSGI サーバーにイベントごとすぐ書き出させる WSGI ミドルウェア。

    eventlet は既定で応答の断片が 4 KiB たまるまで書き出さない (``minimum_chunk_size``)。要求ごとの
    ``environ["eventlet.minimum_write_chunk_size"]`` で変えられるが、Flask-SocketIO のミドルウェアが environ を
    複製するので、ビューの中で書いても eventlet には届かない。そこでその外側 (サーバーが渡す environ) で書く。
    """

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        """AG-UI のパスなら書き出しの下限を 0 にしてから、元のアプリを呼ぶ。"""
        if environ.get("PATH_INFO") == path:
            environ["eventlet.minimum_write_chunk_size"] = 0
        return wsgi_app(environ, start_response)

    return app


class AguiEndpoint:
    """``POST /agui`` の処理。

    Args:
        services: アプリの ``Services`` (設定、ルーター、サーバー側ツール、Socket.IO の登録簿)。
        socketio: バックグラウンドのタスクを始める ``SocketIO``。
    """

    def __init__(self, services: Any, socketio: Any) -> None:
        """依存を受け取る。"""
        from llm_router.realtime.thread_config import ThreadConfigBuilder

        self.settings = services.settings
        self.router = services.router
        self.tools = services.tools
        self.socketio = socketio
        self.config = services.settings.config.agui
        self.authenticator = Authenticator(services.settings.api_tokens)
        self.threads = AguiThreads(self.config.max_threads)
        self.builder = ThreadConfigBuilder(services.router, services.tools, services.settings)
        self.origins = origin_checker(list(services.settings.config.server.cors_allowed_origins))
        # バスと同じ上限 (server.rate_limit_per_minute) を主体ごとに: 1 回の POST が 1 件
        self.rate_limiter = RateLimiter(services.settings.config.server.rate_limit_per_minute)

    # ------------------------------------------------------------ 要求

    def handle(self) -> Response:
        """1 つの要求を処理する (CORS のプリフライト、エラーは JSON、成功は SSE のストリーム)。"""
        origin = request.headers.get("Origin")
        if origin and not self._origin_allowed(origin):
            response = error_response(403, "forbidden", "this origin is not allowed (server.cors_allowed_origins)")
        elif request.method == "OPTIONS":
            response = Response(status=204)
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
        else:
            response = self._post()
        if origin and self._origin_allowed(origin):
            response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Vary"] = "Origin"
        return response

    def _origin_allowed(self, origin: str) -> bool:
        """ブラウザの ``Origin`` が許されていれば真 (Socket.IO と同じ ``server.cors_allowed_origins`` の規則)。"""
        if self.origins == "*":
            return True
        return bool(self.origins(origin, request.environ))

    def _post(self) -> Response:
        """``POST``: 認証 → 主体ごとの上限 → 本文の検証 → 所有者の確認 → ランの開始。"""
        principal = self.authenticator.principal({"token": bearer_token(request.headers.get("Authorization"))})
        if principal is None:
            return error_response(
                401, "unauthorized", "missing or invalid bearer token (Authorization: Bearer <token>)"
            )
        if not self.rate_limiter.allow(principal):
            return error_response(
                429, "rate_limited", "too many requests; try again later (server.rate_limit_per_minute)"
            )
        body, problem = self._body()
        if problem is not None:
            return problem
        try:
            parsed = parse_run_input(body)
        except InputError as exc:
            return error_response(400, "invalid_payload", exc.message, exc.field)
        try:
            self.threads.check_owner(parsed.thread_id, principal)
        except Forbidden:
            return error_response(403, "forbidden", f"thread '{parsed.thread_id[:64]}' belongs to another principal")
        try:
            state, warnings = self._thread_state(parsed)
        except ProtocolError as exc:
            return error_response(400, "invalid_payload", *self._builder_error(exc.message))
        return self._start(parsed, principal, state, warnings)

    def _body(self) -> tuple[Any, Response | None]:
        """本文を JSON として読む (大きすぎる・JSON でないならエラーの応答)。"""
        limit = self.config.max_body_bytes
        if request.content_length is not None and request.content_length > limit:
            return None, error_response(413, "payload_too_large", f"the body is larger than {limit} bytes")
        raw = request.stream.read(limit + 1)
        if len(raw) > limit:
            return None, error_response(413, "payload_too_large", f"the body is larger than {limit} bytes")
        try:
            return json_codec.loads(raw.decode("utf-8")), None
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None, error_response(400, "invalid_payload", "body: must be a JSON object (RunAgentInput)", "")

    @staticmethod
    def _builder_error(message: str) -> tuple[str, str]:
        """スレッド設定の誤り (``model: ...`` など) を、AG-UI のフィールド名の説明とパスにする。"""
        for ours, theirs in _FIELD_NAMES:
            if message.startswith(ours):
                rest = message[len(ours) :]
                path = theirs + rest.split(":", 1)[0]
                return theirs + rest, path
        return message, ""

    def _thread_state(self, parsed: AguiInput) -> tuple[Any, list[str]]:
        """モデル・ツール・設定を Socket.IO の ``start`` と同じ規則で検証し、エージェントのスレッド状態を作る。"""
        from llm_router.agent import ThreadState
        from llm_router.realtime.schemas import StartPayload

        payload = StartPayload(
            model=parsed.model, tools=parsed.tools, server_tools=parsed.server_tools, settings=parsed.settings
        )
        config, warnings = self.builder.build(payload, None)
        state = ThreadState(thread_id=parsed.thread_id)
        state.use_config(config)
        state.system = parsed.system
        return state, warnings

    # ------------------------------------------------------------ ラン

    def _start(self, parsed: AguiInput, principal: str, state: Any, warnings: list[str]) -> Response:
        """ランを登録してバックグラウンドで始め、SSE の応答を返す。"""
        from llm_router.agent import AgentRun

        stream = RunStream(self, parsed.thread_id, parsed.run_id, _request_socket(request.environ), warnings)
        run = AgentRun(
            parsed.run_id,
            state,
            None,
            self.router,
            self.tools,
            stream.mapper,
            self.settings.config.agent,
            end_on_client_tools=True,
        )
        try:
            kept = self.threads.begin(parsed.thread_id, principal, run)
        except Forbidden:
            return error_response(403, "forbidden", f"thread '{parsed.thread_id[:64]}' belongs to another principal")
        except Busy:
            return error_response(409, "run_in_progress", f"a run is still active in thread '{parsed.thread_id[:64]}'")
        state.history = complete_tool_results(parsed.history, kept)
        stream.run = run
        self.socketio.start_background_task(stream.execute)
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return Response(stream.events(), mimetype="text/event-stream", headers=headers)


class RunStream:
    """1 回のランの SSE: バックグラウンドのランがキューへ入れ、応答のジェネレータが取り出して書く。"""

    def __init__(
        self, endpoint: AguiEndpoint, thread_id: str, run_id: str, sock: socket.socket | None, warnings: list[str]
    ) -> None:
        """エンドポイント、ID、要求のソケット、ack 代わりに送る注意書きを受け取る。"""
        self.endpoint = endpoint
        self.thread_id = thread_id
        self.run_id = run_id
        self.sock = sock
        self.queue: queue.Queue[Any] = queue.Queue()
        self.mapper = AguiEventMapper(thread_id, run_id, self._put, warnings)
        self.run: Any = None

    def _put(self, event: dict[str, Any]) -> None:
        """写したイベントを SSE の 1 フレームにしてキューへ。"""
        self.queue.put(f"data: {json_codec.dumps(event, ensure_ascii=False, separators=(',', ':'))}\n\n")

    def execute(self) -> None:
        """(バックグラウンド) ランを動かし、終わったらスレッドの台帳へ結果を渡してジェネレータを止める。"""
        try:
            self.run.run()
        except Exception:
            logger.exception("AG-UI run %s raised", self.run_id)
        finally:
            if not self.mapper.ended:
                error = {"code": "internal", "message": "the run ended unexpectedly"}
                self.mapper.emit("run_error", self.run_id, {"error": error, "usage": {}})
            results = {
                call_id: ToolResult(call_id, name, value, is_error)
                for call_id, (name, value, is_error) in self.mapper.server_results.items()
            }
            self.endpoint.threads.finish(self.thread_id, self.run, results)
            self.queue.put(_DONE)

    def events(self) -> Any:
        """応答の本文: SSE のフレームを順に返す。接続が閉じたらランを取り消す。"""
        config = self.endpoint.config
        last_write = time.monotonic()
        try:
            while True:
                try:
                    item = self.queue.get(timeout=config.disconnect_poll_s)
                except queue.Empty:
                    if peer_closed(self.sock):
                        logger.info("AG-UI client closed the request; cancelling run %s", self.run_id)
                        return
                    if time.monotonic() - last_write >= config.keepalive_s:
                        last_write = time.monotonic()
                        yield ": keep-alive\n\n"
                    continue
                if item is _DONE:
                    return
                last_write = time.monotonic()
                yield item
        finally:
            # 正常な終わりでは何もしない。途中で閉じられた (GeneratorExit / 書き込みの失敗) ならここで取り消す
            if self.run is not None and not self.run.done:
                self.run.cancel("now", reason="disconnect")
