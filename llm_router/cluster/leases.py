"""実行中のランの貸与 (lease): 1 スレッドに 1 ラン、全プロセスを通して。持ち主が死んだランの検出。

- 取得: ``SET <lease> <token> NX PX <ms>`` と、実行中のランの表 (``active_runs`` ハッシュ) への記入を
  1 つの Lua スクリプトで行う。``token`` は持ち主のプロセス id・ラン id・乱数の JSON。
- 更新: 今も自分の ``token`` のときだけ ``PEXPIRE`` (比較して延長)。解放: 自分のものだけ ``DEL`` (比較して削除)
  し、実行中の表からも消す。:class:`LeaseRenewer` が保持中の貸与をまとめて ``run_lease_s / 3`` ごとに更新する。
- 持ち主を失ったラン: 実行中の表にあるのに貸与のキーが期限切れで消えているもの。:meth:`RunLeases.claim_orphans`
  が原子的に「引き取り」(貸与を自分の名前で取り直す) し、呼び手がそのランを ``run_error`` ``interrupted``
  で終えて貸与を返す。引き取った側が途中で死んでも、表に残るので次の検査でまた拾われる。
  :class:`OrphanScanner` がこれを定期的に行う。新しいランの取得が持ち主を失ったランに出会ったときも、
  同じように引き取りを返す (:attr:`Lease.orphan`): 呼び手は先にそれを終えてから自分のランを始める。
- サーバー (``store.backend=redis``) が使うのは :meth:`RunLeases.holder` (コマンドの宛先を引く) だけ。ランのリース・
  終わりの記録・書き込みの fencing はストア (``llm_router.store.redis.RedisStore``) が同じキーで行う。
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_router.cluster.connection import Keys, unavailable_errors
from llm_router.core.schemas.errors import StoreUnavailable

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)

# KEYS: 1 貸与, 2 実行中の表。ARGV: 1 token, 2 px, 3 thread_id
# 返り値: {1} 取れた / {0, 持ち主の token} 他のランが実行中 / {2, 死んだランの token} 持ち主を失ったランを引き取った
ACQUIRE_LUA = """
local current = redis.call('GET', KEYS[1])
if current then return {0, current} end
local stale = redis.call('HGET', KEYS[2], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
if stale then return {2, stale} end
return {1}
"""

# KEYS: 貸与のキーの列。ARGV: 1 px, 2.. それぞれの token。返り値: それぞれ 1 (延長した) / 0 (もう自分のではない)
RENEW_LUA = """
local out = {}
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""

# KEYS: 1 貸与, 2 実行中の表。ARGV: 1 token, 2 thread_id。返り値: 1 自分の貸与を消した / 0 もう自分のではなかった
RELEASE_LUA = """
if redis.call('HGET', KEYS[2], ARGV[2]) == ARGV[1] then
  redis.call('HDEL', KEYS[2], ARGV[2])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""

# KEYS: 1 貸与, 2 実行中の表。ARGV: 1 死んだランの token, 2 新しい token, 3 px, 4 thread_id。返り値: 1 引き取った / 0
CLAIM_LUA = """
if redis.call('HGET', KEYS[2], ARGV[4]) ~= ARGV[1] then return 0 end
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class LeaseHolder:
    """貸与の中身: 持ち主のプロセス id とラン id。"""

    process_id: str
    run_id: str
    token: str

    @classmethod
    def parse(cls, token: bytes | str) -> LeaseHolder:
        """``token`` (JSON) から読む。"""
        text = token.decode() if isinstance(token, bytes) else token
        data = json.loads(text)
        return cls(process_id=data["process"], run_id=data["run_id"], token=text)


@dataclass(frozen=True)
class Lease:
    """このプロセスが持つ 1 つの貸与。

    Attributes:
        orphan: 取得のときに引き取った、持ち主を失ったラン (あれば)。呼び手はそれを ``interrupted`` で終える。
    """

    thread_id: str
    run_id: str
    process_id: str
    token: str
    orphan: LeaseHolder | None = None


class RunInProgress(Exception):
    """スレッドで別のランが実行中 (プロトコルの ``run_in_progress``)。``holder`` がその持ち主。"""

    code = "run_in_progress"

    def __init__(self, thread_id: str, holder: LeaseHolder) -> None:
        """スレッドと今の持ち主を受け取る。"""
        super().__init__(f"thread {thread_id!r} already has a run in progress ({holder.run_id})")
        self.thread_id = thread_id
        self.holder = holder


class RunLeases:
    """ランの貸与の操作 (全スレッド分)。

    Args:
        client: redis-py のクライアント。
        process_id: このプロセスの id (:func:`llm_router.cluster.connection.new_process_id`)。
        lease_s: 貸与の長さ (``store.run_lease_s``)。
        keys: キーの名前。
    """

    def __init__(self, client: redis.Redis, process_id: str, lease_s: float, keys: Keys | None = None) -> None:
        """スクリプトを登録する。"""
        if lease_s <= 0:
            raise ValueError("store.run_lease_s must be > 0")
        self.client = client
        self.process_id = process_id
        self.lease_s = float(lease_s)
        self.lease_ms = max(1, int(lease_s * 1000))
        self.keys = keys or Keys()
        self._acquire = client.register_script(ACQUIRE_LUA)
        self._renew = client.register_script(RENEW_LUA)
        self._release = client.register_script(RELEASE_LUA)
        self._claim = client.register_script(CLAIM_LUA)

    def _token(self, run_id: str) -> str:
        """新しい ``token`` (持ち主・ラン・乱数)。"""
        return json.dumps({"process": self.process_id, "run_id": run_id, "nonce": uuid.uuid4().hex[:12]})

    def acquire(self, thread_id: str, run_id: str) -> Lease:
        """スレッドでランを始める権利を取る。

        Raises:
            RunInProgress: 別のラン (どのプロセスのものでも) が貸与を持っているとき。
            StoreUnavailable: Redis に届かないとき。
        """
        token = self._token(run_id)
        with unavailable_errors(self.client, "run lease acquire"):
            result = self._acquire(
                keys=[self.keys.lease(thread_id), self.keys.active_runs], args=[token, self.lease_ms, thread_id]
            )
        status = int(result[0])
        if status == 0:
            raise RunInProgress(thread_id, LeaseHolder.parse(result[1]))
        orphan = LeaseHolder.parse(result[1]) if status == 2 else None
        return Lease(thread_id, run_id, self.process_id, token, orphan)

    def renew(self, *leases: Lease) -> list[bool]:
        """貸与を ``run_lease_s`` だけ延ばす。それぞれ、今も自分のものだったかを返す。"""
        if not leases:
            return []
        with unavailable_errors(self.client, "run lease renew"):
            result = self._renew(
                keys=[self.keys.lease(x.thread_id) for x in leases], args=[self.lease_ms, *(x.token for x in leases)]
            )
        return [bool(int(v)) for v in result]

    def release(self, lease: Lease) -> bool:
        """貸与を返し、実行中の表から消す (自分のものだけ)。自分のものだったら真。"""
        with unavailable_errors(self.client, "run lease release"):
            return bool(
                int(
                    self._release(
                        keys=[self.keys.lease(lease.thread_id), self.keys.active_runs],
                        args=[lease.token, lease.thread_id],
                    )
                )
            )

    def holder(self, thread_id: str) -> LeaseHolder | None:
        """今の持ち主 (いなければ ``None``)。"""
        with unavailable_errors(self.client, "run lease read"):
            token = self.client.get(self.keys.lease(thread_id))
        return LeaseHolder.parse(token) if token else None

    def active_runs(self) -> dict[str, LeaseHolder]:
        """実行中とされているラン (thread_id -> 持ち主)。"""
        with unavailable_errors(self.client, "active runs read"):
            raw = self.client.hgetall(self.keys.active_runs)
        return {k.decode(): LeaseHolder.parse(v) for k, v in raw.items()}

    def claim_orphans(self) -> list[Lease]:
        """持ち主を失ったラン (表にあるのに貸与が切れたもの) を引き取る。

        返した各 :class:`Lease` の ``orphan`` が死んだラン。呼び手はそれを ``interrupted`` で終え
        (イベントはこの貸与で fencing して書く)、:meth:`release` する。
        """
        out = []
        for thread_id, holder in self.active_runs().items():
            token = self._token(holder.run_id)
            with unavailable_errors(self.client, "orphaned run claim"):
                ok = self._claim(
                    keys=[self.keys.lease(thread_id), self.keys.active_runs],
                    args=[holder.token, token, self.lease_ms, thread_id],
                )
            if int(ok):
                out.append(Lease(thread_id, holder.run_id, self.process_id, token, holder))
        return out


class _Periodic:
    """間隔ごとに ``tick`` を呼ぶ背景スレッド (eventlet の monkey-patch の下では緑スレッドになる)。"""

    def __init__(self, name: str, interval_s: float, tick: Callable[[], Any]) -> None:
        """まだ起動しない。"""
        self.interval_s = interval_s
        self._tick = tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def start(self) -> None:
        """起動する。"""
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """止めて、終わるのを待つ。"""
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _loop(self) -> None:
        """止められるまで ``tick`` を繰り返す。Redis に届かない間は警告を出して続ける。"""
        while not self._stop.wait(self.interval_s):
            try:
                self._tick()
            except StoreUnavailable as exc:
                log.warning("%s: %s", self._thread.name, exc)
            except Exception:
                log.exception("%s failed", self._thread.name)


class LeaseRenewer(_Periodic):
    """保持中の貸与を ``run_lease_s / 3`` ごとにまとめて更新する。失った貸与は ``on_lost(lease)`` で知らせる。

    ``on_lost`` は更新係のスレッドで呼ばれる (そこでランを止める合図を出す。長い処理はしない)。
    """

    def __init__(self, leases: RunLeases, on_lost: Callable[[Lease], Any], interval_s: float | None = None) -> None:
        """まだ起動しない。"""
        super().__init__("lease-renewer", interval_s or leases.lease_s / 3, self.renew_now)
        self.leases = leases
        self.on_lost = on_lost
        self._held: dict[str, Lease] = {}
        self._lock = threading.Lock()

    def hold(self, lease: Lease) -> None:
        """更新の対象に加える。"""
        with self._lock:
            self._held[lease.token] = lease

    def drop(self, lease: Lease) -> None:
        """更新の対象から外す (解放はしない)。"""
        with self._lock:
            self._held.pop(lease.token, None)

    def held(self) -> list[Lease]:
        """更新の対象の一覧。"""
        with self._lock:
            return list(self._held.values())

    def renew_now(self) -> None:
        """今すぐ 1 回更新する。失ったものは外して ``on_lost`` を呼ぶ。"""
        held = self.held()
        if not held:
            return
        for lease, ok in zip(held, self.leases.renew(*held), strict=True):
            if not ok:
                self.drop(lease)
                self.on_lost(lease)


class OrphanScanner(_Periodic):
    """持ち主を失ったランを定期的に引き取り、``on_orphan(lease)`` に渡す。

    ``on_orphan`` はそのランを ``interrupted`` で終え、``leases.release(lease)`` すること
    (例外で終わったら貸与はそのまま期限切れになり、次の検査で拾い直される)。
    """

    def __init__(self, leases: RunLeases, on_orphan: Callable[[Lease], Any], interval_s: float | None = None) -> None:
        """まだ起動しない。間隔の既定は ``run_lease_s / 2`` (持ち主の死から 2 期間以内に気づくため)。"""
        super().__init__("orphan-scanner", interval_s or leases.lease_s / 2, self.scan_now)
        self.leases = leases
        self.on_orphan = on_orphan

    def scan_now(self) -> list[Lease]:
        """今すぐ 1 回探して、引き取ったものを ``on_orphan`` に渡す。"""
        claimed = self.leases.claim_orphans()
        for lease in claimed:
            self.on_orphan(lease)
        return claimed
