"""スレッドとイベントログのストア (継ぎ目とバックエンド)。使い方と流れは README.md。"""

from llm_router.store.base import (
    ActiveRun,
    EventLog,
    HistoryChange,
    LogBounds,
    LogLimits,
    Store,
    ThreadPage,
    ThreadStore,
    ThreadSummary,
)
from llm_router.store.errors import StoreConfigurationError, StoreUnavailable, ThreadExists, UnknownThread
from llm_router.store.factory import open_store

__all__ = [
    "ActiveRun",
    "EventLog",
    "HistoryChange",
    "LogBounds",
    "LogLimits",
    "Store",
    "StoreConfigurationError",
    "StoreUnavailable",
    "ThreadExists",
    "ThreadPage",
    "ThreadStore",
    "ThreadSummary",
    "UnknownThread",
    "open_store",
]
