"""プロセス間のコマンド: 別のプロセスのソケットからの ``tool_result``、``cancel``、``rewind`` ... をランの持ち主へ届け、
持ち主の答え (``not_awaiting``、``cancelled: false`` など) を送り手へ返す。

- 宛先: 各プロセスは自分の列 ``<prefix>:cmd:<process_id>`` (Redis のリスト) を背景スレッドの ``BLPOP`` で受ける。
  送り手 (``llm_router.realtime.cluster.ClusterRuntime.forward``) はランのリースから持ち主を知り
  (``llm_router.cluster.leases.RunLeases.holder``)、その列に ``RPUSH`` する (:meth:`CommandBus.send`)。
  pub/sub ではなくリストにしたのは、受け手が繋ぎ直している間に届いたコマンドも失われないため。
- 返事: コマンドごとの ``request_id`` のリスト ``<prefix>:reply:<request_id>`` に持ち主が ``RPUSH`` し、送り手が
  ``BLPOP`` で期限つきで待つ。期限を過ぎたら :class:`CommandTimeout` (持ち主が死んだ、または詰まっている)。
- 期限切れのコマンドは持ち主が捨てる (送り手が諦めた後に、古い ``cancel`` が効くことはない)。
- 持ち主が自分なら Redis を通さずにその場でハンドラを呼ぶ。
- ハンドラは受信のスレッドで 1 つずつ呼ばれる: 合図を出すだけの短い処理にすること (長い処理は別スレッドで)。
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llm_router.cluster.connection import Backoff, Keys, unavailable_errors
from llm_router.core.schemas.errors import LLMRouterError

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]
_STOP = "__stop__"


class CommandTimeout(LLMRouterError):
    """持ち主が期限までに答えなかった (死んだか詰まっている)。"""

    code = "timeout"


@dataclass
class CommandBus:
    """このプロセスのコマンドの受信と、他のプロセスへの送信 (作っただけでは受信を始めない: :meth:`start`)。

    Args:
        client: 送信と返事の書き込みに使うクライアント。
        blocking_client: ``BLPOP`` で待つのに使うクライアント (読み取りのタイムアウトを待ち時間より長くしたもの)。
        process_id: このプロセスの id (貸与の ``process_id`` と同じもの)。
        handler: ``handler(kind, payload) -> reply`` (このプロセスが持つランへのコマンドを処理する)。
        default_timeout_s: 返事を待つ既定の秒数 (``store.redis.command_timeout_s``)。
        poll_s: 受信の ``BLPOP`` の 1 回の待ち時間 (``store.redis.command_poll_s``)。
        keys: キーの名前。
    """

    client: redis.Redis
    blocking_client: redis.Redis
    process_id: str
    handler: Handler
    default_timeout_s: float = 5.0
    poll_s: float = 1.0
    keys: Keys = field(default_factory=Keys)
    _stop: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _thread: threading.Thread | None = field(default=None, init=False, repr=False)

    # --- 受信側 ---------------------------------------------------------------------------------------

    def start(self) -> None:
        """受信の背景スレッドを起動する (eventlet の monkey-patch の下では緑スレッド)。"""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._listen, name="command-bus", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """受信を止めて終わるのを待つ (自分の列に止める印を送って ``BLPOP`` をすぐ起こす)。"""
        self._stop.set()
        try:
            self.client.rpush(self.keys.commands(self.process_id), json.dumps({"kind": _STOP}))
            self.client.pexpire(self.keys.commands(self.process_id), 1000)
        except Exception:  # Redis が落ちていれば poll_s 以内に自分で気づく
            log.debug("command bus: could not wake the listener", exc_info=True)
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        self._thread = None

    def _listen(self) -> None:
        """止められるまでコマンドを受けて処理する。Redis に届かない間は間隔を伸ばしながら繋ぎ直す。"""
        import redis

        key = self.keys.commands(self.process_id)
        backoff = Backoff("command bus", self._stop)
        while not self._stop.is_set():
            try:
                item = self.blocking_client.blpop([key], timeout=self.poll_s)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                backoff.failed(exc)
                continue
            backoff.reached()
            if item is None:
                continue
            self._handle(item[1])

    def _handle(self, raw: bytes) -> None:
        """1 つのコマンドを処理して、返事を送り手の列に書く。"""
        try:
            message = json.loads(raw)
        except ValueError:
            log.warning("command bus: dropped a malformed command")
            return
        kind = message.get("kind")
        if kind == _STOP:
            return
        if message.get("deadline_ms", 0) < time.time() * 1000:
            log.info("command bus: dropped an expired %s command", kind)
            return
        reply = self.dispatch(kind, message.get("payload") or {})
        reply_key = self.keys.reply(message["request_id"])
        ttl_ms = max(1000, int(message.get("deadline_ms", 0) - time.time() * 1000) + 1000)
        try:
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(reply_key, json.dumps(reply, ensure_ascii=False))
            pipe.pexpire(reply_key, ttl_ms)
            pipe.execute()
        except Exception as exc:
            log.warning("command bus: could not send a reply (%s)", type(exc).__name__)

    def dispatch(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """ハンドラを呼ぶ。例外は ``internal`` の答えにする (スタックトレースは返さずログにだけ出す)。"""
        try:
            return self.handler(kind, payload)
        except Exception:
            log.exception("command bus: handler failed for %s", kind)
            return {"ok": False, "error": {"code": "internal", "message": "the run owner failed to handle the command"}}

    # --- 送信側 ---------------------------------------------------------------------------------------

    def send(
        self, process_id: str, kind: str, payload: dict[str, Any], timeout_s: float | None = None
    ) -> dict[str, Any]:
        """``process_id`` のプロセスへコマンドを送り、その答えを返す (自分宛てならその場で処理する)。

        Raises:
            CommandTimeout: 期限までに答えが無かったとき。
            StoreUnavailable: Redis に届かないとき。
        """
        if process_id == self.process_id:
            return self.dispatch(kind, payload)
        timeout = self.default_timeout_s if timeout_s is None else timeout_s
        request_id = uuid.uuid4().hex
        deadline_ms = int((time.time() + timeout) * 1000)
        message = {"request_id": request_id, "kind": kind, "payload": payload, "deadline_ms": deadline_ms}
        queue = self.keys.commands(process_id)
        with unavailable_errors(self.client, f"command {kind}"):
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(queue, json.dumps(message, ensure_ascii=False))
            # 持ち主が死んでいても列が残り続けないように (生きていればすぐ読まれる)
            pipe.pexpire(queue, int(timeout * 1000) + 1000)
            pipe.execute()
        with unavailable_errors(self.blocking_client, f"command {kind} reply"):
            item = self.blocking_client.blpop([self.keys.reply(request_id)], timeout=timeout)
        if item is None:
            raise CommandTimeout(f"the run owner did not answer {kind} within {timeout:g} s")
        return json.loads(item[1])
