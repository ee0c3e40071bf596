"""ランの貸与: 2 つのプロセスの間の排他、比較しての更新・解放、更新係、持ち主が殺されたときの検出と後始末。"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from llm_router.cluster.leases import LeaseRenewer, OrphanScanner, RunInProgress, RunLeases

LEASE_S = 0.5


def _wait(condition, timeout: float, what: str):
    """``condition()`` が真になるまでポーリングする (期限つき)。"""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_one_run_per_thread_between_two_processes(client, make_client, keys):
    """A が持つ間、B (別の id、別の接続) は run_in_progress で断られ、A の貸与を更新も解放もできない。"""
    a = RunLeases(client, "proc-a", 5, keys)
    b = RunLeases(make_client(), "proc-b", 5, keys)
    lease = a.acquire("t", "run-1")
    assert lease.orphan is None
    with pytest.raises(RunInProgress) as info:
        b.acquire("t", "run-2")
    assert info.value.holder.process_id == "proc-a" and info.value.holder.run_id == "run-1"
    assert info.value.code == "run_in_progress"
    forged = type(lease)("t", "run-1", "proc-b", lease.token.replace("proc-a", "proc-b"))
    assert b.renew(forged) == [False] and b.release(forged) is False
    assert a.holder("t").process_id == "proc-a"
    assert b.acquire("u", "run-3")  # 別のスレッドは別
    assert a.release(lease) is True and a.release(lease) is False
    assert b.holder("t") is None
    assert b.acquire("t", "run-2").run_id == "run-2"


def test_two_processes_racing_for_a_thread_get_exactly_one_lease(make_client, keys):
    """8 つのクライアントが同時に同じスレッドを取りにいくと、ちょうど 1 つだけが取れる。"""
    contenders = [RunLeases(make_client(), f"proc-{i}", 5, keys) for i in range(8)]
    barrier = threading.Barrier(len(contenders))
    won, lost = [], []

    def attempt(leases: RunLeases) -> None:
        """一斉に取りにいく。"""
        barrier.wait()
        try:
            won.append(leases.acquire("t", f"run-{leases.process_id}"))
        except RunInProgress:
            lost.append(leases.process_id)

    threads = [threading.Thread(target=attempt, args=(c,)) for c in contenders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(won) == 1 and len(lost) == 7
    assert contenders[0].holder("t").token == won[0].token


def test_the_renewer_keeps_a_lease_beyond_its_period_and_reports_a_lost_one(client, make_client, keys):
    """更新係は貸与を期限より長く保ち、奪われた貸与は on_lost で知らせて外す。"""
    leases = RunLeases(client, "proc-a", LEASE_S, keys)
    lost = []
    renewer = LeaseRenewer(leases, on_lost=lost.append)
    lease = leases.acquire("t", "run-1")
    renewer.hold(lease)
    renewer.start()
    try:
        start = time.monotonic()
        while time.monotonic() - start < 4 * LEASE_S:  # 4 期間のあいだ、ずっと持ち続けている
            holder = leases.holder("t")
            assert holder is not None and holder.token == lease.token
            time.sleep(0.02)
        client.delete(keys.lease("t"))  # 期限切れの代わりに消して、別のプロセスに取らせる
        other = RunLeases(make_client(), "proc-b", LEASE_S, keys).acquire("t", "run-2")
        _wait(lambda: lost, 3 * LEASE_S, "on_lost")
        assert lost == [lease] and renewer.held() == []
        assert leases.holder("t").token == other.token
    finally:
        renewer.stop()


def test_a_killed_owner_is_noticed_within_two_lease_periods_and_its_run_ended(spawn_worker, client, keys):
    """貸与を持つプロセスを SIGKILL すると、別のプロセスが 2 期間以内に引き取り、解放する。
    その後スレッドは新しいランを受け付ける。"""
    owner = spawn_worker("hold", keys.prefix, "t", "run-dead", str(LEASE_S))
    line = owner.stdout.readline()
    assert line.startswith("held "), owner.stderr.read()
    owner_id = line.split()[1]
    leases = RunLeases(client, "proc-survivor", LEASE_S, keys)
    # 生きている間は引き取れない (更新係が 2 期間を超えて保つ)
    start = time.monotonic()
    while time.monotonic() - start < 2 * LEASE_S:
        assert leases.claim_orphans() == []
        time.sleep(0.02)
    assert leases.holder("t").process_id == owner_id

    noticed = threading.Event()
    ended = []

    def end_orphan(lease) -> None:
        """死んだランを引き取った者として終える (引き取った貸与を返す)。"""
        ended.append((lease.orphan.process_id, lease.orphan.run_id, leases.release(lease)))
        noticed.set()

    scanner = OrphanScanner(leases, end_orphan, interval_s=LEASE_S / 4)
    scanner.start()
    try:
        killed_at = time.monotonic()
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        assert noticed.wait(10)
        elapsed = time.monotonic() - killed_at
    finally:
        scanner.stop()
    assert elapsed < 2 * LEASE_S, f"noticed after {elapsed:.3f} s"
    assert ended == [(owner_id, "run-dead", True)]
    assert leases.active_runs() == {} and leases.holder("t") is None
    assert leases.acquire("t", "run-next").orphan is None


def test_a_new_run_meeting_a_dead_owners_run_takes_it_over(client, make_client, keys):
    """貸与が切れたのに後始末されていないランがあると、次のランの取得がそれを引き取りとして返す。"""
    dead = RunLeases(make_client(), "proc-dead", LEASE_S, keys)
    dead.acquire("t", "run-dead")
    leases = RunLeases(client, "proc-b", LEASE_S, keys)

    def try_acquire():
        """貸与が切れるまで取りにいく。"""
        try:
            return leases.acquire("t", "run-new")
        except RunInProgress:
            return None

    lease = _wait(try_acquire, 5 * LEASE_S, "the dead lease to expire")
    assert lease.orphan is not None and lease.orphan.run_id == "run-dead" and lease.orphan.process_id == "proc-dead"
    assert leases.claim_orphans() == []  # もう自分が持っているので、他の検査は拾わない
    assert leases.active_runs()["t"].run_id == "run-new"
    # 死んだ持ち主が生き返っても、もう延ばせも返せもしない
    stale = type(lease)("t", "run-dead", "proc-dead", lease.orphan.token)
    assert dead.renew(stale) == [False] and dead.release(stale) is False
    assert leases.holder("t").token == lease.token
