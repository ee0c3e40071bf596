"""設定 (``store.*``、``server.*``、.env の ``LLM_ROUTER_REDIS_URL``) から Redis の部品一式を組み立てる。"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_router.cluster.connection import Keys, connect, new_process_id
from llm_router.cluster.event_stream import RedisEventLog
from llm_router.cluster.leases import RunLeases
from llm_router.cluster.limits import SharedRateLimiter
from llm_router.cluster.threads import RedisThreadRecords

if TYPE_CHECKING:
    import redis

    from llm_router.config.schema import AppConfig


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
    )
