"""プロセス内で確かめる AG-UI のエンドポイントの部品: Flask のテストクライアントでの 429 と 413、ID の制御文字、
スレッドの台帳 (所有者、実行中、件数の上限で古いものから忘れる)。"""

from __future__ import annotations

import json

from llm_router.agui.threads import AguiThreads, Busy, Forbidden
from llm_router.config.settings import load_settings
from llm_router.server import create_app
from tests.agui.client import run_input, user


def make_client(*overrides: str):
    """トークン無し (主体は anonymous) の設定でアプリを作り、Flask のテストクライアントを返す。"""
    settings = load_settings(["server.async_mode=threading", *overrides], env_file=None, environ={})
    app, _ = create_app(settings)
    return app.test_client()


def test_rate_limit_per_principal_gives_429():
    """``server.rate_limit_per_minute`` を超えた POST は 429 (本文の検証より先)。"""
    client = make_client("server.rate_limit_per_minute=2")
    statuses = [client.post("/agui", data=b"{}", content_type="application/json").status_code for _ in range(3)]
    assert statuses == [400, 400, 429]


def test_a_body_over_the_limit_gets_413():
    """``agui.max_body_bytes`` を超える本文は 413。"""
    client = make_client("agui.max_body_bytes=100")
    body = json.dumps(run_input([user("x" * 200)]))
    response = client.post("/agui", data=body, content_type="application/json")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def test_ids_with_control_characters_are_refused():
    """改行を含む ID はログの行を偽れるので 400 (フィールドは threadId)。"""
    client = make_client()
    body = run_input([user("x")])
    body["threadId"] = "t1\nFAKE LOG LINE"
    response = client.post("/agui", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["field"] == "threadId"


def test_disabled_endpoint_is_not_registered():
    """``agui.enabled=false`` ならルートが無い (404)。"""
    client = make_client("agui.enabled=false")
    assert client.post("/agui", data=b"{}", content_type="application/json").status_code == 404


def test_thread_book_owners_busy_and_bounded_eviction():
    """所有者は最初の主体、実行中は Busy、上限を超えたら実行中でない古いものから忘れる。"""
    book = AguiThreads(max_threads=2)
    run_a = object()
    assert book.begin("a", "alice", run_a) == {}
    try:
        book.begin("a", "bob", object())
        raise AssertionError("another principal used alice's thread")
    except Forbidden:
        pass
    try:
        book.begin("a", "alice", object())
        raise AssertionError("a second run started on a busy thread")
    except Busy:
        pass
    book.finish("a", run_a, {})
    run_b, run_c = object(), object()
    book.begin("b", "bob", run_b)
    book.begin("c", "carol", run_c)  # 3 件目: 実行中でない a を忘れる (b は実行中なので残る)
    assert len(book) == 2
    book.begin("a", "dave", object())  # 忘れた a は次に使った主体のもの (b・c は実行中なので上限を一時的に超える)
    assert len(book) == 3
    book.check_owner("a", "dave")
    book.check_owner("b", "bob")
    book.finish("b", run_b, {})
    book.begin("d", "erin", object())  # 実行中でなくなった b を忘れる
    book.check_owner("b", "someone-else")
