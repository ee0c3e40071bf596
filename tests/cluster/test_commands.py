"""プロセス間のコマンド: 持ち主への往復、持ち主の答えがそのまま返ること、持ち主がいない・死んだときの期限切れ。

リースから持ち主を引いて送るのはサーバーと同じ ``ClusterRuntime.forward``。
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from llm_router.cluster.commands import CommandBus, CommandTimeout
from llm_router.realtime.protocol_errors import ProtocolError
from tests.cluster.conftest import new_thread


@pytest.fixture
def owner_and_peer(make_client, keys):
    """持ち主のバス (ハンドラはランの答えを真似る) と、別のプロセスの代わりのバス。受けたコマンドの記録も返す。"""
    received: list[tuple[str, dict]] = []
    awaiting = {"call-1"}

    def handler(kind: str, payload: dict) -> dict:
        """tool_result / cancel を、実行中のランのように答える。"""
        received.append((kind, payload))
        if kind == "tool_result":
            if payload["tool_call_id"] not in awaiting:
                return {"ok": False, "error": {"code": "not_awaiting", "message": "no such pending call"}}
            awaiting.discard(payload["tool_call_id"])
            return {"ok": True}
        if kind == "cancel":
            return {"ok": True, "cancelled": payload["run_id"] == "run-1", "mode": payload.get("mode")}
        if kind == "boom":
            raise RuntimeError("secret stack detail")
        return {"ok": False, "error": {"code": "invalid_payload", "message": f"unknown command {kind}"}}

    owner = CommandBus(make_client(), make_client(socket_timeout_s=10), "proc-owner", handler, poll_s=0.2, keys=keys)
    peer = CommandBus(make_client(), make_client(socket_timeout_s=10), "proc-peer", lambda k, p: {}, keys=keys)
    owner.start()
    try:
        yield owner, peer, received
    finally:
        owner.stop()


def test_commands_reach_the_run_owner_and_its_answers_come_back(owner_and_peer, store, make_runtime):
    """別のプロセスからの tool_result と cancel がリースの持ち主に届き、持ち主の答え (not_awaiting など) が返る。
    ランの無いスレッドには送らない (``None``: 呼ぶ側が自分で答える)。"""
    _owner, _peer, received = owner_and_peer
    new_thread(store, "t")
    new_thread(store, "no-run")
    assert store.acquire_run_lease("t", "run-1", "proc-owner", 5)
    peer = make_runtime(5)
    ok = peer.forward("t", "tool_result", {"tool_call_id": "call-1", "result": {"v": 1}})
    assert ok == {"ok": True}
    again = peer.forward("t", "tool_result", {"tool_call_id": "call-1", "result": {"v": 1}})
    assert again["error"]["code"] == "not_awaiting"
    cancel = peer.forward("t", "cancel", {"run_id": "run-1", "mode": "after_step"})
    assert cancel == {"ok": True, "cancelled": True, "mode": "after_step"}
    assert received[0] == ("tool_result", {"tool_call_id": "call-1", "result": {"v": 1}, "forwarded": True})
    assert peer.forward("no-run", "cancel", {"mode": "now"}) is None


def test_a_failing_handler_answers_internal_without_details(owner_and_peer):
    """ハンドラの例外は internal の答えになり、その文言は送り手に届かない。"""
    _owner, peer, _received = owner_and_peer
    reply = peer.send("proc-owner", "boom", {})
    assert reply["ok"] is False and reply["error"]["code"] == "internal"
    assert "secret stack detail" not in str(reply)


def test_a_command_to_oneself_is_handled_in_place(make_client, keys):
    """自分宛てのコマンドは Redis を通さずにその場で処理される (受信を始めていなくても)。"""
    bus = CommandBus(make_client(), make_client(), "me", lambda k, p: {"ok": True, "k": k}, keys=keys)
    assert bus.send("me", "rewind", {}) == {"ok": True, "k": "rewind"}


def test_an_expired_command_is_dropped_by_the_owner(make_client, keys):
    """期限切れのコマンドは、遅れて起動した持ち主に処理されない (古い cancel が後から効かない)。"""
    calls = []
    owner = CommandBus(
        make_client(),
        make_client(socket_timeout_s=10),
        "late",
        lambda k, p: calls.append(k) or {"ok": True},
        poll_s=0.2,
        keys=keys,
    )
    peer = CommandBus(make_client(), make_client(socket_timeout_s=10), "peer", lambda k, p: {}, keys=keys)
    with pytest.raises(CommandTimeout):
        peer.send("late", "cancel", {"mode": "now"}, timeout_s=0.2)
    owner.start()
    try:
        assert peer.send("late", "tool_result", {}, timeout_s=5) == {"ok": True}
    finally:
        owner.stop()
    assert calls == ["tool_result"]


def test_a_command_to_a_killed_owner_times_out(spawn_worker, client, make_runtime, keys):
    """持ち主のプロセス (本物のサブプロセス) との往復が通り、SIGKILL の後は期限
    (``store.redis.command_timeout_s``) で ``internal`` になる。"""
    proc = spawn_worker("hold", keys.prefix, "t", "run-1", "5")
    line = proc.stdout.readline()
    assert line.startswith("held "), proc.stderr.read()
    owner_id = line.split()[1]
    peer = make_runtime(5)
    reply = peer.forward("t", "cancel", {"mode": "now"})
    assert reply == {"ok": True, "kind": "cancel", "owner": owner_id, "echo": {"mode": "now", "forwarded": True}}
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    started = time.monotonic()
    with pytest.raises(ProtocolError, match="did not answer within 2 s") as info:
        peer.forward("t", "cancel", {"mode": "now"})
    assert info.value.code == "internal"
    assert time.monotonic() - started >= peer.command_timeout_s
    # 死んだ持ち主の列は期限で消える (溜まり続けない)
    assert 0 < client.pttl(keys.commands(owner_id)) <= 3000


def test_many_concurrent_commands_get_their_own_replies(owner_and_peer, make_client, keys):
    """複数の送り手が同時に送っても、それぞれの答えは自分のところへ返る (request_id ごとの返事の列)。"""
    _owner, _peer, _received = owner_and_peer
    replies: dict[int, dict] = {}

    def send(i: int) -> None:
        """別々のバスから送る。"""
        bus = CommandBus(make_client(), make_client(socket_timeout_s=10), f"p{i}", lambda k, p: {}, keys=keys)
        replies[i] = bus.send("proc-owner", "cancel", {"run_id": "run-1" if i % 2 else "other", "mode": str(i)})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert replies == {i: {"ok": True, "cancelled": bool(i % 2), "mode": str(i)} for i in range(6)}
