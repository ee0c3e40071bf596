"""設定 (``store.*``) からストアを開く ``open_store`` と、その誤りの名指し。"""

from __future__ import annotations

import pytest

from llm_router.config.settings import load_settings
from llm_router.store import StoreConfigurationError, StoreUnavailable, open_store
from llm_router.store.memory import MemoryStore
from llm_router.store.sqlite import SqliteStore
from tests.store.conftest import event, sample_thread


def settings(*overrides: str):
    """オーバーライド付きの設定 (開発者の .env は読まない)。"""
    return load_settings(list(overrides), env_file=None, environ={})


def test_defaults():
    """既定は sqlite、``data/llm_router.sqlite3``、リース 10 秒。"""
    store = settings().config.store
    assert (store.backend, store.path, store.run_lease_s) == ("sqlite", "data/llm_router.sqlite3", 10.0)
    assert store.synchronous == "NORMAL" and store.busy_timeout_ms > 0


def test_sqlite_backend_creates_the_file_with_limits_from_server_config(tmp_path):
    """sqlite は ``store.path`` にファイル (とフォルダ) を作り、ログの上限は ``server.event_log_*`` から。"""
    path = tmp_path / "nested" / "db.sqlite3"
    store = open_store(
        settings(f"store.path={path}", "server.event_log_max_events=2", "server.event_log_max_bytes=100000")
    )
    try:
        assert isinstance(store, SqliteStore) and path.is_file()
        assert store.limits.max_events == 2 and store.limits.max_bytes == 100000
        store.create_thread(sample_thread())
        for _ in range(3):
            store.append("thr_1", [event()])
        assert [e["seq"] for e in store.after("thr_1", 0)] == [2, 3]
    finally:
        store.close()


def test_memory_backend():
    """``store.backend=memory`` はメモリのストア (バイト数の上限 0 は上限なし)。"""
    store = open_store(settings("store.backend=memory", "server.event_log_max_bytes=0"))
    assert isinstance(store, MemoryStore) and store.limits.max_bytes is None


def test_redis_without_url_names_the_variable():
    """redis で ``LLM_ROUTER_REDIS_URL`` が無ければ、その変数と ``store.backend`` を名指しした設定の誤り。"""
    with pytest.raises(StoreConfigurationError, match=r"store\.backend.*LLM_ROUTER_REDIS_URL"):
        open_store(settings("store.backend=redis"))


def test_redis_backend_uses_the_url_from_the_environment(shared_redis_server):
    """``store.backend=redis`` は環境 (.env) の URL の Redis を、``store.redis.key_prefix`` と
    ``server.event_log_*`` の上限で開く。"""
    from llm_router.store.redis import RedisStore

    s = load_settings(
        ["store.backend=redis", "store.redis.key_prefix=factory", "server.event_log_max_events=2"],
        env_file=None,
        environ={"LLM_ROUTER_REDIS_URL": shared_redis_server.url},
    )
    store = open_store(s)
    try:
        assert isinstance(store, RedisStore) and store.keys.prefix == "factory" and store.limits.max_events == 2
        store.create_thread(sample_thread("thr_factory"))
        for _ in range(3):
            store.append("thr_factory", [event()])
        assert [e["seq"] for e in store.after("thr_factory", 0)] == [2, 3]
        assert store.client.exists("factory:t:thr_factory:events")
    finally:
        store.delete_thread("thr_factory")
        store.close()


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ("store.backend=postgres", "store.backend"),
        ("store.synchronous=OFF", "store.synchronous"),
        ("store.run_lease_s=0", "store.run_lease_s"),
        ("store.path=", "store.path"),
    ],
)
def test_bad_values_name_the_field(override, field, tmp_path):
    """不正な値は欄を名指しして断り、ファイルを作らない。"""
    overrides = [override] if override.startswith("store.path") else [override, f"store.path={tmp_path}/x.sqlite3"]
    with pytest.raises(StoreConfigurationError, match=field.replace(".", r"\.")):
        open_store(settings(*overrides))
    assert not (tmp_path / "x.sqlite3").exists()


def test_unopenable_path_names_the_path(tmp_path):
    """開けない場所 (親がファイル) はパスを名指しした StoreUnavailable。"""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreUnavailable, match=str(blocker)):
        open_store(settings(f"store.path={blocker}/db.sqlite3"))
