"""エンドツーエンド: スレッドのイベント (1.1) ``list_threads`` / ``get_history`` / ``rewind`` / ``update_thread`` /
``delete_thread``、``thread_rewound``、``run_started.message``。2 つのトークン (2 つの主体) で隔離を確かめ、
悪い入力はそれぞれ欄を名指しした ``invalid_payload`` で断られて何も変えないことを確かめる。
"""

from __future__ import annotations

import json

import pytest

from tests.realtime.conftest import assert_contiguous, live_server

TOKEN_A = "token-alpha-threads-1234"
TOKEN_B = "token-bravo-threads-5678"
LOCATION = {"name": "get_location", "parameters": {"type": "object", "properties": {}}}


@pytest.fixture(scope="module", params=["eventlet"])
def threads_server(request, openai_fake):
    """2 つの主体のサーバー (sqlite のストアは一時フォルダ)。"""
    yield from live_server(
        request,
        openai_fake,
        ["server.rate_limit_per_minute=100000"],
        secrets={"LLM_ROUTER_API_TOKENS": f"{TOKEN_A},{TOKEN_B}"},
    )


def finished_run(client, thread_id: str, text: str) -> tuple[str, dict]:
    """メッセージを送り、ランの終わりまで待つ。``(run_id, run_started)`` を返す。"""
    ack = client.send_message(thread_id, text)
    assert ack["ok"], ack
    run_id = ack["run_id"]
    assert client.wait_run_end(run_id)["type"] == "run_finished"
    return run_id, client.wait_for("run_started", lambda e: e["run_id"] == run_id)


def test_list_history_titles_and_isolation_between_principals(threads_server):
    """一覧は自分のものだけ新しい順、題名は最初のメッセージから、履歴は署名なし、他人には forbidden。"""
    alice = threads_server.client(token=TOKEN_A)
    tab2 = threads_server.client(token=TOKEN_A)
    bob = threads_server.client(token=TOKEN_B)
    assert alice.start(thread_id="lt-old")["ok"]
    finished_run(alice, "lt-old", "古いスレッドの質問")
    assert alice.start(thread_id="lt-new", tools=[LOCATION])["ok"]
    assert tab2.start(thread_id="lt-new")["ok"]
    long_text = "これはとても長い最初の質問で、題名には先頭の六十文字だけが使われることを確かめるための文です。" * 2
    run_id, started = finished_run(alice, "lt-new", long_text)
    # 2 つ目のタブも、送られた質問を run_started で知る
    other = tab2.wait_for("run_started", lambda e: e["run_id"] == run_id)
    assert other["message"] == started["message"] and started["message"]["content"] == long_text

    listed = alice.call("list_threads", {})
    assert listed["ok"] and listed["next_cursor"] is None
    ids = [t["thread_id"] for t in listed["threads"]]
    assert ids[:2] == ["lt-new", "lt-old"], ids
    newest = listed["threads"][0]
    assert set(newest) == {"thread_id", "title", "model", "created_at", "updated_at", "last_seq", "active_run_id"}
    assert newest["title"] == long_text[:60] and newest["active_run_id"] is None
    assert newest["last_seq"] == alice.wait_run_end(run_id)["seq"]
    assert all(t["thread_id"] not in ("lt-new", "lt-old") for t in bob.call("list_threads", {})["threads"])

    history = alice.call("get_history", {"thread_id": "lt-new"})
    assert history["ok"] and history["last_seq"] == newest["last_seq"]
    user, assistant = history["messages"]
    assert user["message_id"] == started["message"]["message_id"] and user["run_id"] == run_id
    assert user["role"] == "user" and user["content"] == long_text and user["interrupted"] is False
    assert assistant["role"] == "assistant" and assistant["content"] == alice.wait_run_end(run_id)["text"]
    assert set(user) == {
        "message_id",
        "run_id",
        "role",
        "content",
        "tool_calls",
        "tool_call_id",
        "is_error",
        "interrupted",
        "created_at",
    }
    assert "signature" not in json.dumps(history)

    # 題名を変えると、後のメッセージでも変わらない
    assert alice.call("update_thread", {"thread_id": "lt-old", "title": "  名前を付けた  "})["ok"]
    finished_run(alice, "lt-old", "もう一つ")
    titles = {t["thread_id"]: t["title"] for t in alice.call("list_threads", {})["threads"]}
    assert titles["lt-old"] == "名前を付けた"
    assert next(t["thread_id"] for t in alice.call("list_threads", {})["threads"]) == "lt-old", "newest updated first"

    for event, payload in [
        ("get_history", {"thread_id": "lt-new"}),
        ("rewind", {"thread_id": "lt-new", "run_id": run_id}),
        ("update_thread", {"thread_id": "lt-new", "title": "乗っ取り"}),
        ("delete_thread", {"thread_id": "lt-new"}),
        ("start", {"thread_id": "lt-new", "resume_after_seq": 0}),
    ]:
        ack = bob.call(event, payload)
        assert ack["ok"] is False and ack["error"]["code"] == "forbidden", (event, ack)
    assert bob.event_payloads(thread_id="lt-new") == []
    assert len(alice.call("get_history", {"thread_id": "lt-new"})["messages"]) == 2, "nothing changed"


def test_list_threads_pages_with_the_cursor(threads_server):
    """limit と before: ページの続きは next_cursor で、最後のページでは null。"""
    carol = threads_server.client(token=TOKEN_B)
    for name in ("pg-1", "pg-2", "pg-3"):
        assert carol.start(thread_id=name)["ok"]
    first = carol.call("list_threads", {"limit": 2})
    assert len(first["threads"]) == 2 and first["next_cursor"]
    rest = carol.call("list_threads", {"limit": 200, "before": first["next_cursor"]})
    seen = [t["thread_id"] for t in first["threads"] + rest["threads"]]
    assert {"pg-1", "pg-2", "pg-3"} <= set(seen) and len(seen) == len(set(seen))
    assert rest["next_cursor"] is None
    stamps = [t["updated_at"] for t in first["threads"] + rest["threads"]]
    assert stamps == sorted(stamps, reverse=True)


def test_rewind_removes_runs_announces_thread_rewound_and_keeps_the_log(threads_server):
    """rewind: そのランと後のランが履歴から消え、全ソケットに thread_rewound (seq の順)。ログは追記だけ。"""
    alice = threads_server.client(token=TOKEN_A)
    tab2 = threads_server.client(token=TOKEN_A)
    assert alice.start(thread_id="rw-1", tools=[LOCATION])["ok"]
    assert tab2.start(thread_id="rw-1")["ok"]
    run1, _ = finished_run(alice, "rw-1", "一つ目")
    run2, _ = finished_run(alice, "rw-1", "二つ目")
    unknown = alice.call("rewind", {"thread_id": "rw-1", "run_id": "run_nope"})
    assert (
        unknown["ok"] is False and unknown["error"]["code"] == "unknown_run" and "run_id" in unknown["error"]["message"]
    )

    # ランが動いている間は run_in_progress (クライアント側ツールの答えを待たせて確実に動かしておく)
    busy = alice.send_message("rw-1", "get_location して")["run_id"]
    ready = alice.wait_for("tool_call_ready", lambda e: e["run_id"] == busy)
    for event, payload in [
        ("rewind", {"thread_id": "rw-1", "run_id": run1}),
        ("delete_thread", {"thread_id": "rw-1"}),
    ]:
        ack = alice.call(event, payload)
        assert ack["ok"] is False and ack["error"]["code"] == "run_in_progress", ack
    alice.call("tool_result", {"thread_id": "rw-1", "tool_call_id": ready["tool_call_id"], "result": "東京"})
    assert alice.wait_run_end(busy)["type"] == "run_finished"

    ack = alice.call("rewind", {"thread_id": "rw-1", "run_id": run2})
    assert ack == {"ok": True, "removed_runs": [run2, busy]}
    for client in (alice, tab2):
        event = client.wait_for("thread_rewound")
        assert event["run_id"] == run2 and event["removed_runs"] == [run2, busy]
        assert_contiguous(client.event_payloads(thread_id="rw-1"))
    history = alice.call("get_history", {"thread_id": "rw-1"})
    assert [m["run_id"] for m in history["messages"]] == [run1, run1]
    assert history["last_seq"] == alice.wait_for("thread_rewound")["seq"]

    # 再送は消えたランのイベントも持ち、その後に thread_rewound が来る
    late = threads_server.client(token=TOKEN_A)
    late.start(thread_id="rw-1", resume_after_seq=0)
    late.wait_for("thread_rewound")
    replay = late.event_payloads(thread_id="rw-1")
    assert_contiguous(replay, first=1)
    assert [e["type"] for e in replay if e["run_id"] == busy][-1] == "run_finished"
    assert replay[-1]["type"] == "thread_rewound"

    # 編集して送り直す: 次のランは残った履歴の上で
    run3, _ = finished_run(alice, "rw-1", "二つ目 (直した)")
    assert [m["run_id"] for m in alice.call("get_history", {"thread_id": "rw-1"})["messages"]] == [run1] * 2 + [
        run3
    ] * 2


def test_delete_thread_leaves_nothing_and_the_id_opens_a_new_empty_thread(threads_server):
    """delete_thread の後は unknown_thread、一覧にも無く、同じ ID の start は新しい空のスレッド。"""
    alice = threads_server.client(token=TOKEN_A)
    assert alice.start(thread_id="del-1")["ok"]
    run_id, _ = finished_run(alice, "del-1", "消される会話")
    assert alice.call("delete_thread", {"thread_id": "del-1"}) == {"ok": True, "thread_id": "del-1"}
    for event, payload in [
        ("get_history", {"thread_id": "del-1"}),
        ("user_message", {"thread_id": "del-1", "content": "まだいる?"}),
        ("rewind", {"thread_id": "del-1", "run_id": run_id}),
        ("update_thread", {"thread_id": "del-1", "title": "x"}),
        ("delete_thread", {"thread_id": "del-1"}),
    ]:
        ack = alice.call(event, payload)
        assert ack["ok"] is False and ack["error"]["code"] == "unknown_thread", (event, ack)
    assert "del-1" not in [t["thread_id"] for t in alice.call("list_threads", {"limit": 200})["threads"]]
    fresh = alice.start(thread_id="del-1", resume_after_seq=0)
    assert fresh["ok"] and fresh["last_seq"] == 0
    assert alice.call("get_history", {"thread_id": "del-1"}) == {"ok": True, "messages": [], "last_seq": 0}


@pytest.mark.parametrize(
    ("event", "payload", "field"),
    [
        ("list_threads", {"limit": 0}, "limit"),
        ("list_threads", {"limit": 201}, "limit"),
        ("list_threads", {"limit": "5"}, "limit"),
        ("list_threads", {"before": 7}, "before"),
        ("list_threads", {"before": "not-a-cursor"}, "before"),
        ("list_threads", {"limt": 5}, "limt"),
        ("list_threads", [1], "payload"),
        ("get_history", {}, "thread_id"),
        ("get_history", {"thread_id": "bad id!"}, "thread_id"),
        ("get_history", {"thread_id": "bad-1", "extra": 1}, "extra"),
        ("rewind", {"thread_id": "bad-1"}, "run_id"),
        ("rewind", {"thread_id": "bad-1", "run_id": 5}, "run_id"),
        ("update_thread", {"thread_id": "bad-1"}, "title"),
        ("update_thread", {"thread_id": "bad-1", "title": "   "}, "title"),
        ("update_thread", {"thread_id": "bad-1", "title": 5}, "title"),
        ("update_thread", {"thread_id": "bad-1", "title": "x" * 201}, "title"),
        ("delete_thread", {"thread_id": ""}, "thread_id"),
        ("delete_thread", "bad-1", "payload"),
    ],
)
def test_bad_thread_event_inputs_name_the_field_and_change_nothing(threads_server, event, payload, field):
    """悪い入力は欄を名指しした invalid_payload。スレッドは変わらない。"""
    alice = threads_server.client(token=TOKEN_A)
    if alice.call("get_history", {"thread_id": "bad-1"})["ok"] is False:
        assert alice.start(thread_id="bad-1")["ok"]
        finished_run(alice, "bad-1", "変わらないはず")
    before = alice.call("get_history", {"thread_id": "bad-1"})
    title = {t["thread_id"]: t["title"] for t in alice.call("list_threads", {"limit": 200})["threads"]}["bad-1"]
    ack = alice.call(event, payload)
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload", ack
    assert field in ack["error"]["message"], ack
    assert alice.call("get_history", {"thread_id": "bad-1"}) == before
    assert {t["thread_id"]: t["title"] for t in alice.call("list_threads", {"limit": 200})["threads"]}["bad-1"] == title
