"""設定 (``store.*``、``server.*``、.env の ``LLM_ROUTER_REDIS_URL``) から Redis の部品一式を組み立てる。"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_router.cluster.commands import CommandBus, Handler
from llm_router.cluster.connection import Keys, connect, new_process_id
from llm_router.cluster.event_stream import RedisEventLog
from llm_router.cluster.follower import StreamFollower
from llm_router.cluster.leases import Lease, LeaseRenewer, OrphanScanner, RunLeases
from llm_router.cluster.limits import SharedRateLimiter
from llm_router.cluster.threads import RedisThreadRecords

if TYPE_CHECKING:
    import redis

    from llm_router.config.schema import AppConfig, RedisStoreConfig


@dataclass
class ClusterParts:
    """1 プロセス分の Redis の部品。"""

    process_id: str
    client: redis.Redis
    blocking_client: redis.Redis
    keys: Keys
    events: RedisEventLog
    threads: RedisThreadRecords
    leases: RunLeases
    rate_limiter: SharedRateLimiter
    redis_config: RedisStoreConfig

    def command_bus(self, handler: Handler) -> CommandBus:
        """このプロセスのコマンドの受信と送信 (``store.redis.command_timeout_s`` / ``command_poll_s``)。"""
        cfg = self.redis_config
        return CommandBus(
            self.client,
            self.blocking_client,
            self.process_id,
            handler,
            cfg.command_timeout_s,
            cfg.command_poll_s,
            self.keys,
        )

    def renewer(self, on_lost: Callable[[Lease], Any]) -> LeaseRenewer:
        """保持中の貸与の更新係 (``store.run_lease_s / 3`` ごと)。"""
        return LeaseRenewer(self.leases, on_lost)

    def orphan_scanner(self, on_orphan: Callable[[Lease], Any]) -> OrphanScanner:
        """持ち主を失ったランの検査係 (``store.redis.orphan_scan_interval_s``、0 以下なら ``run_lease_s / 2``)。"""
        interval = self.redis_config.orphan_scan_interval_s
        return OrphanScanner(self.leases, on_orphan, interval if interval > 0 else None)

    def follower(self, deliver: Callable[[str, list[dict[str, Any]]], Any]) -> StreamFollower:
        """他のプロセスのランのイベントの追従 (``store.redis.command_poll_s`` ごとに待ちを区切る)。"""
        return StreamFollower(
            self.blocking_client, self.process_id, deliver, self.redis_config.command_poll_s, keys=self.keys
        )

    def close(self) -> None:
        """接続を閉じる。"""
        self.client.close()
        self.blocking_client.close()


def build_parts(config: AppConfig, redis_url: str | None, process_id: str | None = None) -> ClusterParts:
    """設定と URL から部品を作る (Redis にはまだ繋がない: 最初のコマンドで繋ぐ)。

    Raises:
        StoreUnavailable: URL が無いか不正なとき (パスワードは含めない)。
    """
    rcfg = config.store.redis
    keys = Keys(rcfg.key_prefix)
    client = connect(redis_url or "", rcfg)
    # BLPOP で待つ接続: 読み取りのタイムアウトを、いちばん長い待ち時間より長くする
    wait = max(rcfg.command_poll_s, rcfg.command_timeout_s) + rcfg.socket_timeout_s
    blocking = connect(redis_url or "", rcfg, socket_timeout_s=wait)
    pid = process_id or new_process_id()
    return ClusterParts(
        process_id=pid,
        client=client,
        blocking_client=blocking,
        keys=keys,
        events=RedisEventLog(client, config.server.event_log_max_events, config.server.event_log_max_age_s, keys),
        threads=RedisThreadRecords(client, keys),
        leases=RunLeases(client, pid, config.store.run_lease_s, keys),
        rate_limiter=SharedRateLimiter(client, config.server.rate_limit_per_minute, keys=keys),
        redis_config=rcfg,
    )
