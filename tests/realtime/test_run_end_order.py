"""競合 (a): ランが終わってアクティブから外れた直後に別のソケットが始めたランの ``run_started`` が、
前のランの ``run_finished`` より小さい ``seq`` を得てはならない。

時間に頼らず、登録簿の ``run_end`` (アクティブを外す処理) の直後に「2 つ目のソケット」の送出を差し込む:
その送出が送出のロックで待つ状態になったか、終わったかを確かめてから元の送出を続ける。
"""

import threading

from llm_router.realtime.emitter import ThreadEmitter
from llm_router.realtime.registry import ThreadRecord
from tests.realtime.test_emitter_unit import FakeSocketIO, memory_store


def test_a_run_started_right_after_run_end_gets_a_later_seq_than_run_finished():
    """run_end の直後に別のスレッドが始めたランの run_started は、前の run_finished の後の seq。"""
    sio = FakeSocketIO()
    record = ThreadRecord("t1", "alice", config=None, state=None)
    record.active, record.active_run_id = object(), "r1"
    emitter = ThreadEmitter("t1", sio, memory_store(), [], [])
    record.emitter = emitter
    about_to_emit = threading.Event()
    emitted = threading.Event()

    def second_socket() -> None:
        """別のソケットの user_message: アクティブが空いたのを見て新しいランを始める。"""
        assert record.active is None
        about_to_emit.set()
        emitter.emit("run_started", "r2", {"model": "m", "max_steps": 1})
        emitted.set()

    def run_end_then_interleave(run_id):
        """本物の run_end の後に、2 つ目のソケットの送出を差し込む。"""
        record.run_end(run_id)
        other = threading.Thread(target=second_socket)
        other.start()
        assert about_to_emit.wait(5)
        if lock_is_free(emitter.lock):
            # ロックが空いていれば、2 つ目の送出はここで先に終わる (旧い実装の窓)
            assert emitted.wait(5)
        threads.append(other)

    threads: list[threading.Thread] = []
    emitter._on_run_end = run_end_then_interleave
    emitter.emit("run_finished", "r1", {"finish_reason": "stop", "usage": {}, "text": ""})
    for t in threads:
        t.join(5)
    order = [(name, data["seq"]) for name, data, _ in sio.sent]
    assert order == [("run_finished", 1), ("run_started", 2)], order
    assert [e["seq"] for e in emitter.store.after("t1", 0)] == [1, 2]


def lock_is_free(lock) -> bool:
    """別のスレッドから見て ``lock`` が空いていれば真 (再入できるロックでも正しく分かる)。"""
    result: list[bool] = []

    def probe() -> None:
        """取れるかを試し、取れたら放す。"""
        got = lock.acquire(blocking=False)
        if got:
            lock.release()
        result.append(got)

    t = threading.Thread(target=probe)
    t.start()
    t.join(5)
    return result[0]
