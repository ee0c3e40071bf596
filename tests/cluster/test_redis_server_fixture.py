"""テスト用の redis-server の部品そのもののテスト: 起動・停止・同じポートでの再起動、無いときのスキップと失敗。"""

from __future__ import annotations

import pytest

from tests.support import redis_server as rs


def test_server_answers_ping_and_stops_and_restarts_on_the_same_port(redis_server, client):
    """起動した redis-server は PING に答え、止めると答えず、再起動すると同じポートでまた答える (中身は空)。"""
    assert client.ping()
    client.set("k", "v")
    port = redis_server.port
    redis_server.stop()
    assert not redis_server.is_running()
    redis_server.start()
    assert redis_server.port == port and redis_server.is_running()
    assert client.get("k") is None  # 何も保存しない (--save "" --appendonly no)
    assert not list(redis_server.workdir.glob("*.rdb")) and not list(redis_server.workdir.glob("*.aof"))


def test_missing_binary_skips_with_the_install_command(monkeypatch):
    """バイナリが無ければ apt-get install redis-server を理由にスキップする。"""
    monkeypatch.setattr(rs, "redis_server_binary", lambda: None)
    monkeypatch.delenv("LLM_ROUTER_REQUIRE_REDIS", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install redis-server"):
        rs.require_redis_server()


def test_missing_binary_fails_when_redis_is_required(monkeypatch):
    """``LLM_ROUTER_REQUIRE_REDIS=1`` ならスキップではなく失敗にする。"""
    monkeypatch.setattr(rs, "redis_server_binary", lambda: None)
    monkeypatch.setenv("LLM_ROUTER_REQUIRE_REDIS", "1")
    with pytest.raises(pytest.fail.Exception, match="LLM_ROUTER_REQUIRE_REDIS=1"):
        rs.require_redis_server()


def test_password_protected_server(redis_binary):
    """``password`` を付けると認証が要り、URL のパスワードで繋がる。"""
    import socket

    import redis

    with rs.RedisServer(redis_binary, password="s3cret-test-pw") as server:
        assert redis.Redis.from_url(server.url).ping()
        with socket.create_connection(("127.0.0.1", server.port), timeout=2) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            assert s.recv(64).startswith(b"-NOAUTH")
