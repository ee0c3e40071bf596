"""スレッド登録簿: スレッドを ID で持ち、所有者 (主体)、設定、実行中のラン (1 つだけ)、イベントログを管理する。

ハンドラ (``routes.py``) は並行に動く (``async_handlers=True``) ので、状態の変更はスレッドごとのロックで直列化する。
ロックの順序は「ランのイベントのロック → 送出のロック → スレッドのロック」と「登録簿のロック → スレッドのロック」。
ラン終了でアクティブを外す処理 (:meth:`ThreadRecord.run_end`) は送出のロックの下で呼ばれる。
ハンドラはスレッドのロックを持ったままランのメソッド (``cancel`` / ``submit_tool_result``) も送出も呼ばず、
スレッドのロックの下で登録簿のロックを取らない。ネットワーク I/O の間はどのロックも持たない。

上限 (docs/protocol.md「上限」): 主体ごとのスレッド数 ``server.max_threads_per_principal`` (超える ``start`` は、
ソケットもランも無いその主体の最古のスレッドを消して通す。そういうスレッドが無ければ ``limit_reached``)、
主体ごとの同時のラン数 ``server.max_active_runs_per_principal`` (超える ``user_message`` は ``limit_reached``)。
複数のプロセス (``store.backend=redis``) では、どちらも全プロセスを合わせて Redis で数える (``ClusterRuntime`` の
``open_threads`` と ``run_slots``。閉じるのは、どのプロセスにもソケットもランも無いスレッドだけ)。
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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from llm_router.core.schemas.events import ThreadDeleted
from llm_router.core.schemas.thread_record import HistoryEntry, StoredThread
from llm_router.realtime.emitter import NAMESPACE, ThreadEmitter
from llm_router.realtime.recovery import close_orphaned_runs
from llm_router.realtime.schemas import (
    FORBIDDEN,
    LIMIT_REACHED,
    NO_ACTIVE_RUN,
    NOT_AWAITING,
    RUN_IN_PROGRESS,
    STORE_UNAVAILABLE,
    UNKNOWN_RUN,
    UNKNOWN_THREAD,
    UNKNOWN_TOOL_CALL,
    CancelPayload,
    ListThreadsPayload,
    ProtocolError,
    RewindPayload,
    StartPayload,
    ThreadRefPayload,
    ToolResultPayload,
    UpdateThreadPayload,
    UserMessagePayload,
    cancel_ack,
    invalid,
    parse_settings,
    start_ack,
    tool_result_ack,
    user_message_ack,
)
from llm_router.realtime.thread_config import ThreadConfig, ThreadConfigBuilder
from llm_router.store.base import Store
from llm_router.store.errors import StoreUnavailable
from llm_router.store.errors import UnknownThread as StoreUnknownThread

if TYPE_CHECKING:
    from llm_router.agent.thread_state import ThreadState

logger = logging.getLogger(__name__)

RUN_IDS_KEPT = 256


class RunHandle(Protocol):
    """登録簿がランに求めるもの (いまはプロセス内の ``AgentRun``。後で別のプロセスのランの代理も置ける)。"""

    @property
    def done(self) -> bool:
        """終わりのイベントを送り終えていれば真。"""
        ...

    @property
    def pending_client_calls(self) -> list[str]:
        """クライアントの答えを待っているツール呼び出しの ID。"""
        ...

    def cancel(self, mode: str = "now", reason: str = "client") -> bool:
        """取り消す。まだ終わっていないランに受け付けたら真。"""
        ...

    def submit_tool_result(self, tool_call_id: str, result: Any, is_error: bool = False) -> str | None:
        """クライアント側ツールの答え。``None`` (受理)、``unknown_tool_call``、``not_awaiting`` のどれか。"""
        ...

    def run(self) -> None:
        """実行する (ブロックする)。"""
        ...

    def ensure_ended(self) -> None:
        """終わりのイベントがまだなら ``run_error`` で閉じる。"""
        ...


def store_refused(exc: StoreUnavailable) -> ProtocolError:
    """ストアの拒否を ack の ``store_unavailable`` にする。"""
    return ProtocolError(STORE_UNAVAILABLE, f"the thread store refused the write: {exc.message}")


@dataclass
class ThreadRecord:
    """登録簿の 1 スレッド (プロセスの中のものだけ: ソケット、動いているラン、ロック、送出口)。``lock`` の下で読み書きする。"""

    id: str
    owner: str
    config: ThreadConfig
    state: ThreadState
    emitter: ThreadEmitter | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    sids: set[str] = field(default_factory=set)
    active: RunHandle | None = None
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


def stored_from_config(thread_id: str, owner: str, config: ThreadConfig) -> StoredThread:
    """スレッドの設定をストアの形にする (履歴は含めない)。"""
    return StoredThread(
        thread_id=thread_id,
        owner=owner,
        model=config.model,
        system=config.system,
        client_tools=list(config.client_tools),
        server_tools=list(config.server_tools),
        settings=config.settings.to_dict(),
    )


def config_from_stored(stored: StoredThread, enabled_server_tools: list[str]) -> ThreadConfig:
    """ストアのスレッドから設定を戻す (いま有効でないサーバー側ツールは外す)。"""
    enabled = set(enabled_server_tools)
    server_tools = enabled_server_tools if stored.server_tools is None else stored.server_tools
    return ThreadConfig(
        model=stored.model or "",
        system=stored.system,
        client_tools=list(stored.client_tools),
        server_tools=[name for name in server_tools if name in enabled],
        settings=parse_settings(stored.settings or {}),
    )


class ThreadRegistry:
    """全スレッドの登録簿。各メソッドは成功の ack を返すか :class:`ProtocolError` を投げる。

    スレッド・履歴・設定・題名・時刻・イベントログはストア (``store.backend``) にあり、登録簿が持つのは
    プロセスの中のもの (ソケット、動いているラン、ロック、送出口) だけ。ストアにあってまだ開かれていない
    スレッドは、``start`` (や履歴・スレッドのイベント) のときにストアから読み込む。

    Args:
        settings: アプリの ``Settings``。
        socketio: Flask-SocketIO の ``SocketIO``。
        router: ``ModelRouter``。
        tools: サーバー側ツールの ``ToolRegistry``。
        store: ストア (省略すると ``open_store(settings)`` で開く)。開いたらすぐ起動時の回復を行う。
    """

    def __init__(self, settings: Any, socketio: Any, router: Any, tools: Any, store: Store | None = None) -> None:
        """依存を受け取り、ストアを開いて、前のプロセスが残したランを ``interrupted`` で閉じる。"""
        from llm_router.store.factory import open_store

        self.settings = settings
        self.socketio = socketio
        self.router = router
        self.tools = tools
        self.store: Store = store if store is not None else open_store(settings)
        self.config_builder = ThreadConfigBuilder(router, tools, settings)
        self._threads: dict[str, ThreadRecord] = {}
        self._sid_threads: dict[str, set[str]] = {}
        # 主体 → その主体のスレッド ID (開いた順)。主体 → 動いているランの数。どちらも登録簿のロックの下で
        self._owned: dict[str, dict[str, None]] = {}
        self._active_runs: dict[str, int] = {}
        self._lock = threading.Lock()
        self._sweeper_started = False
        self._closing = False
        # eventlet では差分をハブへ戻るまでまとめてコミットする (docs/benchmarks.md「ストアの費用」)
        self._defer = None
        if settings.config.server.async_mode == "eventlet":
            import eventlet

            self._defer = eventlet.spawn_n
        # 複数のプロセス (store.backend=redis) のときだけ: リース・コマンド・配送・持ち主を失ったランの検査
        self.cluster = self._make_cluster() if getattr(self.store, "backend", None) == "redis" else None
        try:
            self.recovered = close_orphaned_runs(self.store, self.cluster.is_orphan if self.cluster else None)
        except StoreUnavailable:
            # 読み取り専用のファイルなど: 読めるものは使えるようにし、書けないことはランの開始で伝える
            logger.exception("could not close the runs left by the previous process (store refuses writes)")
            self.recovered = []

    # ------------------------------------------------------------ 複数のプロセス (redis)

    def _make_cluster(self) -> Any:
        """このプロセスの :class:`~llm_router.realtime.cluster.ClusterRuntime` を作って動かす。"""
        from llm_router.realtime.cluster import ClusterRuntime
        from llm_router.realtime.recovery import close_run

        cluster = ClusterRuntime(
            self.settings,
            self.store,
            handler=self._command,
            deliver=self._deliver_logged,
            on_lost=self._lease_lost,
            on_orphan=lambda run: self._close_orphan(run, close_run),
            on_gone=self._thread_gone,
        )
        cluster.start()
        return cluster

    def _close_orphan(self, run: Any, close_run: Any) -> None:
        """持ち主を失ったランを ``interrupted`` で閉じ、そのランの同時ラン数の枠を返す (返せなくても期限で消える)。"""
        owner = self.store.thread_owner(run.thread_id)
        if close_run(self.store, run) and owner is not None:
            self.cluster.release_run(owner, run.thread_id, run.run_id)

    def _command(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        """(ランの持ち主の側で) 別のプロセスのソケットからのコマンドを処理し、ack を返す。"""
        principal = payload.pop("principal", "")
        payload.pop("forwarded", None)
        try:
            if kind == "tool_result":
                return self.tool_result(None, principal, ToolResultPayload(**payload), forwarded=True)
            if kind == "cancel":
                return self.cancel(None, principal, CancelPayload(**payload), forwarded=True)
        except ProtocolError as exc:
            return exc.to_ack()
        return invalid(f"unknown command '{kind}'").to_ack()

    def _forward(self, record: ThreadRecord, kind: str, principal: str, payload: Any) -> dict[str, Any] | None:
        """このプロセスにランが無く、別のプロセスが持っていれば、そこへ送って持ち主の ack を返す。"""
        if self.cluster is None:
            return None
        try:
            return self.cluster.forward(record.id, kind, {**asdict(payload), "principal": principal})
        except StoreUnavailable as exc:
            raise store_refused(exc) from None

    def _deliver_logged(self, thread_id: str, events: list[dict[str, Any]]) -> None:
        """(ストリームの追従から) 別のプロセスが書いたイベントを、このプロセスのソケットへ送る。"""
        record = self._threads.get(thread_id)
        if record is not None and record.emitter is not None:
            record.emitter.deliver_logged(events)

    def _lease_lost(self, thread_id: str, run_id: str) -> None:
        """リースを延ばせなかった (別のプロセスがランを閉じた) ランを、このプロセスで止める。"""
        record = self._threads.get(thread_id)
        run = self._active_run(record, run_id) if record is not None else None
        if run is not None:
            run.cancel(mode="now", reason="shutdown")

    def _thread_gone(self, thread_id: str, reason: str) -> None:
        """(複数のプロセス) ソケットのあるスレッドが Redis から消えた (別のプロセスが ``delete_thread`` した、または
        永続化していない Redis が再起動した): ``delete_thread`` のときと同じく、このプロセスから外し、ソケットに
        ``thread_deleted`` を送ってルームから外す。このプロセスでランが動いていれば、その終わりを待って次の回に。"""
        record = self._threads.get(thread_id)
        if record is None:
            self.cluster.absent(thread_id)
            return
        with record.emitter.lock:
            with self._lock:
                with record.lock:
                    if record.active is not None:
                        return
                    sids = set(record.sids)
                    record.sids.clear()
                self._forget(record.id, force=True)
                for other in sids:
                    self._sid_threads.get(other, set()).discard(record.id)
        self.cluster.unwatch(thread_id)
        self.cluster.absent(thread_id)
        self._tell_deleted(record, sids, reason)

    def _tell_deleted(self, record: ThreadRecord, sids: set[str], reason: str) -> None:
        """消えたスレッドのソケットに ``thread_deleted`` (ログに無い知らせ、``seq`` なし) を送り、ルームから外す。"""
        event = ThreadDeleted(reason=reason)
        notice = {"type": event.TYPE, "thread_id": record.id, **event.fields(), "ts": time.time()}
        for sid in sids:
            try:
                self.socketio.emit(event.TYPE, notice, to=sid, namespace=NAMESPACE)
                record.emitter.detach(sid)
            except Exception:
                logger.debug("socket %s already left the room", sid)

    def _cluster_busy(self, record: ThreadRecord) -> None:
        """別のプロセスがこのスレッドのランを動かしていれば ``run_in_progress``。"""
        if self.cluster is None:
            return
        try:
            holder = self.cluster.holder(record.id)
        except StoreUnavailable as exc:
            raise store_refused(exc) from None
        if holder is not None:
            raise ProtocolError(RUN_IN_PROGRESS, f"run '{holder[1]}' is still active in this thread")

    def _still_stored(self, record: ThreadRecord) -> ThreadRecord | None:
        """(複数のプロセス) 開いているスレッドがストアにまだあれば返す。別のプロセスが消した、または永続化していない
        Redis が再起動して消えたときは、このプロセスからも外して ``None`` を返す (次の ``start`` が新しく作る)。"""
        try:
            owner = self.store.thread_owner(record.id)
        except StoreUnavailable as exc:
            raise store_refused(exc) from None
        if owner is not None:
            return record
        with self._lock:
            self._forget(record.id, force=True)
        self.cluster.unwatch(record.id)
        return self._threads.get(record.id)

    def _refresh(self, record: ThreadRecord) -> None:
        """(送出のロックの下で) 別のプロセスが変えたかもしれない履歴と設定を、ストアから読み直す。"""
        if self.cluster is None:
            return
        stored = self.store.load_thread(record.id)
        if stored is None:
            # 別のプロセスが消した、または Redis の中身が消えた: 次の start (_still_stored) が作り直す
            raise ProtocolError(UNKNOWN_THREAD, f"unknown thread '{record.id}' (send 'start' again)")
        record.emitter.refresh(stored)
        record.config = config_from_stored(stored, self.config_builder.enabled_server_tools())

    # ------------------------------------------------------------ 参照

    def get(self, thread_id: str, principal: str) -> ThreadRecord:
        """開いているスレッドを引き、主体が所有者であることを確かめる。"""
        record = self._threads.get(thread_id)
        if record is None:
            owner = self._stored_owner(thread_id)
            if owner is not None and owner != principal:
                raise ProtocolError(FORBIDDEN, f"thread '{thread_id}' belongs to another principal")
            raise ProtocolError(UNKNOWN_THREAD, f"unknown thread '{thread_id}' (send 'start' first)")
        if record.owner != principal:
            raise ProtocolError(FORBIDDEN, f"thread '{thread_id}' belongs to another principal")
        return record

    def _stored_owner(self, thread_id: str) -> str | None:
        """ストアにあるスレッドの所有者 (無ければ ``None``)。"""
        try:
            return self.store.thread_owner(thread_id)
        except StoreUnavailable as exc:
            raise store_refused(exc) from None

    def _open(self, thread_id: str, principal: str) -> ThreadRecord:
        """スレッドを開く (開いていなければストアから読み込む)。無ければ ``unknown_thread``。"""
        record = self._threads.get(thread_id)
        if record is None:
            try:
                stored = self.store.load_thread(thread_id)
            except StoreUnavailable as exc:
                raise store_refused(exc) from None
            if stored is None:
                raise ProtocolError(UNKNOWN_THREAD, f"unknown thread '{thread_id}'")
            if stored.owner != principal:
                raise ProtocolError(FORBIDDEN, f"thread '{thread_id}' belongs to another principal")
            config = config_from_stored(stored, self.config_builder.enabled_server_tools())
            record = self._create_or_get(thread_id, principal, config, stored)
        if record.owner != principal:
            raise ProtocolError(FORBIDDEN, f"thread '{thread_id}' belongs to another principal")
        return record

    def __len__(self) -> int:
        """開いているスレッドの数。"""
        return len(self._threads)

    # ------------------------------------------------------------ start

    def start(self, sid: str, principal: str, payload: StartPayload) -> dict[str, Any]:
        """スレッドを開く、または再接続する。設定を検証してから反映し、ルームに入れて再送する。"""
        self._start_sweeper()
        thread_id = payload.thread_id or "thr_" + uuid.uuid4().hex[:20]
        existing = self._threads.get(thread_id)
        if existing is not None and self.cluster is not None:
            existing = self._still_stored(existing)
        stored = None
        if existing is None:
            try:
                stored = self.store.load_thread(thread_id)
            except StoreUnavailable as exc:
                raise store_refused(exc) from None
        owner = existing.owner if existing is not None else (stored.owner if stored is not None else None)
        if owner is not None and owner != principal:
            raise ProtocolError(FORBIDDEN, f"thread '{thread_id}' belongs to another principal")
        current = existing.config if existing is not None else None
        if current is None and stored is not None:
            current = config_from_stored(stored, self.config_builder.enabled_server_tools())
        config, warnings = self.config_builder.build(payload, current)
        if self.cluster is not None:
            self._claim_in_use(principal, thread_id)
        if stored is None and existing is None:
            try:
                self.store.create_thread(stored_from_config(thread_id, principal, config))
            except StoreUnavailable as exc:
                raise store_refused(exc) from None
            except Exception:
                # 同時の start が先に作った (ThreadExists): 所有者は下で確かめる
                if self._stored_owner(thread_id) is None:
                    raise
            stored = StoredThread(thread_id=thread_id, owner=principal)
        elif current != config:
            try:
                self.store.update_thread(thread_id, config=stored_from_config(thread_id, principal, config))
            except StoreUnavailable as exc:
                raise store_refused(exc) from None
        with self._lock:
            self._sid_threads.setdefault(sid, set()).add(thread_id)
        while True:
            record = self._create_or_get(thread_id, principal, config, stored)
            with record.lock:
                record.config = config
                record.sids.add(sid)
                record.detached_at = None
                record.last_activity = time.monotonic()
            # 見回りや上限で閉じられるのは、スレッドのロックの下でソケットが無いと確かめたものだけ。
            # ソケットを足す前に閉じられていたら、開き直す
            if self._threads.get(thread_id) is record:
                break
            stored = self.store.load_thread(thread_id)
        try:
            last_seq, resume_warnings = record.emitter.attach(sid, payload.resume_after_seq)
            if self.cluster is not None:
                self.cluster.present(thread_id)
            if self.cluster is not None and record.active is None:
                # 別のプロセスが書くイベントを、ルームへ送った最後の seq の後から追う (このプロセスのランの間は
                # 書くのはこのプロセスだけなので追わない。ランの終わりで追い始める)
                self.cluster.watch(thread_id, record.emitter.delivered_seq or last_seq)
        except StoreUnavailable as exc:
            raise store_refused(exc) from None
        if not self.socketio.server.manager.is_connected(sid, NAMESPACE):
            # ハンドラは並行に動くので、このソケットの切断処理が先に終わっていることがある: その分を片付ける
            self.disconnect(sid)
        return start_ack(thread_id, config.model, config.tool_summary(), last_seq, warnings + resume_warnings)

    def _claim_in_use(self, principal: str, thread_id: str) -> None:
        """(複数のプロセス) スレッドを主体の使用中に数える。上限なら、どのプロセスにもソケットもランも無い最古の
        スレッドを閉じて通し (このプロセスが開いていればここでも外す)、閉じられるものが無ければ ``limit_reached``。"""
        limit = self.settings.config.server.max_threads_per_principal
        try:
            result = self.cluster.open_threads.open(principal, thread_id, limit)
        except StoreUnavailable as exc:
            raise store_refused(exc) from None
        if result.evicted:
            with self._lock:
                for tid in result.evicted:
                    self._forget(tid)
        if not result.allowed:
            raise ProtocolError(
                LIMIT_REACHED,
                f"this principal already has {limit} threads in use on all processes "
                f"(server.max_threads_per_principal = {limit})",
            )

    def _release_in_use(self, closed: list[tuple[str, str]], force: bool = False) -> None:
        """(複数のプロセス) このプロセスで閉じた ``(主体, スレッド)`` を主体の使用中から外す (``force`` でなければ、
        どのプロセスでも空きのものだけ)。Redis に届かなければ、次に上限に当たったときの検査が外す。"""
        if self.cluster is None:
            return
        by_owner: dict[str, list[str]] = {}
        for owner, tid in closed:
            by_owner.setdefault(owner, []).append(tid)
        for owner, tids in by_owner.items():
            try:
                self.cluster.open_threads.close(owner, tids, force=force)
            except StoreUnavailable as exc:
                logger.warning("threads in use not updated: %s", exc)

    def _create_or_get(
        self, thread_id: str, principal: str, config: ThreadConfig, stored: StoredThread | None
    ) -> ThreadRecord:
        """開いているスレッドを返すか、ストアの中身 (``stored``) から開く。所有者を確かめる。"""
        from llm_router.agent import ThreadState

        with self._lock:
            record = self._threads.get(thread_id)
            if record is None:
                owned = self._owned.setdefault(principal, {})
                self._make_room(principal, owned)
                entries: list[HistoryEntry] = list(stored.history) if stored is not None else []
                state = ThreadState(thread_id=thread_id, history=[e.message for e in entries])
                record = ThreadRecord(thread_id, principal, config, state)
                record.emitter = ThreadEmitter(
                    thread_id,
                    self.socketio,
                    self.store,
                    state.history,
                    entries,
                    stored.title if stored is not None else None,
                    lambda run_id: self._run_end(record, run_id),
                    self._defer,
                )
                self._threads[thread_id] = record
                # 閉じた結果その主体の表が空になって外れていることがあるので、引き直して足す
                self._owned.setdefault(principal, {})[thread_id] = None
        if record.owner != principal:
            raise ProtocolError(FORBIDDEN, f"thread '{thread_id}' belongs to another principal")
        return record

    def _make_room(self, principal: str, owned: dict[str, None]) -> None:
        """(登録簿のロックの下で) 主体の開いているスレッドが上限なら、ソケットもランも無い最古のものを閉じる。

        閉じたスレッドはストアに残り、次の ``start`` でまた開ける。

        Raises:
            ProtocolError: ``limit_reached`` (閉じられるスレッドが無い)。
        """
        limit = self.settings.config.server.max_threads_per_principal
        if limit <= 0 or len(owned) < limit or self.cluster is not None:
            # 複数のプロセスでは全プロセスを合わせて数える (start の _claim_in_use)
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

    def _forget(self, thread_id: str, force: bool = False) -> bool:
        """(登録簿のロックの下で) ソケットもランも無いスレッドをプロセスから外す (ストアには残る)。外したら真。

        確かめるのと外すのを同じスレッドのロックの下で行うので、同時の ``start`` がソケットを足したスレッドは
        外さない (``force`` は ``delete_thread``: ソケットがあっても外す。ランがあれば外さない)。
        """
        record = self._threads.get(thread_id)
        if record is None:
            return False
        with record.lock:
            if (record.sids and not force) or record.active is not None:
                return False
            del self._threads[thread_id]
        owned = self._owned.get(record.owner, {})
        owned.pop(thread_id, None)
        if not owned:
            self._owned.pop(record.owner, None)
        return True

    def _run_end(self, record: ThreadRecord, run_id: str | None) -> None:
        """ラン終了の直前 (送出のロックの下): アクティブから外し、主体の動いているランの数を 1 つ減らす。

        複数のプロセスのときのリースは、終わりのイベントのコミットが (同じ Lua の中で) 外す。
        """
        if record.run_end(run_id):
            self._release_run(record.owner)
            if self.cluster is not None:
                self.cluster.release_run(record.owner, record.id, run_id)

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
        try:
            if payload.run_id is not None and self.store.has_run(record.id, run_id):
                raise invalid(f"run_id: '{run_id}' was already used in this thread")
        except StoreUnavailable as exc:
            raise store_refused(exc) from None
        # 主体のランの枠を先に取る (登録簿のロックはスレッドのロックの外で)。このスレッドで先を越されたら返す
        self._reserve_run(principal)
        try:
            run = self._begin_run(record, payload, run_id)
        except BaseException:
            self._release_run(principal)
            raise
        self.socketio.start_background_task(self._execute, record, run, run_id)
        return user_message_ack(run_id)

    def _begin_run(self, record: ThreadRecord, payload: UserMessagePayload, run_id: str) -> RunHandle:
        """(枠を取った後) もう一度確かめ、ランの開始をストアに記録してからランを作ってアクティブにし、返す。

        ランの開始の記録は本物の書き込みなので、ストアが書き込みを拒んでいればここで ``store_unavailable``
        になり、何も始まらない。
        """
        from llm_router.agent import AgentRun

        with record.emitter.lock, record.lock:
            if record.active is not None:
                raise ProtocolError(RUN_IN_PROGRESS, f"run '{record.active_run_id}' is still active in this thread")
            if run_id in record.run_ids:
                raise invalid(f"run_id: '{run_id}' was already used in this thread")
            leased = counted = False
            try:
                record.emitter.settle()
                if self.cluster is not None:
                    # 1 スレッドに 1 ラン (全プロセスを通して)。別のプロセスが書いた履歴も読み直す
                    if not self.cluster.acquire(record.id, run_id):
                        holder = self.cluster.holder(record.id)
                        running = holder[1] if holder else "another run"
                        raise ProtocolError(RUN_IN_PROGRESS, f"run '{running}' is still active in this thread")
                    leased = True
                    limit = self.settings.config.server.max_active_runs_per_principal
                    if not self.cluster.reserve_run(record.owner, record.id, run_id, limit):
                        raise ProtocolError(
                            LIMIT_REACHED,
                            f"this principal already has {limit} active runs on all processes "
                            f"(server.max_active_runs_per_principal = {limit})",
                        )
                    counted = True
                    self._refresh(record)
                    # ランの間は、このスレッドに書くのはこのプロセスだけ: ストリームを追う必要は無い
                    self.cluster.unwatch(record.id)
                self.store.mark_run_active(record.id, run_id)
            except (StoreUnavailable, ProtocolError, StoreUnknownThread) as exc:
                self._undo_cluster_start(record, run_id, leased, counted)
                if isinstance(exc, StoreUnknownThread):
                    raise ProtocolError(UNKNOWN_THREAD, f"unknown thread '{record.id}' (send 'start' again)") from None
                if isinstance(exc, StoreUnavailable):
                    raise store_refused(exc) from None
                raise
            try:
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
            except BaseException:
                # ランを作れなかった: 記録した開始を閉じる (起動時の回復が interrupted にしないように)
                self.store.mark_run_ended(record.id, run_id)
                self._undo_cluster_start(record, run_id, leased, counted)
                raise
            record.active, record.active_run_id = run, run_id
            record.run_ids.append(run_id)
            record.last_activity = time.monotonic()
        return run

    def _undo_cluster_start(self, record: ThreadRecord, run_id: str, leased: bool, counted: bool) -> None:
        """始められなかったランのリースと共有の同時ラン数を返す (1 プロセスのときは何もしない)。"""
        if self.cluster is None:
            return
        if counted:
            self.cluster.release_run(record.owner, record.id, run_id)
        try:
            if leased:
                self.cluster.release(record.id, run_id)
        except StoreUnavailable:
            logger.warning("could not give back the lease of run %s (it expires by itself)", run_id)
        if record.sids:
            self.cluster.watch(record.id, record.emitter.delivered_seq or 0)

    @staticmethod
    def _apply_config(record: ThreadRecord) -> None:
        """スレッドの設定を、これから始めるランのためにエージェントのスレッド状態へ写す (ロックの下で)。"""
        record.state.use_config(record.config)

    def _execute(self, record: ThreadRecord, run: RunHandle, run_id: str) -> None:
        """バックグラウンドでランを実行する。終わりのイベントが出ずに終わったら、ラン自身に ``run_error`` で閉じさせる。"""
        try:
            run.run()
        except Exception:
            logger.exception("run %s of thread %s raised", run_id, record.id)
        with record.lock:
            dangling = record.active_run_id == run_id or not run.done
        if dangling:
            try:
                run.ensure_ended()
            except Exception:
                logger.exception("run %s of thread %s could not be closed", run_id, record.id)
            finally:
                # 送出まで失敗しても、スレッドを run_in_progress のまま残さない
                self._run_end(record, run_id)
        if self.cluster is not None:
            with record.lock:
                attached = bool(record.sids)
            if attached:
                # ランの後は別のプロセスが書くかもしれない: ルームへ送った最後の seq の後から追い直す
                self.cluster.watch(record.id, record.emitter.delivered_seq or 0)
            # 終わりのイベントのコミットでリースは外れている。書けなかったときも更新をやめて期限切れに任せず返す
            # (終わりが書けていなければランは記録に残り、検査係が interrupted で閉じる)
            self.cluster.release(record.id, run_id)

    # ------------------------------------------------------------ tool_result / cancel

    def _active_run(self, record: ThreadRecord, run_id: str | None) -> RunHandle | None:
        """対象のアクティブなランを返す (無ければ ``None``)。"""
        with record.lock:
            if record.active is None or (run_id is not None and run_id != record.active_run_id):
                return None
            return record.active

    def _here_or_forward(
        self,
        kind: str,
        principal: str,
        payload: ToolResultPayload | CancelPayload,
        forwarded: bool,
        here: Callable[[ThreadRecord, RunHandle | None], dict[str, Any]],
    ) -> dict[str, Any]:
        """対象のスレッドのランへのコマンドを、このプロセスで ``here`` に行わせるか、ランを持つ別のプロセスへ送る。

        このプロセスにアクティブなランが無く、別のプロセスから転送されてきたコマンドでもなければ、持ち主へ
        送ってその ack を返す。どこにもランが無ければ ``here`` が ``None`` のランで答える。
        """
        record = self.get(payload.thread_id, principal)
        run = self._active_run(record, payload.run_id)
        if run is None and not forwarded:
            answer = self._forward(record, kind, principal, payload)
            if answer is not None:
                return answer
        return here(record, run)

    def tool_result(
        self, sid: str | None, principal: str, payload: ToolResultPayload, forwarded: bool = False
    ) -> dict[str, Any]:
        """クライアント側ツールの結果をランへ渡す (ランが別のプロセスにあれば、そこへ送って答えを返す)。"""
        return self._here_or_forward(
            "tool_result", principal, payload, forwarded, lambda record, run: self._submit(record, run, payload)
        )

    def _submit(self, record: ThreadRecord, run: RunHandle | None, payload: ToolResultPayload) -> dict[str, Any]:
        """このプロセスのランへツールの結果を渡す (ランが無ければ、終わったのか元から無いのかを答える)。"""
        if run is None:
            with record.lock:
                known = payload.run_id in record.run_ids if payload.run_id else bool(record.run_ids)
            if not known and self.cluster is not None:
                # ランが別のプロセスにあって、答えが届く前に終わった: そのランはストアが知っている
                try:
                    known = (
                        self.store.has_run(record.id, payload.run_id)
                        if payload.run_id
                        else self.store.bounds(record.id).last_seq > 0
                    )
                except StoreUnavailable as exc:
                    raise store_refused(exc) from None
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

    def cancel(
        self, sid: str | None, principal: str, payload: CancelPayload, forwarded: bool = False
    ) -> dict[str, Any]:
        """ランをキャンセルする (冪等: 既に終わっていれば ``cancelled: false``)。別のプロセスのランならそこへ送る。"""
        return self._here_or_forward(
            "cancel",
            principal,
            payload,
            forwarded,
            lambda _record, run: cancel_ack(run is not None and bool(run.cancel(mode=payload.mode, reason="client"))),
        )

    # ------------------------------------------------------------ スレッドのイベント (1.1)

    def list_threads(self, sid: str, principal: str, payload: ListThreadsPayload) -> dict[str, Any]:
        """主体のスレッドを ``updated_at`` の新しい順に返す。"""
        try:
            page = self.store.list_threads(principal, payload.limit, payload.before)
        except ValueError as exc:
            raise invalid(str(exc)) from None
        except StoreUnavailable as exc:
            raise store_refused(exc) from None
        return {"ok": True, "threads": [t.to_dict() for t in page.threads], "next_cursor": page.next_cursor}

    def get_history(self, sid: str, principal: str, payload: ThreadRefPayload) -> dict[str, Any]:
        """フロントエンドが会話を描き直すための履歴 (署名やプロバイダのデータは含めない)。"""
        from llm_router.realtime.history_view import history_messages

        record = self._threads.get(payload.thread_id)
        try:
            # 複数のプロセスでは別のプロセスが履歴を変えているかもしれないので、いつもストアから読む
            if record is not None and record.owner == principal and self.cluster is None:
                with record.emitter.lock:
                    record.emitter.flush()
                    entries = list(record.emitter.entries)
                    last_seq = self.store.bounds(record.id).last_seq
                client_names = {t.name for t in record.config.client_tools}
            else:
                stored = self.store.load_thread(payload.thread_id)
                if stored is None:
                    raise ProtocolError(UNKNOWN_THREAD, f"unknown thread '{payload.thread_id}'")
                if stored.owner != principal:
                    raise ProtocolError(FORBIDDEN, f"thread '{payload.thread_id}' belongs to another principal")
                entries = stored.history
                last_seq = self.store.bounds(stored.thread_id).last_seq
                client_names = {t.name for t in stored.client_tools}
        except StoreUnavailable as exc:
            raise store_refused(exc) from None
        return {"ok": True, "messages": history_messages(entries, client_names), "last_seq": last_seq}

    def rewind(self, sid: str, principal: str, payload: RewindPayload) -> dict[str, Any]:
        """そのランと後のすべてのランを履歴から外し、``thread_rewound`` をスレッドの全ソケットへ送る。"""
        record = self._open(payload.thread_id, principal)
        emitter = record.emitter
        with emitter.lock:
            with record.lock:
                if record.active is not None:
                    raise ProtocolError(RUN_IN_PROGRESS, f"run '{record.active_run_id}' is still active in this thread")
            lease = self._hold_thread(record)
            try:
                return self._rewind_locked(record, payload)
            finally:
                if lease is not None:
                    self.cluster.release(record.id, lease)

    def _hold_thread(self, record: ThreadRecord) -> str | None:
        """(複数のプロセスのとき) スレッドを変える間、ランと同じリースを取って、どのプロセスでもランを始めさせない。

        別のプロセスでランが動いていれば ``run_in_progress``。取ったリースの名前 (後で返す) を返す。
        """
        if self.cluster is None:
            return None
        name = "hold_" + uuid.uuid4().hex[:12]
        try:
            if not self.cluster.acquire(record.id, name):
                self._cluster_busy(record)
                raise ProtocolError(RUN_IN_PROGRESS, "a run is still active in this thread")
            try:
                self._refresh(record)
            except BaseException:
                self.cluster.release(record.id, name)
                raise
        except StoreUnavailable as exc:
            raise store_refused(exc) from None
        return name

    def _rewind_locked(self, record: ThreadRecord, payload: RewindPayload) -> dict[str, Any]:
        """(送出のロックの下で) ``rewind`` の本体。"""
        emitter = record.emitter
        entries = emitter.entries
        first = next((i for i, e in enumerate(entries) if e.run_id == payload.run_id), None)
        if first is None:
            try:
                known = self.store.has_run(record.id, payload.run_id)
            except StoreUnavailable as exc:
                raise store_refused(exc) from None
            if not known:
                raise ProtocolError(UNKNOWN_RUN, f"run_id: this thread has no run '{payload.run_id}'")
            removed = [payload.run_id]
        else:
            removed = []
            for entry in entries[first:]:
                if entry.run_id is not None and entry.run_id not in removed:
                    removed.append(entry.run_id)
            del record.state.history[first:]
        try:
            emitter.emit("thread_rewound", payload.run_id, {"removed_runs": removed})
        except StoreUnavailable as exc:
            raise store_refused(exc) from None
        return {"ok": True, "removed_runs": removed}

    def update_thread(self, sid: str, principal: str, payload: UpdateThreadPayload) -> dict[str, Any]:
        """題名を変える。"""
        record = self._open(payload.thread_id, principal)
        with record.emitter.lock:
            try:
                self.store.update_thread(record.id, title=payload.title)
            except StoreUnavailable as exc:
                raise store_refused(exc) from None
            record.emitter.title = payload.title
        return {"ok": True, "thread_id": record.id, "title": payload.title}

    def delete_thread(self, sid: str, principal: str, payload: ThreadRefPayload) -> dict[str, Any]:
        """スレッドを消す (ランが動いていれば ``run_in_progress``)。ストアからも、プロセスからも。"""
        record = self._open(payload.thread_id, principal)
        with record.emitter.lock:
            self._cluster_busy(record)
            with self._lock:
                with record.lock:
                    if record.active is not None:
                        raise ProtocolError(
                            RUN_IN_PROGRESS, f"run '{record.active_run_id}' is still active in this thread"
                        )
                    sids = set(record.sids)
                    record.sids.clear()
                try:
                    self.store.delete_thread(record.id)
                except StoreUnavailable as exc:
                    record.sids.update(sids)
                    raise store_refused(exc) from None
                self._forget(record.id, force=True)
                for other in sids:
                    self._sid_threads.get(other, set()).discard(record.id)
            self._release_in_use([(principal, record.id)], force=True)
            self._tell_deleted(record, sids, "deleted")
        if self.cluster is not None:
            self.cluster.unwatch(record.id)
            self.cluster.absent(record.id)
        return {"ok": True, "thread_id": record.id}

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
            if self.cluster is not None:
                self.cluster.unwatch(thread_id)
                self.cluster.absent(thread_id)
            if watch:
                self.socketio.start_background_task(self._disconnect_watch, record, stamp)

    def _disconnect_watch(self, record: ThreadRecord, stamp: float) -> None:
        """``agent.disconnect_timeout_s`` 待って、まだ誰もいなければランを ``disconnect_timeout`` で止める。"""
        self.socketio.sleep(self.settings.config.agent.disconnect_timeout_s)
        with record.lock:
            run = record.active if (not record.sids and record.detached_at == stamp) else None
        if run is not None and self.cluster is not None and self.cluster.others_present(record.id):
            # 別のプロセスにこのスレッドのソケットがある: まだ止めず、もう 1 期間待つ
            self.socketio.start_background_task(self._disconnect_watch, record, stamp)
            return
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
                        stale.append((r.owner, tid))
            closed = [(owner, tid) for owner, tid in stale if self._forget(tid)]
        self._release_in_use(closed)
        return [tid for _, tid in closed]

    def shutdown(self, timeout: float = 5.0) -> None:
        """全ランを ``shutdown`` でキャンセルし、終わるまで (最大 ``timeout`` 秒) 待つ。

        ``run_cancelled`` (reason ``shutdown``) はほかのイベントと同じくストアに書いてから送るので、
        この関数が返ったときにはログに入っている。
        """
        self._closing = True
        runs = [r.active for r in list(self._threads.values()) if r.active is not None]
        for run in runs:
            try:
                run.cancel(mode="now", reason="shutdown")
            except Exception:
                logger.exception("cancel at shutdown failed")
        deadline = time.monotonic() + timeout
        while any(not run.done for run in runs) and time.monotonic() < deadline:
            self.socketio.sleep(0.02)

    def close(self) -> None:
        """複数のプロセスの部品を止め、ストアを閉じる (:meth:`shutdown` の後、プロセスの終わりに)。"""
        if self.cluster is not None:
            try:
                self.cluster.stop()
            except Exception:
                logger.exception("stopping the cluster runtime failed")
        try:
            self.store.close()
        except Exception:
            logger.exception("closing the store failed")
