"""スレッド登録簿: スレッドを ID で持ち、所有者 (主体)、設定、実行中のラン (1 つだけ)、イベントログを管理する。

ハンドラ (``routes.py``) は並行に動く (``async_handlers=True``) ので、状態の変更はスレッドごとのロックで直列化する。
ロックの順序は「ランのイベントのロック → 送出のロック → スレッドのロック」と「登録簿のロック → スレッドのロック」。
ラン終了でアクティブを外す処理 (:meth:`ThreadRecord.run_end`) は送出のロックの下で呼ばれる。
ハンドラはスレッドのロックを持ったままランのメソッド (``cancel`` / ``submit_tool_result``) も送出も呼ばず、
スレッドのロックの下で登録簿のロックを取らない。ネットワーク I/O の間はどのロックも持たない。

上限 (docs/protocol.md「上限」): 主体ごとのスレッド数 ``server.max_threads_per_principal`` (超える ``start`` は、
ソケットもランも無いその主体の最古のスレッドを消して通す。そういうスレッドが無ければ ``limit_reached``)、
主体ごとの同時のラン数 ``server.max_active_runs_per_principal`` (超える ``user_message`` は ``limit_reached``)。
使われていないスレッドは ``server.thread_sweep_interval_s`` ごとのバックグラウンドの見回りで消す。

ランは ``socketio.start_background_task`` で動く。ソケットが切れてもランは続き、スレッドのソケットが
``agent.disconnect_timeout_s`` の間 1 つも無ければ ``disconnect_timeout`` でキャンセルする。
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from llm_router.realtime.emitter import NAMESPACE, ThreadEmitter
from llm_router.realtime.event_log import EventLog
from llm_router.realtime.schemas import (
    FORBIDDEN,
    LIMIT_REACHED,
    NO_ACTIVE_RUN,
    NOT_AWAITING,
    RUN_IN_PROGRESS,
    UNKNOWN_THREAD,
    UNKNOWN_TOOL_CALL,
    CancelPayload,
    ProtocolError,
    StartPayload,
    ToolResultPayload,
    UserMessagePayload,
    cancel_ack,
    invalid,
    start_ack,
    tool_result_ack,
    user_message_ack,
)
from llm_router.realtime.thread_config import ThreadConfig, ThreadConfigBuilder

logger = logging.getLogger(__name__)

RUN_IDS_KEPT = 256


@dataclass
class ThreadRecord:
    """登録簿の 1 スレッド。``lock`` の下で読み書きする。"""

    id: str
    owner: str
    config: ThreadConfig
    state: Any
    emitter: ThreadEmitter | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    sids: set[str] = field(default_factory=set)
    active: Any = None
    active_run_id: str | None = None
    run_ids: deque[str] = field(default_factory=lambda: deque(maxlen=RUN_IDS_KEPT))
    last_activity: float = field(default_factory=time.monotonic)
    detached_at: float | None = None

    def run_end(self, run_id: str | None) -> bool:
        """ラン終了イベントの直前に (送出のロックの下で) 呼ばれ、そのランをアクティブから外す。外したら真。"""
        with self.lock:
            if run_id is not None and self.active_run_id == run_id:
                self.active = None
                self.active_run_id = None
                self.last_activity = time.monotonic()
                return True
            return False


class ThreadRegistry:
    """全スレッドの登録簿。各メソッドは成功の ack を返すか :class:`ProtocolError` を投げる。

    Args:
        settings: アプリの ``Settings``。
        socketio: Flask-SocketIO の ``SocketIO``。
        router: ``ModelRouter``。
        tools: サーバー側ツールの ``ToolRegistry``。
    """

    def __init__(self, settings: Any, socketio: Any, router: Any, tools: Any) -> None:
        """依存を受け取る。"""
        self.settings = settings
        self.socketio = socketio
        self.router = router
        self.tools = tools
        self.config_builder = ThreadConfigBuilder(router, tools, settings)
        self._threads: dict[str, ThreadRecord] = {}
        self._sid_threads: dict[str, set[str]] = {}
        # 主体 → その主体のスレッド ID (作った順)。主体 → 動いているランの数。どちらも登録簿のロックの下で
        self._owned: dict[str, dict[str, None]] = {}
        self._active_runs: dict[str, int] = {}
        self._lock = threading.Lock()
        self._sweeper_started = False
        self._closing = False

    # ------------------------------------------------------------ 参照

    def get(self, thread_id: str, principal: str) -> ThreadRecord:
        """スレッドを引き、主体が所有者であることを確かめる。"""
        record = self._threads.get(thread_id)
        if record is None:
            raise ProtocolError(UNKNOWN_THREAD, f"unknown thread '{thread_id}' (send 'start' first)")
        if record.owner != principal:
            raise ProtocolError(FORBIDDEN, f"thread '{thread_id}' belongs to another principal")
        return record

    def __len__(self) -> int:
        """スレッドの数。"""
        return len(self._threads)

    # ------------------------------------------------------------ start

    def start(self, sid: str, principal: str, payload: StartPayload) -> dict[str, Any]:
        """スレッドを開く、または再接続する。設定を検証してから反映し、ルームに入れて再送する。"""
        self._start_sweeper()
        thread_id = payload.thread_id or "thr_" + uuid.uuid4().hex[:20]
        existing = self._threads.get(thread_id)
        if existing is not None and existing.owner != principal:
            raise ProtocolError(FORBIDDEN, f"thread '{thread_id}' belongs to another principal")
        config, warnings = self.config_builder.build(payload, existing.config if existing else None)
        with self._lock:
            self._sid_threads.setdefault(sid, set()).add(thread_id)
        while True:
            record = self._create_or_get(thread_id, principal, config)
            with record.lock:
                record.config = config
                record.sids.add(sid)
                record.detached_at = None
                record.last_activity = time.monotonic()
            # 見回りや上限で消されるのは、スレッドのロックの下でソケットが無いと確かめたものだけ。
            # ソケットを足す前に消されていたら、新しく作り直す
            if self._threads.get(thread_id) is record:
                break
        last_seq, resume_warnings = record.emitter.attach(sid, payload.resume_after_seq)
        if not self.socketio.server.manager.is_connected(sid, NAMESPACE):
            # ハンドラは並行に動くので、このソケットの切断処理が先に終わっていることがある: その分を片付ける
            self.disconnect(sid)
        return start_ack(thread_id, config.model, config.tool_summary(), last_seq, warnings + resume_warnings)

    def _create_or_get(self, thread_id: str, principal: str, config: ThreadConfig) -> ThreadRecord:
        """スレッドを作る (同時に作られていればそれを使い、所有者を確かめる)。"""
        from llm_router.agent import ThreadState

        with self._lock:
            record = self._threads.get(thread_id)
            if record is None:
                owned = self._owned.setdefault(principal, {})
                self._make_room(principal, owned)
                record = ThreadRecord(thread_id, principal, config, ThreadState(thread_id=thread_id))
                server = self.settings.config.server
                log = EventLog(
                    server.event_log_max_events,
                    server.event_log_max_age_s,
                    max_bytes=server.event_log_max_bytes,
                )
                record.emitter = ThreadEmitter(
                    thread_id, self.socketio, log, lambda run_id: self._run_end(record, run_id)
                )
                self._threads[thread_id] = record
                # 消した結果その主体の表が空になって外れていることがあるので、引き直して足す
                self._owned.setdefault(principal, {})[thread_id] = None
        if record.owner != principal:
            raise ProtocolError(FORBIDDEN, f"thread '{thread_id}' belongs to another principal")
        return record

    def _make_room(self, principal: str, owned: dict[str, None]) -> None:
        """(登録簿のロックの下で) 主体のスレッドが上限に達していれば、ソケットもランも無い最古のスレッドを消す。

        Raises:
            ProtocolError: ``limit_reached`` (消せるスレッドが無い)。
        """
        limit = self.settings.config.server.max_threads_per_principal
        if limit <= 0 or len(owned) < limit:
            return
        idle: list[tuple[float, str]] = []
        for tid in owned:
            other = self._threads[tid]
            with other.lock:
                if not other.sids and other.active is None:
                    idle.append((other.last_activity, tid))
        idle.sort()
        for _, tid in idle:
            if len(owned) < limit:
                return
            self._forget(tid)
        if len(owned) >= limit:
            raise ProtocolError(
                LIMIT_REACHED,
                f"this principal already has {len(owned)} threads in use (server.max_threads_per_principal = {limit})",
            )

    def _forget(self, thread_id: str) -> bool:
        """(登録簿のロックの下で) ソケットもランも無いスレッドを登録簿から消す。消したら真。

        確かめるのと消すのを同じスレッドのロックの下で行うので、同時の ``start`` がソケットを足したスレッドは消さない。
        """
        record = self._threads.get(thread_id)
        if record is None:
            return False
        with record.lock:
            if record.sids or record.active is not None:
                return False
            del self._threads[thread_id]
        owned = self._owned.get(record.owner, {})
        owned.pop(thread_id, None)
        if not owned:
            self._owned.pop(record.owner, None)
        return True

    def _run_end(self, record: ThreadRecord, run_id: str | None) -> None:
        """ラン終了の直前 (送出のロックの下): アクティブから外し、主体の動いているランの数を 1 つ減らす。"""
        if record.run_end(run_id):
            self._release_run(record.owner)

    def _release_run(self, principal: str) -> None:
        """主体の動いているランの数を 1 つ減らす。"""
        with self._lock:
            count = self._active_runs.get(principal, 0) - 1
            if count > 0:
                self._active_runs[principal] = count
            else:
                self._active_runs.pop(principal, None)

    def _reserve_run(self, principal: str) -> None:
        """主体の動いているランの数を 1 つ増やす (上限なら ``limit_reached``)。"""
        limit = self.settings.config.server.max_active_runs_per_principal
        with self._lock:
            count = self._active_runs.get(principal, 0)
            if limit > 0 and count >= limit:
                raise ProtocolError(
                    LIMIT_REACHED,
                    f"this principal already has {count} active runs (server.max_active_runs_per_principal = {limit})",
                )
            self._active_runs[principal] = count + 1

    # ------------------------------------------------------------ user_message

    def user_message(self, sid: str, principal: str, payload: UserMessagePayload) -> dict[str, Any]:
        """ランを 1 つ始める (スレッドに実行中のランがあれば ``run_in_progress``、主体のランが上限なら ``limit_reached``)。"""
        record = self.get(payload.thread_id, principal)
        if self._closing:
            raise ProtocolError(RUN_IN_PROGRESS, "the server is shutting down")
        with record.lock:
            if record.active is not None:
                raise ProtocolError(RUN_IN_PROGRESS, f"run '{record.active_run_id}' is still active in this thread")
            run_id = payload.run_id or "run_" + uuid.uuid4().hex[:20]
            if run_id in record.run_ids:
                raise invalid(f"run_id: '{run_id}' was already used in this thread")
        # 主体のランの枠を先に取る (登録簿のロックはスレッドのロックの外で)。このスレッドで先を越されたら返す
        self._reserve_run(principal)
        try:
            run = self._begin_run(record, payload, run_id)
        except BaseException:
            self._release_run(principal)
            raise
        self.socketio.start_background_task(self._execute, record, run, run_id)
        return user_message_ack(run_id)

    def _begin_run(self, record: ThreadRecord, payload: UserMessagePayload, run_id: str) -> Any:
        """(枠を取った後) スレッドのロックの下で、もう一度確かめてからランを作ってアクティブにし、返す。"""
        from llm_router.agent import AgentRun

        with record.lock:
            if record.active is not None:
                raise ProtocolError(RUN_IN_PROGRESS, f"run '{record.active_run_id}' is still active in this thread")
            if run_id in record.run_ids:
                raise invalid(f"run_id: '{run_id}' was already used in this thread")
            self._apply_config(record)
            run = AgentRun(
                run_id,
                record.state,
                payload.content,
                self.router,
                self.tools,
                record.emitter,
                self.settings.config.agent,
            )
            record.active, record.active_run_id = run, run_id
            record.run_ids.append(run_id)
            record.last_activity = time.monotonic()
        return run

    @staticmethod
    def _apply_config(record: ThreadRecord) -> None:
        """スレッドの設定を、これから始めるランのためにエージェントのスレッド状態へ写す (ロックの下で)。"""
        from llm_router.agent.thread_state import RunSettings

        state, config = record.state, record.config
        state.model = config.model
        state.system = config.system
        state.client_tools = list(config.client_tools)
        state.server_tools = list(config.server_tools)
        state.settings = RunSettings.from_dict(config.settings.to_dict())

    def _execute(self, record: ThreadRecord, run: Any, run_id: str) -> None:
        """バックグラウンドでランを実行する。終わりのイベントが出ずに終わったら ``run_error`` で閉じる。"""
        try:
            run.run()
        except Exception:
            logger.exception("run %s of thread %s raised", run_id, record.id)
        with record.lock:
            dangling = record.active_run_id == run_id or not getattr(run, "done", True)
        if dangling:
            error = {
                "code": "internal",
                "message": "the run ended unexpectedly",
                "provider": None,
                "retryable": False,
                "phase": "before_output",
            }
            usage = {"input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}
            try:
                record.emitter.emit(
                    "run_error",
                    run_id,
                    {"error": error, "usage": usage, "rolled_back": bool(getattr(run, "rolled_back", False))},
                )
            finally:
                # 送出まで失敗しても、スレッドを run_in_progress のまま残さない
                self._run_end(record, run_id)

    # ------------------------------------------------------------ tool_result / cancel

    def _active_run(self, record: ThreadRecord, run_id: str | None) -> Any:
        """対象のアクティブなランを返す (無ければ ``None``)。"""
        with record.lock:
            if record.active is None or (run_id is not None and run_id != record.active_run_id):
                return None
            return record.active

    def tool_result(self, sid: str, principal: str, payload: ToolResultPayload) -> dict[str, Any]:
        """クライアント側ツールの結果をランへ渡す。"""
        record = self.get(payload.thread_id, principal)
        run = self._active_run(record, payload.run_id)
        if run is None:
            with record.lock:
                known = payload.run_id in record.run_ids if payload.run_id else bool(record.run_ids)
            if known:
                raise ProtocolError(NOT_AWAITING, "the run has ended; the result was not accepted")
            raise ProtocolError(NO_ACTIVE_RUN, "no active run in this thread")
        outcome = run.submit_tool_result(payload.tool_call_id, payload.result, payload.is_error)
        if outcome == "unknown_tool_call":
            raise ProtocolError(UNKNOWN_TOOL_CALL, f"unknown tool_call_id '{payload.tool_call_id}' in this run")
        if outcome == "not_awaiting":
            raise ProtocolError(
                NOT_AWAITING, f"tool call '{payload.tool_call_id}' is not awaiting a result (answered or timed out)"
            )
        return tool_result_ack()

    def cancel(self, sid: str, principal: str, payload: CancelPayload) -> dict[str, Any]:
        """ランをキャンセルする (冪等: 既に終わっていれば ``cancelled: false``)。"""
        record = self.get(payload.thread_id, principal)
        run = self._active_run(record, payload.run_id)
        if run is None:
            return cancel_ack(False)
        return cancel_ack(bool(run.cancel(mode=payload.mode, reason="client")))

    # ------------------------------------------------------------ 切断と終了

    def disconnect(self, sid: str) -> None:
        """ソケットの切断。スレッドのソケットが無くなれば、実行中のランに切断タイムアウトを仕掛ける。"""
        with self._lock:
            thread_ids = self._sid_threads.pop(sid, set())
        for thread_id in thread_ids:
            record = self._threads.get(thread_id)
            if record is None:
                continue
            with record.lock:
                record.sids.discard(sid)
                if record.sids:
                    continue
                stamp = record.detached_at = time.monotonic()
                watch = record.active is not None
            if watch:
                self.socketio.start_background_task(self._disconnect_watch, record, stamp)

    def _disconnect_watch(self, record: ThreadRecord, stamp: float) -> None:
        """``agent.disconnect_timeout_s`` 待って、まだ誰もいなければランを ``disconnect_timeout`` で止める。"""
        self.socketio.sleep(self.settings.config.agent.disconnect_timeout_s)
        with record.lock:
            run = record.active if (not record.sids and record.detached_at == stamp) else None
        if run is not None:
            run.cancel(mode="now", reason="disconnect_timeout")

    def _start_sweeper(self) -> None:
        """見回りのバックグラウンドタスクを (最初の ``start`` で) 1 回だけ始める。"""
        with self._lock:
            if self._sweeper_started or self._closing:
                return
            self._sweeper_started = True
        self.socketio.start_background_task(self._sweep_loop)

    def _sweep_loop(self) -> None:
        """``server.thread_sweep_interval_s`` ごとに :meth:`sweep` を呼ぶ (サーバーの終了まで)。"""
        interval = max(0.01, float(self.settings.config.server.thread_sweep_interval_s))
        while not self._closing:
            self.socketio.sleep(interval)
            if self._closing:
                return
            try:
                self.sweep()
            except Exception:
                logger.exception("thread sweep failed")

    def sweep(self) -> list[str]:
        """長く使われていないスレッド (ソケットもランも無く ``server.thread_idle_ttl_s`` を過ぎた) を消し、その ID を返す。"""
        now = time.monotonic()
        ttl = self.settings.config.server.thread_idle_ttl_s
        with self._lock:
            stale = []
            for tid, r in self._threads.items():
                with r.lock:
                    if not r.sids and r.active is None and now - r.last_activity > ttl:
                        stale.append(tid)
            return [tid for tid in stale if self._forget(tid)]

    def shutdown(self, timeout: float = 5.0) -> None:
        """全ランを ``shutdown`` でキャンセルし、終わるまで (最大 ``timeout`` 秒) 待つ。"""
        self._closing = True
        runs = [r.active for r in list(self._threads.values()) if r.active is not None]
        for run in runs:
            try:
                run.cancel(mode="now", reason="shutdown")
            except Exception:
                logger.exception("cancel at shutdown failed")
        deadline = time.monotonic() + timeout
        while any(not getattr(run, "done", True) for run in runs) and time.monotonic() < deadline:
            self.socketio.sleep(0.02)
