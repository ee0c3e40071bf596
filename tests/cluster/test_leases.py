"""ランのリース (サーバーの経路 ``ClusterRuntime``): 更新係が期限より長く保つこと、失ったリースの知らせ、
持ち主を失ったランに出会った新しいランがそれを先に閉じること。

1 スレッドに 1 ランの排他と期限切れの取り直しはストアの契約 (``tests/store/test_contract.py``)、持ち主の SIGKILL から
2 期間以内の ``interrupted`` は本物の 2 つのサーバー (``tests/scaleout/test_two_processes.py``) で確かめている。
"""

from __future__ import annotations

import threading
import time

from tests.cluster.conftest import new_thread

# 短いリース。更新係は lease/3 ごとに延ばすので、テストのプロセスが 1 秒止まっても (全部のテストを 2 コアで
# 流す負荷の下) リースは切れない
LEASE_S = 1.5


def _wait(condition, timeout: float, what: str):
    """``condition()`` が真になるまでポーリングする (期限つき)。"""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_the_renewer_keeps_a_lease_beyond_its_period_and_reports_a_lost_one(make_runtime, keys):
    """更新係はリースを期限より長く保ち、奪われたリースは on_lost で知らせて更新の対象から外す。"""
    lost = []
    runtime = make_runtime(LEASE_S, on_lost=lambda thread_id, run_id: lost.append((thread_id, run_id)))
    other = make_runtime(LEASE_S)
    new_thread(runtime.store, "t")
    assert runtime.acquire("t", "run-1")
    runtime.start()
    start = time.monotonic()
    while time.monotonic() - start < 3 * LEASE_S:  # 3 期間のあいだ、ずっと持ち続けている
        assert runtime.holder("t") == (runtime.process_id, "run-1")
        assert not other.acquire("t", "run-1")
        time.sleep(0.02)
    runtime.store.client.delete(keys.lease("t"))  # 期限切れの代わりに消して、別のプロセスに取らせる
    assert other.acquire("t", "run-1")
    _wait(lambda: lost, 3 * LEASE_S, "on_lost")
    assert lost == [("t", "run-1")]
    assert runtime.holder("t") == (other.process_id, "run-1")


def test_a_new_run_meeting_a_dead_owners_run_closes_it_first(make_runtime):
    """リースが切れたのに閉じられていないランがあると、次のランの取得が先にそれを on_orphan で閉じてから取る。"""
    dead = make_runtime(LEASE_S)
    new_thread(dead.store, "t")
    closed = []
    runtime = None

    def on_orphan(run) -> None:
        """死んだランを、リースを取った者として interrupted で閉じる (登録簿と同じく run_ended で)。"""
        closed.append(run.run_id)
        event = {"type": "run_error", "run_id": run.run_id, "error": {"code": "interrupted"}}
        runtime.store.commit("t", [event], run_ended=run.run_id)

    runtime = make_runtime(LEASE_S, on_orphan=on_orphan)
    dead.store.commit("t", [{"type": "run_started", "run_id": "run-dead"}], run_started="run-dead")
    assert dead.acquire("t", "run-dead")  # 更新係は動かさない (死んだ持ち主)
    assert not runtime.acquire("t", "run-new"), "the dead owner's lease has not expired yet"
    assert closed == []
    _wait(lambda: runtime.acquire("t", "run-new"), 5 * LEASE_S, "the dead lease to expire")
    assert closed == ["run-dead"]
    assert runtime.holder("t") == (runtime.process_id, "run-new")
    assert [e["type"] for e in runtime.store.after("t", 0)] == ["run_started", "run_error"]


def test_the_scanner_closes_a_run_whose_owner_stopped_renewing(make_runtime):
    """検査係は、終わっていないランのうちリースの切れたものを 1 回だけ on_orphan に渡す (自分のランは渡さない)。"""
    dead = make_runtime(LEASE_S)
    new_thread(dead.store, "t")
    new_thread(dead.store, "mine")
    dead.store.commit("t", [{"type": "run_started", "run_id": "run-dead"}], run_started="run-dead")
    assert dead.acquire("t", "run-dead")
    dead.start()  # 持ち主が生きていて延ばしている間は拾わない
    noticed = threading.Event()
    closed = []
    runtime = None

    def on_orphan(run) -> None:
        """閉じたランを記録する。"""
        closed.append(run.run_id)
        runtime.store.commit(run.thread_id, [{"type": "run_error", "run_id": run.run_id}], run_ended=run.run_id)
        noticed.set()

    runtime = make_runtime(LEASE_S, on_orphan=on_orphan)
    runtime.store.commit("mine", [{"type": "run_started", "run_id": "run-mine"}], run_started="run-mine")
    assert runtime.acquire("mine", "run-mine")
    runtime.start()
    time.sleep(2 * LEASE_S)
    assert closed == [], "live leases are not orphans"
    dead.stop()  # 持ち主が死んで、リースを延ばす者がいなくなる
    assert noticed.wait(10)
    _wait(lambda: runtime.store.open_run("t") is None, 2 * LEASE_S, "the run to be closed")
    time.sleep(LEASE_S)  # もう何回か検査が回っても、閉じたランは拾い直さない
    assert closed == ["run-dead"]
    assert runtime.store.open_run("mine").lease_owner == runtime.process_id
