"""設定からストアを開く唯一の入口 :func:`open_store`。"""

from __future__ import annotations

from typing import Any

from llm_router.store.base import LogLimits, Store
from llm_router.store.errors import StoreConfigurationError

BACKENDS = ("sqlite", "memory", "redis")


def log_limits(config: Any) -> LogLimits:
    """アプリの設定 (``AppConfig``) からイベントログの上限を作る。

    件数・経過秒・バイト数は ``server.event_log_max_events`` / ``event_log_max_age_s`` /
    ``event_log_max_bytes`` (0 は上限なし)。
    """
    server = config.server
    max_bytes = server.event_log_max_bytes
    return LogLimits(
        max_events=int(server.event_log_max_events) if server.event_log_max_events else None,
        max_bytes=int(max_bytes) if max_bytes else None,
        max_age_s=float(server.event_log_max_age_s) if server.event_log_max_age_s else None,
    )


def open_store(settings: Any) -> Store:
    """``store.backend`` のストアを開く。

    Args:
        settings: アプリの ``Settings`` (``settings.config.store`` と ``settings.config.server`` を読む)。

    Raises:
        StoreConfigurationError: 未知のバックエンド、不正な値、redis で ``LLM_ROUTER_REDIS_URL`` が無いとき (欄を名指しする)。
        StoreUnavailable: ファイルを開けない・スキーマを用意できないとき (パスを名指しする)。
    """
    config = settings.config
    store = config.store
    backend = str(store.backend)
    if backend not in BACKENDS:
        raise StoreConfigurationError(f"store.backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    if not store.run_lease_s or float(store.run_lease_s) <= 0:
        raise StoreConfigurationError(f"store.run_lease_s: expected a positive number, got {store.run_lease_s!r}")
    limits = log_limits(config)
    if backend == "memory":
        from llm_router.store.memory import MemoryStore

        return MemoryStore(limits)
    if backend == "redis":
        from llm_router.store.redis import open_redis_store

        return open_redis_store(settings, limits)
    from llm_router.store.sqlite import SqliteStore

    if not str(store.path):
        raise StoreConfigurationError("store.path: expected a file path for the sqlite backend")
    if str(store.synchronous).upper() not in ("NORMAL", "FULL"):
        raise StoreConfigurationError(f"store.synchronous: expected NORMAL or FULL, got {store.synchronous!r}")
    if int(store.busy_timeout_ms) < 0:
        raise StoreConfigurationError(f"store.busy_timeout_ms: expected >= 0, got {store.busy_timeout_ms!r}")
    return SqliteStore(
        store.path, limits, busy_timeout_ms=int(store.busy_timeout_ms), synchronous=str(store.synchronous)
    )
