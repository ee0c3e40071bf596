"""2 つの本物のサーバープロセスと 1 つの本物の redis-server: 別のプロセスのソケットからの attach・ライブのイベント・
クライアント側ツールの答え・cancel (両方のモード、上流が閉じられることを偽の OpenAI で確かめる)・2 つ目のランの拒否、
持ち主の SIGKILL (2 リース期間以内に ``interrupted``)、Redis の再起動、2 つのプロセスが同時にランを始める競争。"""

from __future__ import annotations

import json
import threading
import time

from llm_router.cluster.connection import Keys, connect
from llm_router.store.redis import RedisStore
from tests.realtime.harness import ProtocolClient, wait_until
from tests.scaleout.conftest import LEASE_S, Cluster
from tests.support.redis_fixtures import TEST_REDIS
from tests.support.redis_server import RedisServer

LOCATION_TOOL = {"name": "get_location", "description": "現在地", "parameters": {"type": "object", "properties": {}}}
ENDS = ("run_finished", "run_error", "run_cancelled")


def thread_log(client: ProtocolClient, thread_id: str) -> list[tuple[int, str, str | None]]:
    """クライアントが受け取ったスレッドのイベント ``(seq, type, run_id)`` (受信順)。"""
    return [(e["seq"], e["type"], e["run_id"]) for e in client.event_payloads(thread_id=thread_id)]


def assert_same_log(a: ProtocolClient, b: ProtocolClient, thread_id: str) -> list[tuple[int, str, str | None]]:
    """2 つのクライアントが、同じイベントを同じ ``seq`` で、1 から欠けず重複せずに受け取ったこと。"""
    log_a, log_b = thread_log(a, thread_id), thread_log(b, thread_id)
    assert log_a == log_b
    assert [seq for seq, _, _ in log_a] == list(range(1, len(log_a) + 1))
    return log_a


def test_a_socket_on_the_other_process_sees_answers_and_cancels_the_run(cluster: Cluster):
    """A で動くランに B のソケットが attach し、全イベントを同じ seq で受け、クライアント側ツールに答え、
    2 つ目のランを断られ、cancel (now: 上流が閉じられる / after_step) でき、B で始めたランも A に届く。"""
    a, b = cluster.add(), cluster.add()
    on_a, on_b = cluster.client(a), cluster.client(b)
    ack = on_a.start(tools=[LOCATION_TOOL])
    thread_id = ack["thread_id"]
    attach = on_b.start(thread_id=thread_id, tools=[LOCATION_TOOL], resume_after_seq=0)
    assert attach["ok"] and attach["last_seq"] == 0

    # 1. A のランのクライアント側ツールに B が答える
    run_1 = on_a.send_message(thread_id, "get_location をお願い")["run_id"]
    ready = on_b.wait_for("tool_call_ready", lambda e: e["run_id"] == run_1)
    busy = on_b.send_message(thread_id, "もう 1 つ")
    assert busy["ok"] is False and busy["error"]["code"] == "run_in_progress"
    answer = on_b.call(
        "tool_result", {"thread_id": thread_id, "tool_call_id": ready["tool_call_id"], "result": {"city": "大阪"}}
    )
    assert answer == {"ok": True}
    again = on_b.call("tool_result", {"thread_id": thread_id, "tool_call_id": ready["tool_call_id"], "result": 1})
    assert again["ok"] is False and again["error"]["code"] == "not_awaiting", "the owner's answer travels back"
    assert on_b.wait_run_end(run_1)["type"] == "run_finished"
    on_a.wait_run_end(run_1)
    assert "大阪" in "".join(e["delta"] for e in on_b.event_payloads("text_delta") if e["run_id"] == run_1)

    # 2. B からの cancel (now) で A の上流が閉じられる
    cluster.fake.reset()
    run_2 = on_a.send_message(thread_id, "[stall] 長い話")["run_id"]
    on_b.wait_for("text_delta", lambda e: e["run_id"] == run_2)
    assert on_b.call("cancel", {"thread_id": thread_id}) == {"ok": True, "cancelled": True}
    end = on_b.wait_run_end(run_2, timeout=5)
    assert end["type"] == "run_cancelled" and end["reason"] == "client"
    assert cluster.fake.server.client_disconnected.wait(10), "the owner's upstream was not closed"
    assert on_b.call("cancel", {"thread_id": thread_id, "run_id": run_2}) == {"ok": True, "cancelled": False}

    # 3. B からの cancel (after_step): ツールの答えを待つステップの後で終わる
    run_3 = on_a.send_message(thread_id, "get_location をもう一度")["run_id"]
    ready = on_b.wait_for("tool_call_ready", lambda e: e["run_id"] == run_3)
    assert on_b.call("cancel", {"thread_id": thread_id, "mode": "after_step"}) == {"ok": True, "cancelled": True}
    on_b.call("tool_result", {"thread_id": thread_id, "tool_call_id": ready["tool_call_id"], "result": "ok"})
    assert on_a.wait_run_end(run_3)["type"] == "run_cancelled"

    # 4. B で始めたランは A のソケットにも届く
    run_4 = on_b.send_message(thread_id, "こんにちは")["run_id"]
    assert on_a.wait_run_end(run_4)["type"] == "run_finished"
    on_b.wait_run_end(run_4)
    log = assert_same_log(on_a, on_b, thread_id)
    for run_id in (run_1, run_2, run_3, run_4):
        assert [t for _, t, r in log if r == run_id and t in ENDS].__len__() == 1

    # 5. 別のソケットが B で再開すると、ログから同じ seq で全部が届く (rewind の前に)
    late = cluster.client(b)
    resumed = late.start(thread_id=thread_id, resume_after_seq=0)
    assert resumed["last_seq"] == len(log)
    wait_until(lambda: len(thread_log(late, thread_id)) == len(log), timeout=10)
    assert thread_log(late, thread_id) == log
    history = late.call("get_history", {"thread_id": thread_id})
    assert history["ok"] and [m["run_id"] for m in history["messages"] if m["role"] == "user"][-1] == run_4

    # 6. スレッドのイベントもどのプロセスからでも: A で動くラン中の rewind は B で断られ、終わった後の B の rewind は
    #    A のソケットにも thread_rewound で届き、A の履歴からも消え、A の次のランはその履歴で動く
    run_5 = on_a.send_message(thread_id, "[slow] もう少し")["run_id"]
    on_b.wait_for("run_started", lambda e: e["run_id"] == run_5)
    busy = on_b.call("rewind", {"thread_id": thread_id, "run_id": run_4})
    assert busy["ok"] is False and busy["error"]["code"] == "run_in_progress"
    on_b.call("cancel", {"thread_id": thread_id})
    on_a.wait_run_end(run_5)
    rewound = on_b.call("rewind", {"thread_id": thread_id, "run_id": run_4})
    assert rewound["ok"] and rewound["removed_runs"][0] == run_4
    seen = on_a.wait_for("thread_rewound", lambda e: e["run_id"] == run_4)
    assert seen["removed_runs"] == rewound["removed_runs"]
    after = on_a.call("get_history", {"thread_id": thread_id})
    assert not {run_4, run_5} & {m["run_id"] for m in after["messages"]}
    run_6 = on_a.send_message(thread_id, "やり直し")["run_id"]
    assert on_b.wait_run_end(run_6)["type"] == "run_finished"
    on_a.wait_run_end(run_6)
    assert_same_log(on_a, on_b, thread_id)
    sent = cluster.fake.chat_requests()[-1]["messages"]
    assert "こんにちは" not in json.dumps(sent, ensure_ascii=False), "the rewound turn must not reach the model"


def test_owner_killed_ends_the_run_interrupted_and_the_thread_goes_on(cluster: Cluster):
    """ランの持ち主 A を SIGKILL すると、B が 2 リース期間以内に ``run_error`` (``interrupted``) で閉じ、
    スレッドは B から次のメッセージを受け付ける。ログの終わりのイベントは 1 つだけ。"""
    a, b = cluster.add(), cluster.add()
    on_a, on_b = cluster.client(a), cluster.client(b)
    thread_id = on_a.start()["thread_id"]
    on_b.start(thread_id=thread_id)
    run_id = on_a.send_message(thread_id, "[stall] 止まる話")["run_id"]
    on_b.wait_for("text_delta", lambda e: e["run_id"] == run_id)
    killed = time.monotonic()
    a.proc.kill()
    a.proc.wait(10)
    end = on_b.wait_run_end(run_id, timeout=4 * LEASE_S)
    elapsed = time.monotonic() - killed
    assert end["type"] == "run_error" and end["error"]["code"] == "interrupted" and end["error"]["retryable"] is True
    assert elapsed <= 2 * LEASE_S, f"interrupted after {elapsed:.2f} s (lease {LEASE_S} s)"
    after = on_b.send_message(thread_id, "続きをどうぞ")
    assert after["ok"], after
    assert on_b.wait_run_end(after["run_id"])["type"] == "run_finished"
    log = thread_log(on_b, thread_id)
    assert [seq for seq, _, _ in log] == list(range(1, len(log) + 1))
    assert [t for _, t, r in log if r == run_id and t in ENDS] == ["run_error"]


def test_two_processes_racing_to_start_a_run_on_one_thread(cluster: Cluster):
    """A と B のソケットが同じスレッドに同時に ``user_message`` を送ると、通るのは毎回ちょうど 1 つ。"""
    a, b = cluster.add(), cluster.add()
    on_a, on_b = cluster.client(a), cluster.client(b)
    thread_id = on_a.start()["thread_id"]
    on_b.start(thread_id=thread_id)

    def send(acks: dict, barrier: threading.Barrier, name: str, client: ProtocolClient, text: str) -> None:
        """合図で同時に送る。"""
        barrier.wait()
        acks[name] = client.send_message(thread_id, text)

    for round_ in range(5):
        acks: dict[str, dict] = {}
        barrier = threading.Barrier(2)
        workers = [
            threading.Thread(target=send, args=(acks, barrier, "a", on_a, f"[slow] A {round_}")),
            threading.Thread(target=send, args=(acks, barrier, "b", on_b, f"[slow] B {round_}")),
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join(20)
        winners = [ack for ack in acks.values() if ack["ok"]]
        losers = [ack for ack in acks.values() if not ack["ok"]]
        assert len(winners) == 1 and len(losers) == 1, acks
        assert losers[0]["error"]["code"] == "run_in_progress"
        on_a.wait_run_end(winners[0]["run_id"], timeout=30)
        on_b.wait_run_end(winners[0]["run_id"], timeout=30)
    log = assert_same_log(on_a, on_b, thread_id)
    assert [t for _, t, _ in log].count("run_started") == 5


def test_redis_restart_refuses_then_resumes_without_restarting_the_servers(redis_binary, openai_fake):
    """Redis が止まると新しいランは ``store_unavailable``、動いていたランはきれいに終わる。Redis が (AOF で中身を
    保ったまま) 戻ると、サーバーを再起動せずに同じスレッドが両方のプロセスで続く。"""
    with RedisServer(redis_binary, appendonly=True) as redis:
        cluster = Cluster(redis, openai_fake)
        try:
            a, b = cluster.add(), cluster.add()
            on_a, on_b = cluster.client(a), cluster.client(b)
            thread_id = on_a.start()["thread_id"]
            on_b.start(thread_id=thread_id)
            first = on_a.send_message(thread_id, "最初")["run_id"]
            on_b.wait_run_end(first)
            running = on_a.send_message(thread_id, "[slow] 長い話")["run_id"]
            on_a.wait_for("text_delta", lambda e: e["run_id"] == running)
            redis.stop()
            end = on_a.wait_run_end(running, timeout=15)
            assert end["type"] == "run_error" and end["error"]["code"] == "store_unavailable"
            refused = on_b.send_message(thread_id, "Redis が無い間")
            assert refused["ok"] is False and refused["error"]["code"] == "store_unavailable"
            redis.start()

            # 書けなかった終わりは記録に残らないので、そのランは検査係が interrupted で閉じる。その後は普通に動く
            def accepted() -> dict | None:
                """受け付けられるまで送り直す (断られた ack は捨てる)。"""
                ack = on_b.send_message(thread_id, "戻った")
                return ack if ack["ok"] else None

            ack = wait_until(accepted, timeout=4 * LEASE_S + 5, interval=0.2)
            assert on_a.wait_run_end(ack["run_id"])["type"] == "run_finished"
            again = on_a.send_message(thread_id, "A からも")
            assert again["ok"] and on_b.wait_run_end(again["run_id"])["type"] == "run_finished"
            fresh = cluster.client(a)
            fresh.start(thread_id=thread_id, resume_after_seq=0)
            wait_until(lambda: thread_log(fresh, thread_id) and thread_log(fresh, thread_id)[-1][1] == "run_finished")
            log = thread_log(fresh, thread_id)
            assert [seq for seq, _, _ in log] == list(range(1, len(log) + 1)), "no seq lost or given twice"
            assert [t for _, t, r in log if r == running and t in ENDS] == ["run_error"]
        finally:
            cluster.close()


def test_limits_are_shared_across_processes(cluster: Cluster):
    """主体の同時のラン数 (``server.max_active_runs_per_principal``) とレート制限 (``server.rate_limit_per_minute``)
    は 2 つのプロセスを合わせて数える。"""
    extra = ("server.max_active_runs_per_principal=1", "server.rate_limit_per_minute=30")
    a, b = cluster.add(*extra), cluster.add(*extra)
    on_a, on_b = cluster.client(a), cluster.client(b)
    first = on_a.start()["thread_id"]
    second = on_b.start()["thread_id"]
    running = on_a.send_message(first, "[slow] 長い話")["run_id"]
    on_a.wait_for("run_started", lambda e: e["run_id"] == running)
    refused = on_b.send_message(second, "別のスレッドで")
    assert refused["ok"] is False and refused["error"]["code"] == "limit_reached"
    on_a.call("cancel", {"thread_id": first})
    on_a.wait_run_end(running)
    allowed = on_b.send_message(second, "今なら")
    assert allowed["ok"], allowed
    on_b.wait_run_end(allowed["run_id"])
    # ここまでで 6 件 (start 2、user_message 3、cancel 1) 使った。残りを 2 つのプロセスに交互に送ると、
    # 合わせて 30 件 (と、その間の毎秒 0.5 件の補充) までしか通らない (1 プロセスずつなら 30 + 30 件通る)
    answers = [(on_a if i % 2 else on_b).call("list_threads", {}) for i in range(40)]
    passed = sum(1 for ack in answers if ack["ok"])
    codes = {ack["error"]["code"] for ack in answers if not ack["ok"]}
    assert codes == {"rate_limited"}
    assert 30 - 6 <= passed <= 30 - 6 + 3, passed


def test_attaching_mid_run_on_the_other_process_replays_then_follows_live(cluster: Cluster):
    """A でランが流れている途中に、B のソケットが ``resume_after_seq=0`` で attach すると、そこまでのログの再送と
    その後のライブのイベントが、抜けも重複もなく A のソケットと同じ seq で届く。途中の seq からの再開も同じ。"""
    a, b = cluster.add(), cluster.add()
    on_a = cluster.client(a)
    thread_id = on_a.start()["thread_id"]
    run_id = on_a.send_message(thread_id, "[slow] ゆっくり長い話")["run_id"]
    wait_until(lambda: len(on_a.event_payloads("text_delta")) >= 5, timeout=15)
    from_start, from_middle = cluster.client(b), cluster.client(b)
    assert from_start.start(thread_id=thread_id, resume_after_seq=0)["ok"]
    middle = len(thread_log(on_a, thread_id)) // 2
    assert from_middle.start(thread_id=thread_id, resume_after_seq=middle)["ok"]
    for client in (on_a, from_start, from_middle):
        client.wait_run_end(run_id, timeout=30)
    full = thread_log(on_a, thread_id)
    assert [seq for seq, _, _ in full] == list(range(1, len(full) + 1))
    assert thread_log(from_start, thread_id) == full
    assert thread_log(from_middle, thread_id) == full[middle:]


def test_a_socket_on_the_other_process_keeps_the_run_alive(cluster: Cluster):
    """持ち主のプロセスのソケットが全部切れても、別のプロセスにスレッドのソケットがあれば、切断タイムアウト
    (``agent.disconnect_timeout_s``) でランを止めない。どこにもソケットが無くなれば止める。"""
    a, b = cluster.add("agent.disconnect_timeout_s=0.5"), cluster.add("agent.disconnect_timeout_s=0.5")
    on_a, on_b = cluster.client(a), cluster.client(b)
    thread_id = on_a.start()["thread_id"]
    on_b.start(thread_id=thread_id)
    kept = on_a.send_message(thread_id, "[slow] 長い話")["run_id"]
    on_b.wait_for("text_delta", lambda e: e["run_id"] == kept)
    on_a.disconnect()
    assert on_b.wait_run_end(kept, timeout=30)["type"] == "run_finished"
    watcher = cluster.client(a)
    watcher.start(thread_id=thread_id)
    stopped = on_b.send_message(thread_id, "[stall] 止まる話")["run_id"]
    watcher.wait_for("text_delta", lambda e: e["run_id"] == stopped)
    watcher.disconnect()
    on_b.disconnect()
    # どこにもソケットが無い: ログ (Redis) を直接読んで、ランの終わりを待つ
    log = RedisStore(connect(cluster.redis.url, TEST_REDIS), keys=Keys("llm_router"))
    try:

        def ended() -> dict | None:
            """ランの終わりのイベント (まだ無ければ ``None``)。"""
            return next((e for e in log.after(thread_id, 0) if e["run_id"] == stopped and e["type"] in ENDS), None)

        end = wait_until(ended, timeout=15, interval=0.1)
    finally:
        log.close()
    assert end["type"] == "run_cancelled" and end["reason"] == "disconnect_timeout"


def test_threading_mode_follows_and_cancels_across_processes(cluster: Cluster):
    """``server.async_mode=threading`` でも (部品は本物のスレッドで動く)、別のプロセスのソケットがイベントを同じ seq で
    受け取り、cancel で持ち主の上流を閉じる。"""
    a, b = cluster.add("server.async_mode=threading"), cluster.add("server.async_mode=threading")
    on_a, on_b = cluster.client(a), cluster.client(b)
    thread_id = on_a.start()["thread_id"]
    on_b.start(thread_id=thread_id)
    cluster.fake.reset()
    run_id = on_a.send_message(thread_id, "[stall] 長い話")["run_id"]
    on_b.wait_for("text_delta", lambda e: e["run_id"] == run_id)
    assert on_b.call("cancel", {"thread_id": thread_id}) == {"ok": True, "cancelled": True}
    assert on_a.wait_run_end(run_id)["type"] == "run_cancelled"
    assert cluster.fake.server.client_disconnected.wait(10)
    on_b.wait_run_end(run_id)
    assert_same_log(on_a, on_b, thread_id)


def test_redis_restarted_empty_lets_the_thread_start_again_on_both_processes(cluster: Cluster):
    """永続化していない Redis が再起動して中身が消えても、サーバーを再起動せずに続けられる: 消えたスレッドへの
    ``user_message`` は ``unknown_thread`` (``internal`` ではない)、同じ id の ``start`` は新しい空のスレッドを開き
    (seq は 1 から)、両方のプロセスでランが動く。"""
    a, b = cluster.add(), cluster.add()
    on_a, on_b = cluster.client(a), cluster.client(b)
    thread_id = on_a.start()["thread_id"]
    on_b.start(thread_id=thread_id)
    first = on_a.send_message(thread_id, "最初")["run_id"]
    on_b.wait_run_end(first)
    cluster.redis.restart()
    lost = on_b.send_message(thread_id, "消えた後")
    assert lost["ok"] is False and lost["error"]["code"] in ("unknown_thread", "store_unavailable"), lost
    fresh_a, fresh_b = cluster.client(a), cluster.client(b)
    ack = fresh_a.start(thread_id=thread_id, resume_after_seq=0)
    assert ack["ok"] and ack["last_seq"] == 0, ack
    assert fresh_b.start(thread_id=thread_id)["ok"]
    # 両方のプロセスの更新係が、開き直した後に少なくとも 1 回回るまで待つ (在席の期限が延びる)。再起動に
    # 気づいた更新係が、開き直したスレッドのソケットまで「消えた」(store_reset) としてルームから外してはいけない
    probe = connect(cluster.redis.url, TEST_REDIS)
    try:
        present = f"llm_router:t:{thread_id}:present"
        opened = dict(probe.zrange(present, 0, -1, withscores=True))
        assert len(opened) == 2, opened
        wait_until(
            lambda: all((probe.zscore(present, member) or 0) > score for member, score in opened.items()),
            timeout=LEASE_S * 3,
        )
    finally:
        probe.close()
    run_id = fresh_b.send_message(thread_id, "もう一度")["run_id"]
    assert fresh_a.wait_run_end(run_id)["type"] == "run_finished"
    fresh_b.wait_run_end(run_id)
    assert_same_log(fresh_a, fresh_b, thread_id)
    assert thread_log(fresh_a, thread_id)[0][0] == 1
    assert not [e for e in fresh_a.events + fresh_b.events if e[0] == "thread_deleted"]


def test_the_thread_cap_counts_and_evicts_across_processes(cluster: Cluster):
    """``server.max_threads_per_principal`` は 2 つのプロセスを合わせて数える: A と B に 1 つずつ使用中のスレッドが
    あれば 3 つ目の新しいスレッドは ``limit_reached``。別のプロセスでランが動いているスレッドは (ソケットが
    無くても) 空きではない。どこにもソケットもランも無くなった B のスレッドは、A の新しい ``start`` が閉じて通す
    (ストアには残り、``get_history`` で読める)。"""
    extra = ("server.max_threads_per_principal=2", "agent.disconnect_timeout_s=60")
    a, b = cluster.add(*extra), cluster.add(*extra)
    on_a, on_b = cluster.client(a), cluster.client(b)
    first = on_a.start()["thread_id"]
    second = on_b.start()["thread_id"]
    refused = cluster.client(a).start()
    assert refused["ok"] is False and refused["error"]["code"] == "limit_reached", refused
    assert "server.max_threads_per_principal" in refused["error"]["message"]

    # B のランが動いている間は、B のソケットが切れても second は使用中
    run_id = on_b.send_message(second, "[stall] 長い話")["run_id"]
    on_b.wait_for("text_delta", lambda e: e["run_id"] == run_id)
    on_b.disconnect()
    probe = connect(cluster.redis.url, TEST_REDIS)
    try:
        present = f"llm_router:t:{second}:present"
        wait_until(lambda: probe.zcard(present) == 0, timeout=10)
        busy = cluster.client(a).start()
        assert busy["ok"] is False and busy["error"]["code"] == "limit_reached", "a live run on B is not idle"

        # 既にあるスレッドへの start は数に入らない: A から second を開いてランを止め、また離れる
        helper = cluster.client(a)
        assert helper.start(thread_id=second)["ok"]
        assert helper.call("cancel", {"thread_id": second}) == {"ok": True, "cancelled": True}
        helper.wait_run_end(run_id)
        helper.disconnect()
        wait_until(lambda: probe.zcard(present) == 0, timeout=10)
    finally:
        probe.close()

    # second はどこにもソケットもランも無い: A の新しいスレッドはそれを閉じて通る
    on_new = cluster.client(a)
    third = on_new.start()
    assert third["ok"], third
    reopen = cluster.client(b).start(thread_id=second)
    assert reopen["ok"] is False and reopen["error"]["code"] == "limit_reached", "first and third are in use"
    history = on_new.call("get_history", {"thread_id": second})
    assert history["ok"] and history["messages"], "a closed thread stays in the store"
    assert on_a.send_message(first, "まだ使える")["ok"]


def test_sockets_on_every_process_are_told_when_their_thread_is_gone(cluster: Cluster):
    """スレッドが消えると、どのプロセスのソケットにも ``thread_deleted`` が届く: A の ``delete_thread`` なら
    (``reason: deleted``) A と B のソケットに、永続化していない Redis の再起動なら (``reason: store_reset``)
    両方のプロセスのソケットに。知らされた B の ``user_message`` は ``unknown_thread``、``start`` で開き直せる。"""
    a, b = cluster.add(), cluster.add()
    on_a, on_b = cluster.client(a), cluster.client(b)
    doomed = on_a.start()["thread_id"]
    assert on_b.start(thread_id=doomed)["ok"]
    kept = on_a.start()["thread_id"]
    assert on_b.start(thread_id=kept)["ok"]
    first = on_b.send_message(kept, "最初")["run_id"]
    on_a.wait_run_end(first)

    assert on_a.call("delete_thread", {"thread_id": doomed}) == {"ok": True, "thread_id": doomed}
    for client in (on_a, on_b):
        notice = client.wait_for("thread_deleted", lambda e: e["thread_id"] == doomed, timeout=10)
        assert notice["reason"] == "deleted" and "seq" not in notice
    lost = on_b.send_message(doomed, "消えた後")
    assert lost["ok"] is False and lost["error"]["code"] == "unknown_thread", lost

    cluster.redis.restart()
    for client in (on_a, on_b):
        notice = client.wait_for("thread_deleted", lambda e: e["thread_id"] == kept, timeout=15)
        assert notice["reason"] == "store_reset"
    assert not [e for e in on_b.event_payloads("thread_deleted") if e["thread_id"] == kept][1:], "told once"
    ack = on_b.start(thread_id=kept)
    assert ack["ok"] and ack["last_seq"] == 0, ack


def test_a_burst_of_starts_and_runs_waits_for_redis_connections_instead_of_failing(cluster: Cluster):
    """Redis の接続が 2 本のプロセスに、30 の start と 30 のランが同時に来ても、どれも store_unavailable に
    ならず (接続の空きを待つ)、全部のランが終わる。"""
    from concurrent.futures import ThreadPoolExecutor

    server = cluster.add("store.redis.pool_size=2")
    clients = [cluster.client(server) for _ in range(3)]
    with ThreadPoolExecutor(30) as pool:
        starts = list(pool.map(lambda i: clients[i % 3].start(), range(30)))
        assert all(ack["ok"] for ack in starts), [a for a in starts if not a["ok"]][:1]
        sent = list(
            pool.map(lambda i: clients[i % 3].send_message(starts[i]["thread_id"], f"こんにちは {i}"), range(30))
        )
    assert all(ack["ok"] for ack in sent), [a for a in sent if not a["ok"]][:1]
    for i, ack in enumerate(sent):
        clients[i % 3].wait_run_end(ack["run_id"])
        ends = [e["type"] for e in clients[i % 3].event_payloads(thread_id=starts[i]["thread_id"]) if e["type"] in ENDS]
        assert ends == ["run_finished"]
