"""ストアのテストの部品: 3 つのバックエンド (memory / sqlite / redis) を同じ契約テストに通すための工場と、時計と、スレッドの見本。

redis は本物の ``redis-server`` (セッションで 1 つ、テストごとに別のキーの接頭辞) を使う。無ければその分だけスキップし、
``LLM_ROUTER_REQUIRE_REDIS=1`` なら失敗させる (``tests/support/redis_fixtures.py``)。
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_router.core.schemas.common import Message, ToolCall
from llm_router.core.schemas.thread_record import HistoryEntry, StoredThread
from llm_router.store.base import LogLimits
from llm_router.store.memory import MemoryStore
from llm_router.store.sqlite import SqliteStore
from tests.support.redis_fixtures import TEST_REDIS, redis_binary, shared_redis_server

__all__ = ["redis_binary", "shared_redis_server"]


class FakeClock:
    """進めたいときだけ進む壁時計 (経過時間の上限を眠らずに試すため)。"""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        """開始時刻を受け取る。"""
        self.now = start

    def __call__(self) -> float:
        """いまの時刻。"""
        return self.now

    def advance(self, seconds: float) -> None:
        """時計を進める。"""
        self.now += seconds


def sample_thread(thread_id: str = "thr_1", owner: str = "alice", created_at: float = 1_800_000_000.0) -> StoredThread:
    """履歴の無いスレッドの見本。"""
    return StoredThread(thread_id, owner, model="openai/gpt-4.1-mini", system="be brief", created_at=created_at)


def entry(text: str, run_id: str = "run_1", message_id: str | None = None, role: str = "user") -> HistoryEntry:
    """履歴の 1 件の見本。"""
    message = Message.user(text) if role == "user" else Message.assistant(text, [ToolCall("c1", "calc", {"x": 1})])
    return HistoryEntry(message, message_id or f"msg_{text}", run_id, 1_800_000_000.0)


def event(kind: str = "text_delta", run_id: str | None = "run_1", **fields: object) -> dict:
    """封筒の ``seq`` を持たないイベントの見本。"""
    return {"type": kind, "thread_id": "thr_1", "run_id": run_id, "ts": 0.0, **fields}


StoreFactory = Callable[..., object]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """バックエンドごとの工場 ``make_store(limits=..., clock=...)``。

    sqlite は呼ぶたびに同じファイルを、redis は同じ接頭辞のキーを、新しい接続で開き直す。
    """
    opened: list[object] = []
    memory: dict[str, MemoryStore] = {}
    redis_url = request.getfixturevalue("shared_redis_server").url if request.param == "redis" else ""
    prefix = f"s{uuid.uuid4().hex[:10]}"

    def factory(limits: LogLimits | None = None, clock: Callable[[], float] | None = None) -> object:
        """ストアを開く (memory は 1 つを使い回す: 再起動の試験は sqlite だけで意味を持つ)。"""
        kwargs = {"clock": clock} if clock is not None else {}
        if request.param == "memory":
            if "store" not in memory:
                memory["store"] = MemoryStore(limits, **kwargs)
            store = memory["store"]
        elif request.param == "redis":
            from llm_router.cluster.connection import Keys, connect
            from llm_router.store.redis import RedisStore

            store = RedisStore(connect(redis_url, TEST_REDIS), limits, Keys(prefix), **kwargs)
        else:
            store = SqliteStore(tmp_path / "data" / "store.sqlite3", limits, **kwargs)
        opened.append(store)
        return store

    factory.backend = request.param  # type: ignore[attr-defined]
    yield factory
    for store in opened:
        try:
            store.close()  # type: ignore[attr-defined]
        except Exception:
            pass
