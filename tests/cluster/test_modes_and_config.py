"""eventlet の monkey-patch の下で動くこと、設定 (store.run_lease_s など) と .env の LLM_ROUTER_REDIS_URL。"""

from __future__ import annotations

import json

from llm_router.cluster.connection import redact_url
from llm_router.config.settings import load_settings
from tests.cluster.conftest import new_thread


def test_building_blocks_work_under_eventlet_monkey_patching(spawn_worker, keys):
    """eventlet で monkey-patch したプロセスで、ストアへの書き込み (RedisStore.commit)・リースの更新係 (緑スレッド)・コマンドの往復・ストリームの追従 (どれも ClusterRuntime の部品) が動く。"""
    proc = spawn_worker("eventlet", keys.prefix)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["patched"].startswith("eventlet")
    assert result["seqs"] == [1, 2, 3, 4, 5]
    assert result["reply"] == {"ok": True, "kind": "cancel"}
    assert result["refused"] >= 10 and result["still_held"] is True  # 1.8 s (貸与 0.6 s の 3 期間) 持ち続けた
    assert result["followed"] == [3, 4, 5, 6, 7, 8, 9, 10]  # 追従 (2 の後から、別の接続で書いた 5 件まで)


def test_store_config_defaults_and_overrides():
    """``store.run_lease_s`` は既定 10 秒で、コマンドラインと同じ形で上書きできる。"""
    default = load_settings(env_file=None, environ={}).config.store
    assert default.run_lease_s == 10 and default.redis.key_prefix == "llm_router"
    cfg = load_settings(["store.run_lease_s=0.5", "store.redis.key_prefix=other"], env_file=None, environ={}).config
    assert cfg.store.run_lease_s == 0.5 and cfg.store.redis.key_prefix == "other"


def test_redis_url_is_a_secret_read_from_dotenv(tmp_path):
    """URL は .env から読み、環境変数が優先され、表示 (repr・公開用の設定) には出ず、パスワードは伏せ字の対象になる。"""
    env = tmp_path / ".env"
    env.write_text("LLM_ROUTER_REDIS_URL=redis://:p%40ss-from-dotenv@10.0.0.5:6380/2\n", encoding="utf-8")
    settings = load_settings(env_file=env, environ={})
    assert settings.redis_url == "redis://:p%40ss-from-dotenv@10.0.0.5:6380/2"
    assert "p%40ss-from-dotenv" in settings.secrets.all_values() and "p@ss-from-dotenv" in settings.secrets.all_values()
    assert "ss-from-dotenv" not in repr(settings.secrets) and "ss-from-dotenv" not in json.dumps(settings.public_dict())
    overridden = load_settings(env_file=env, environ={"LLM_ROUTER_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert overridden.redis_url == "redis://127.0.0.1:1/0"


def test_redact_url_hides_credentials():
    """表示用の URL からユーザー名とパスワードが消える。"""
    assert redact_url("redis://user:hunter2@example.com:6380/1") == "redis://***@example.com:6380/1"
    assert redact_url("rediss://:hunter2@h/0") == "rediss://***@h/0"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert "hunter2" not in redact_url("redis://:hunter2@[::1")


def test_cluster_runtime_built_from_settings_talks_to_redis(redis_server, tmp_path):
    """設定と .env の URL から開いたストアとサーバーの部品一式 (``ClusterRuntime``) が、設定の値でその Redis と動く。"""
    from llm_router.realtime.cluster import ClusterRuntime
    from llm_router.store.redis import open_redis_store

    env = tmp_path / ".env"
    env.write_text(f"LLM_ROUTER_REDIS_URL={redis_server.url}\n", encoding="utf-8")
    overrides = [
        "store.run_lease_s=2",
        "server.rate_limit_per_minute=2",
        "store.redis.orphan_scan_interval_s=0.3",
        "store.redis.command_timeout_s=1.5",
        "store.redis.command_poll_s=0.25",
    ]
    settings = load_settings(overrides, env_file=env, environ={})
    store = open_redis_store(settings)
    runtime = ClusterRuntime(settings, store, lambda kind, payload: {"ok": True}, print, print, print)
    try:
        new_thread(store, "t")
        assert [e["seq"] for e in store.commit("t", [{"type": "x"}])] == [1]
        assert store.client.exists("llm_router:t:t:events") == 1
        assert runtime.acquire("t", "r")
        assert runtime.leases.holder("t").process_id == runtime.process_id
        assert 1000 < store.client.pttl("llm_router:t:t:lease") <= 2000  # store.run_lease_s
        assert [runtime.rate_limiter.allow("p") for _ in range(3)] == [True, True, False]
        assert runtime.scan_interval_s == 0.3 and runtime.lease_s == 2
        assert (runtime.bus.default_timeout_s, runtime.bus.poll_s) == (1.5, 0.25)
        assert runtime.follower.block_ms == 250
    finally:
        runtime.stop()
        store.close()
