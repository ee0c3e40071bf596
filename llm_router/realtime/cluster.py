"""複数のサーバープロセスでのランとイベントの配送 (``store.backend=redis`` のときだけ使う)。

流れの図は ``llm_router/cluster/README.md`` (配送の設計、別のプロセスからの cancel、持ち主が死んだときの後始末)。

- **ランのリース**: ランを始めるプロセスは、ストアのリース (``store.acquire_run_lease``、``store.run_lease_s``) を
  取ってからランを記録する。取れなければ (どのプロセスのものでも) ``run_in_progress``。リースは
  :class:`ClusterRuntime` の更新係が ``run_lease_s / 3`` ごとに、持っている全部を 1 回の往復で延ばし
  (``store.renew_run_leases``)、ランの終わりの記録で外れる。
  延ばせなかった (別のプロセスが ``interrupted`` で閉じた) ランは、このプロセスで止める。
- **コマンド**: ソケットのプロセスにランが無く、リースの持ち主が別のプロセスなら、``tool_result`` / ``cancel``
  を Redis のコマンド (``llm_router.cluster.commands.CommandBus``) で持ち主へ送り、持ち主の ack をそのまま返す。
  持ち主の側は同じ登録簿のメソッドを ``forwarded`` で呼ぶ (もう一度転送はしない)。
- **配送**: ランの持ち主はイベントをストアにコミットしてから自分のソケットのルームへ直接送る (イベントごとの
  PUBLISH はしない)。他のプロセスでそのスレッドを開いているソケットには、そのプロセスの
  ``StreamFollower`` がスレッドの Redis Stream を追って ``seq`` の順に届ける (``ThreadEmitter.deliver_logged``
  が、ルームに送った最後の ``seq`` より後だけを送るので、抜けも重複も無い)。
- **ソケットの在席**: スレッドのソケットを持つプロセスは ``<prefix>:t:<id>:present`` (sorted set、期限つき) に
  自分を書き、更新係が延ばす。ランの持ち主は、自分のソケットが全部切れても、他のプロセスにソケットがあれば
  切断タイムアウト (``agent.disconnect_timeout_s``) でランを止めない。
- **持ち主を失ったラン**: 各プロセスは ``run_lease_s / 2`` ごとに、終わっていないランのうちリースの切れたものを
  探し、そのランのリースを取れたら (取れるのは 1 つのプロセスだけ) ``run_error`` (``interrupted``) で閉じる。
  持ち主の死から閉じるまでは最大 2 リース期間。
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from llm_router.cluster.commands import CommandBus, CommandTimeout
from llm_router.cluster.connection import connect, new_process_id, unavailable_errors
from llm_router.cluster.follower import StreamFollower
from llm_router.cluster.leases import RunLeases
from llm_router.cluster.limits import RunSlots, SharedRateLimiter
from llm_router.cluster.open_threads import OpenThreads
from llm_router.core.schemas.errors import StoreUnavailable
from llm_router.realtime.protocol_errors import INTERNAL, ProtocolError

logger = logging.getLogger(__name__)

Handler = Callable[[str, dict[str, Any]], dict[str, Any]]
Deliver = Callable[[str, list[dict[str, Any]]], Any]


class ClusterRuntime:
    """1 プロセス分の、複数プロセスのための部品 (リース、コマンド、配送、持ち主を失ったランの検査)。

    Args:
        settings: アプリの ``Settings`` (``store.*``、``.env`` の ``LLM_ROUTER_REDIS_URL``)。
        store: Redis のストア (``llm_router.store.redis.RedisStore``)。
        handler: 持ち主の側でコマンドを処理する関数 ``handler(kind, payload) -> ack``。
        deliver: 他のプロセスが書いたイベントを自分のソケットへ届ける関数 ``deliver(thread_id, events)``。
        on_lost: リースを延ばせなかったランを止める関数 ``on_lost(thread_id, run_id)``。
        on_orphan: 持ち主を失ったランを閉じる関数 ``on_orphan(active_run)`` (そのランのリースを取った後で呼ぶ)。
        on_gone: このプロセスにソケットのあるスレッドが Redis から消えたときに呼ぶ関数 ``on_gone(thread_id, reason)``
            (``reason`` は ``deleted``: 別のプロセスが消した / ``store_reset``: Redis が中身なしで再起動した)。
    """

    def __init__(
        self,
        settings: Any,
        store: Any,
        handler: Handler,
        deliver: Deliver,
        on_lost: Callable[[str, str], Any],
        on_orphan: Callable[[Any], Any],
        on_gone: Callable[[str, str], Any] | None = None,
    ) -> None:
        """部品を作る (まだ動かさない: :meth:`start`)。"""
        cfg = settings.config
        rcfg = cfg.store.redis
        self.store = store
        self.process_id = new_process_id()
        # ランのイベントは、このプロセスがそのランの期限内のリースを持つときだけ書ける (切れた持ち主は書けない)
        store.fence_writes(self.process_id)
        self.lease_s = float(cfg.store.run_lease_s)
        self.command_timeout_s = float(rcfg.command_timeout_s)
        scan = float(rcfg.orphan_scan_interval_s)
        self.scan_interval_s = scan if scan > 0 else self.lease_s / 2
        url = settings.redis_url or ""
        wait = max(rcfg.command_poll_s, rcfg.command_timeout_s) + rcfg.socket_timeout_s
        self._blocking = connect(url, rcfg, socket_timeout_s=wait)
        self._follow_client = connect(url, rcfg, socket_timeout_s=rcfg.command_poll_s + rcfg.socket_timeout_s)
        self.leases = RunLeases(store.client, store.keys)
        self.bus = CommandBus(
            store.client,
            self._blocking,
            self.process_id,
            handler,
            self.command_timeout_s,
            rcfg.command_poll_s,
            store.keys,
        )
        self.follower = StreamFollower(
            self._follow_client, self.process_id, deliver, rcfg.command_poll_s, keys=store.keys
        )
        self.rate_limiter = SharedRateLimiter(store.client, cfg.server.rate_limit_per_minute, keys=store.keys)
        self.run_slots = RunSlots(store.client, self.lease_s, store.keys)
        # 主体の使用中のスレッドの数 (server.max_threads_per_principal) を全プロセスで。在席の期限は _mark_present と同じ
        self.open_threads = OpenThreads(store.client, self.process_id, self.lease_s * 3, store.keys)
        self._on_lost = on_lost
        self._on_orphan = on_orphan
        self._on_gone = on_gone
        # Redis の中身の世代 (<prefix>:epoch)。変われば Redis が空になった (永続化なしの再起動)
        self._epoch_key = store.keys.epoch()
        self._epoch: bytes | None = None
        self._held: dict[tuple[str, str], None] = {}
        # このプロセスが動かすランの、主体の同時ラン数の枠 (thread_id, run_id) -> 主体。リースと一緒に延ばす
        self._slots: dict[tuple[str, str], str] = {}
        # このプロセスにソケットがあるスレッド (他のプロセスに「見ている者がいる」と知らせる)
        self._present: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._loops: list[threading.Thread] = []

    # ------------------------------------------------------------ 起動と停止

    def start(self) -> None:
        """コマンドの受信、ストリームの追従、リースの更新、持ち主を失ったランの検査を始める。"""
        try:
            self._epoch = self._current_epoch()
        except StoreUnavailable as exc:
            logger.warning("redis epoch not read yet: %s", exc)
        self.bus.start()
        self.follower.start()
        for name, interval, tick in (
            ("lease-renewer", self.lease_s / 3, self.renew_now),
            ("orphan-scanner", self.scan_interval_s, self.scan_now),
        ):
            thread = threading.Thread(target=self._loop, args=(name, interval, tick), name=name, daemon=True)
            thread.start()
            self._loops.append(thread)

    def stop(self) -> None:
        """止める (接続も閉じる)。"""
        self._stop.set()
        self.bus.stop(timeout=2)
        self.follower.stop(timeout=2)
        for thread in self._loops:
            thread.join(2)
        for client in (self._blocking, self._follow_client):
            client.close()

    def _loop(self, name: str, interval: float, tick: Callable[[], Any]) -> None:
        """止められるまで ``interval`` ごとに ``tick`` を呼ぶ (Redis に届かない間は警告して続ける)。"""
        while not self._stop.wait(interval):
            try:
                tick()
            except StoreUnavailable as exc:
                logger.warning("%s: %s", name, exc)
            except Exception:
                logger.exception("%s failed", name)

    # ------------------------------------------------------------ リース

    def acquire(self, thread_id: str, run_id: str) -> bool:
        """ランのリースを取る (取れたら更新の対象にする)。別のランが持っていれば偽。

        スレッドに持ち主を失ったラン (リースが切れた、終わりの記録の無いラン) があれば、それを先に
        ``interrupted`` で閉じる (検査係を待たない)。

        Raises:
            StoreUnavailable: Redis に届かないとき。
        """
        if not self.store.acquire_run_lease(thread_id, run_id, self.process_id, self.lease_s):
            # 持ち主を失ったランが残っていれば (リースが切れている)、先に interrupted で閉じてからもう一度
            orphan = self.store.open_run(thread_id)
            if orphan is None or orphan.run_id == run_id or not self.is_orphan(orphan):
                return False
            try:
                self._on_orphan(orphan)
            finally:
                self.store.release_run_lease(thread_id, orphan.run_id, self.process_id)
            if not self.store.acquire_run_lease(thread_id, run_id, self.process_id, self.lease_s):
                return False
        with self._lock:
            self._held[(thread_id, run_id)] = None
        return True

    def release(self, thread_id: str, run_id: str) -> None:
        """更新の対象から外し、まだ持っていればリースを返す (終わりの記録でもう外れていれば何もしない)。"""
        with self._lock:
            held = self._held.pop((thread_id, run_id), 0) is None
        if held:
            try:
                self.store.release_run_lease(thread_id, run_id, self.process_id)
            except StoreUnavailable as exc:
                logger.warning("run lease of %s could not be released (it expires by itself): %s", run_id, exc)

    def renew_now(self) -> None:
        """持っているリースをすべて延ばす。延ばせなかったランは ``on_lost`` で止める。ソケットの在席と、
        このプロセスのランの同時ラン数の枠も延ばす。"""
        with self._lock:
            held = list(self._held)
            present = list(self._present)
            slots = [(principal, tid, rid) for (tid, rid), principal in self._slots.items()]
        if present:
            self._notify_gone(present, self._mark_present(present))
        self.run_slots.renew(slots)
        renewed = self.store.renew_run_leases(held, self.process_id, self.lease_s)  # 1 回の往復
        for (thread_id, run_id), ok in zip(held, renewed, strict=True):
            if ok:
                continue
            with self._lock:
                lost = self._held.pop((thread_id, run_id), 0) is None
            if lost:
                logger.warning("run %s of thread %s lost its lease: stopping it here", run_id, thread_id)
                self._on_lost(thread_id, run_id)

    # ------------------------------------------------------------ 主体の同時ラン数 (全プロセス)

    def reserve_run(self, principal: str, thread_id: str, run_id: str, limit: int) -> bool:
        """主体の同時ラン数の枠を取る (上限 ``limit``、0 なら無制限)。取れたら更新の対象にして真。

        Raises:
            StoreUnavailable: Redis に届かないとき。
        """
        if not self.run_slots.acquire(principal, thread_id, run_id, limit):
            return False
        with self._lock:
            self._slots[(thread_id, run_id)] = principal
        return True

    def release_run(self, principal: str, thread_id: str, run_id: str) -> None:
        """ランの枠を返す (このプロセスのものなら更新もやめる)。返せなくても、延ばす者がいないので期限で消える。"""
        with self._lock:
            self._slots.pop((thread_id, run_id), None)
        try:
            self.run_slots.release(principal, thread_id, run_id)
        except StoreUnavailable:
            logger.warning("the run slot of %s could not be given back now (it expires by itself)", run_id)

    def holder(self, thread_id: str) -> tuple[str, str] | None:
        """スレッドのリースの持ち主 ``(process_id, run_id)`` (いなければ ``None``)。"""
        found = self.leases.holder(thread_id)
        return None if found is None else (found.process_id, found.run_id)

    # ------------------------------------------------------------ 持ち主を失ったラン

    def scan_now(self) -> list[str]:
        """リースの切れた (持ち主が死んだ) ランを探し、リースを取れたものを ``on_orphan`` で閉じる。閉じたラン ID を返す。"""
        now = time.time()
        closed = []
        for run in self.store.active_runs():
            if run.lease_expires_at is not None and run.lease_expires_at > now:
                continue
            if run.lease_owner == self.process_id:
                continue  # 自分のランは更新係が面倒を見る
            if not self.store.acquire_run_lease(run.thread_id, run.run_id, self.process_id, self.lease_s):
                continue  # 持ち主が間に合って更新した、または別のプロセスが先に取った
            try:
                self._on_orphan(run)
                closed.append(run.run_id)
            finally:
                try:
                    self.store.release_run_lease(run.thread_id, run.run_id, self.process_id)
                except StoreUnavailable:
                    pass
        return closed

    def is_orphan(self, run: Any) -> bool:
        """起動時の回復で閉じてよいラン (リースが無いか切れている) なら、そのリースを取って真を返す。"""
        if run.lease_expires_at is not None and run.lease_expires_at > time.time():
            return False
        return bool(self.store.acquire_run_lease(run.thread_id, run.run_id, self.process_id, self.lease_s))

    # ------------------------------------------------------------ コマンド

    def forward(self, thread_id: str, kind: str, payload: dict[str, Any]) -> dict[str, Any] | None:
        """スレッドのランが別のプロセスにあれば、そこへコマンドを送って持ち主の ack を返す。無ければ ``None``。

        Raises:
            StoreUnavailable: Redis に届かないとき。
            ProtocolError: 持ち主が ``store.redis.command_timeout_s`` 以内に答えなかったとき (``internal``)。
        """
        found = self.holder(thread_id)
        if found is None or found[0] == self.process_id:
            return None
        try:
            return self.bus.send(found[0], kind, {**payload, "forwarded": True})
        except CommandTimeout:
            raise ProtocolError(
                INTERNAL,
                f"the process running this thread's run did not answer within {self.command_timeout_s:g} s "
                "(store.redis.command_timeout_s); if it died, the run ends as interrupted",
            ) from None

    # ------------------------------------------------------------ 配送

    def watch(self, thread_id: str, after_seq: int) -> None:
        """このプロセスのソケットのために、スレッドのストリームを ``after_seq`` より後から追う。"""
        self.follower.watch(thread_id, after_seq)

    def unwatch(self, thread_id: str) -> None:
        """追うのをやめる (このプロセスにそのスレッドのソケットが無くなった)。"""
        self.follower.unwatch(thread_id)

    # ------------------------------------------------------------ ソケットの在席 (切断タイムアウトのため)

    def _presence_key(self, thread_id: str) -> str:
        """スレッドにソケットを持つプロセスの sorted set (点数は在席の期限のミリ秒)。"""
        return self.store.keys.presence(thread_id)

    def _mark_present(self, thread_ids: list[str]) -> list[tuple[bool, bool]]:
        """在席の期限 (リースの 3 倍) を延ばす。同じ往復で、それぞれのスレッドについて
        ``(まだ Redis にある, 延ばす前からこのプロセスの在席が記録されていた)`` を返す。

        2 つ目は、Redis が中身なしで再起動した後に、再起動の前から開いていたスレッド (在席の記録も消えている) と、
        再起動の後に開き直したスレッド (:meth:`present` がもう記録した) を見分けるため。
        """
        ttl_ms = int(self.lease_s * 3000)
        until = int(time.time() * 1000) + ttl_ms
        client = self.store.client
        pipe = client.pipeline(transaction=False)
        for thread_id in thread_ids:
            key = self._presence_key(thread_id)
            pipe.zscore(key, self.process_id)
            pipe.zadd(key, {self.process_id: until})
            pipe.pexpire(key, ttl_ms)
            pipe.exists(self.store.keys.thread(thread_id))
        with unavailable_errors(client, "socket presence"):
            rows = pipe.execute()
        return [(bool(rows[4 * i + 3]), rows[4 * i] is not None) for i in range(len(thread_ids))]

    def _current_epoch(self) -> bytes | None:
        """Redis の中身の世代 (無ければ新しく書く)。"""
        import uuid

        client = self.store.client
        with unavailable_errors(client, "redis epoch"):
            pipe = client.pipeline(transaction=False)
            pipe.set(self._epoch_key, uuid.uuid4().hex, nx=True)
            pipe.get(self._epoch_key)
            return pipe.execute()[1]

    def _notify_gone(self, thread_ids: list[str], stored: list[tuple[bool, bool]]) -> None:
        """ソケットのあるスレッドが Redis から消えていれば ``on_gone`` で知らせる。

        Redis の世代が変わった (中身なしで再起動した) ときは、再起動の前から開いていたスレッド (在席の記録も
        消えていたもの) はすべて古いので、同じ id のスレッドが新しく作られていても知らせる (``store_reset``)。
        再起動の後に開き直したスレッド (在席の記録がある) には知らせない。
        """
        epoch = self._current_epoch()
        reset = self._epoch is not None and epoch != self._epoch
        self._epoch = epoch
        if self._on_gone is None:
            return
        reason = "store_reset" if reset else "deleted"
        for thread_id, (exists, recorded) in zip(thread_ids, stored, strict=True):
            if not exists or (reset and not recorded):
                self._on_gone(thread_id, reason)

    def present(self, thread_id: str) -> None:
        """このプロセスにスレッドのソケットがある (他のプロセスの切断タイムアウトがランを止めないように)。"""
        with self._lock:
            self._present.add(thread_id)
        try:
            self._mark_present([thread_id])
        except StoreUnavailable as exc:
            logger.warning("socket presence not recorded: %s", exc)

    def absent(self, thread_id: str) -> None:
        """このプロセスにスレッドのソケットが無くなった。"""
        with self._lock:
            self._present.discard(thread_id)
        try:
            self.store.client.zrem(self._presence_key(thread_id), self.process_id)
        except Exception as exc:  # 届かなければ期限で消える
            logger.debug("socket presence not removed: %s", type(exc).__name__)

    def others_present(self, thread_id: str) -> bool:
        """他のプロセスにスレッドのソケットがあれば真 (Redis に届かなければ偽: ふつうの切断タイムアウトにする)。"""
        try:
            members = self.store.client.zrangebyscore(self._presence_key(thread_id), int(time.time() * 1000), "+inf")
        except Exception:
            return False
        return any(m.decode() != self.process_id for m in members)

    # ------------------------------------------------------------ 共有の上限

    def allow_event(self, principal: str) -> bool | None:
        """共有のレート制限。Redis に届かなければ ``None`` (呼ぶ側がプロセスの中の制限で決める)。"""
        try:
            return self.rate_limiter.allow(principal)
        except StoreUnavailable:
            return None


class SharedRateLimit:
    """全プロセスで共有するレート制限 (``allow(principal)`` はプロセスの中の ``RateLimiter`` と同じ形)。

    Redis に届かない間は、プロセスの中の制限 ``local`` で決める (イベントを全部断りはしない: 書き込みが要るものは
    どのみち ``store_unavailable`` で断られる)。
    """

    def __init__(self, cluster: ClusterRuntime, local: Any) -> None:
        """共有の制限と、Redis に届かないときの代わりを受け取る。"""
        self.cluster = cluster
        self.local = local

    def allow(self, principal: str) -> bool:
        """1 件を消費できれば真。"""
        shared = self.cluster.allow_event(principal)
        return self.local.allow(principal) if shared is None else shared
