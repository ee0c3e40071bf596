"""AG-UI のエンドポイントの要求の扱い: 認証 (401)、本文の誤り (400 でフィールドを名指す)、別の主体の
スレッド (403)、同じスレッドでの同時のラン (409)。誤った要求は上流へ何も送らない。"""

from __future__ import annotations

import json
import socket

import pytest

from tests.agui.client import new_id, read_frames, run_input, user, validate_events
from tests.agui.conftest import ALICE, BOB, LiveAgui


def test_missing_or_wrong_token_is_refused(live: LiveAgui) -> None:
    """トークンが無い・違う・Bearer でない: 401 (WWW-Authenticate つき)、上流へは何も送らない。"""
    body = run_input([user("こんにちは")])
    for token in (None, "tok-wrong", ""):
        result = live.client.post(body, token)
        assert result.status == 401, token
        assert result.body["error"]["code"] == "unauthorized"
        assert result.headers["www-authenticate"].startswith("Bearer")
    assert live.openai.chat_requests() == []


def test_the_same_token_as_the_bus_is_accepted(live: LiveAgui) -> None:
    """どちらの主体のトークンでも通る (Socket.IO のバスと同じトークン)。"""
    for token in (ALICE, BOB):
        result = live.client.post(run_input([user("やあ")]), token)
        assert result.status == 200
        validate_events(result.events)


CALL = {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
BAD_BODIES = [
    ({"threadId": "t", "runId": "r"}, "messages"),
    ({"runId": "r", "messages": [user("x")]}, "threadId"),
    ({"threadId": "t", "runId": "r", "messages": {}}, "messages"),
    ({"threadId": "t", "runId": "r", "messages": []}, "messages"),
    ({"threadId": "t", "runId": "r", "messages": [user("x")], "thread_id": "t"}, "thread_id"),
    ({"threadId": 5, "runId": "r", "messages": [user("x")]}, "threadId"),
    ({"threadId": "t", "runId": "r", "messages": [{"id": "m", "role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"threadId": "t", "runId": "r", "messages": [{"id": "m", "role": "user"}]}, "messages[0].content"),
    ({"threadId": "t", "runId": "r", "messages": [{"role": "user", "content": "x"}]}, "messages[0].id"),
    (
        {
            "threadId": "t",
            "runId": "r",
            "messages": [user("x"), {"id": "t1", "role": "tool", "toolCallId": "nope", "content": "x"}],
        },
        "messages[1].toolCallId",
    ),
    (
        {
            "threadId": "t",
            "runId": "r",
            "messages": [
                {
                    "id": "a",
                    "role": "assistant",
                    "toolCalls": [{**CALL, "function": {"name": "lookup", "arguments": "{oops"}}],
                }
            ],
        },
        "messages[0].toolCalls[0].function.arguments",
    ),
    (
        {
            "threadId": "t",
            "runId": "r",
            "messages": [{"id": "a", "role": "assistant", "toolCalls": [{**CALL, "tool": 1}]}],
        },
        "messages[0].toolCalls[0].tool",
    ),
    (
        {
            "threadId": "t",
            "runId": "r",
            "messages": [{"id": "u", "role": "user", "content": [{"type": "audio", "source": {}}]}],
        },
        "messages[0].content[0].type",
    ),
    ({"threadId": "t", "runId": "r", "messages": [user("x")], "tools": [{"description": "d"}]}, "tools[0].name"),
    (
        {"threadId": "t", "runId": "r", "messages": [user("x"), {"id": "a1", "role": "activity", "content": {}}]},
        "messages[1].activityType",
    ),
    (
        {"threadId": "t", "runId": "r", "messages": [{"id": "u", "role": "user", "content": "x", "tool_call_id": "c"}]},
        "messages[0].tool_call_id",
    ),
    (
        {"threadId": "t", "runId": "r", "messages": [user("x")], "tools": [{"name": "calculator", "description": "d"}]},
        "tools",
    ),
    ({"threadId": "t", "runId": "r", "messages": [user("x")], "context": [{"value": "v"}]}, "context[0].description"),
    (
        {"threadId": "t", "runId": "r", "messages": [user("x")], "forwardedProps": {"settings": {"temperature": 9}}},
        "forwardedProps.settings.temperature",
    ),
    (
        {"threadId": "t", "runId": "r", "messages": [user("x")], "forwardedProps": {"model": "nowhere/x"}},
        "forwardedProps.model",
    ),
    (
        {
            "threadId": "t",
            "runId": "r",
            "messages": [user("x")],
            "resume": [{"interruptId": "i", "status": "resolved"}],
        },
        "resume",
    ),
]


@pytest.mark.parametrize(("body", "field"), BAD_BODIES, ids=[f for _, f in BAD_BODIES])
def test_bad_bodies_get_400_naming_the_field(live: LiveAgui, body: dict, field: str) -> None:
    """誤った RunAgentInput は 400 で、JSON のエラーが問題のフィールドを名指す。上流へは何も送らない。"""
    result = live.client.post(body, ALICE)
    assert result.status == 400, result.body
    error = result.body["error"]
    assert error["code"] == "invalid_payload"
    assert error["field"] == field, error
    assert field in error["message"]
    assert live.openai.chat_requests() == []


def test_a_body_that_is_not_json_gets_400(live: LiveAgui) -> None:
    """JSON でない本文・JSON のオブジェクトでない本文。"""
    for raw in (b"not json", b"[1, 2]", "\u3042".encode("shift_jis")):
        result = live.client.post(None, ALICE, raw=raw)
        assert result.status == 400 and result.body["error"]["code"] == "invalid_payload", raw


def test_another_principals_thread_is_forbidden(live: LiveAgui) -> None:
    """Alice の threadId を Bob が使うと 403。Alice は使い続けられる。"""
    body = run_input([user("私のスレッド")])
    assert live.client.post(body, ALICE).status == 200
    again = run_input([user("横取り")], thread_id=body["threadId"])
    refused = live.client.post(again, BOB)
    assert refused.status == 403 and refused.body["error"]["code"] == "forbidden"
    assert len(live.openai.chat_requests()) == 1
    mine = live.client.post(run_input([user("続き")], thread_id=body["threadId"]), ALICE)
    assert mine.status == 200
    validate_events(mine.events)


def test_a_second_run_on_a_busy_thread_gets_409(live: LiveAgui) -> None:
    """ランが実行中のスレッドへの 2 つ目の POST は 409。1 つ目を閉じれば、そのスレッドはまた使える。"""
    thread_id = new_id("thread")
    conn, response = live.client.open(run_input([user("[stall] 待って")], thread_id=thread_id), ALICE)
    try:
        events = []
        for kind, value in read_frames(response):
            if kind != "data":
                continue
            events.append(value)
            if value["type"] == "TEXT_MESSAGE_CONTENT":
                break
        validate_events(events, partial=True)
        busy = live.client.post(run_input([user("割り込み")], thread_id=thread_id), ALICE)
        assert busy.status == 409 and busy.body["error"]["code"] == "run_in_progress"
    finally:
        response.raw_socket.shutdown(socket.SHUT_RDWR)
        response.raw_socket.close()
        conn.close()
    assert live.openai.server.client_disconnected.wait(2.0)
    deadline_result = None
    for _ in range(100):
        deadline_result = live.client.post(run_input([user("もう一度")], thread_id=thread_id), ALICE)
        if deadline_result.status != 409:
            break
    assert deadline_result is not None and deadline_result.status == 200
    validate_events(deadline_result.events)
    assert json.dumps(deadline_result.events).count("RUN_STARTED") == 1


def test_cors_follows_the_bus_origin_rule(live: LiveAgui) -> None:
    """ブラウザの別オリジン: localhost は既定で許され (プリフライトに 204)、ほかのオリジンは 403 で何も動かない。"""
    import http.client

    port = live.process.port
    headers = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    for origin, status in ((f"http://localhost:{port + 1}", 204), ("http://evil.example", 403)):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("OPTIONS", "/agui", headers={**headers, "Origin": origin})
        response = conn.getresponse()
        response.read()
        assert response.status == status, origin
        if status == 204:
            assert response.getheader("Access-Control-Allow-Origin") == origin
            assert "Authorization" in response.getheader("Access-Control-Allow-Headers")
        else:
            assert response.getheader("Access-Control-Allow-Origin") is None
        conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps(run_input([user("こんにちは")]))
    conn.request(
        "POST",
        "/agui",
        body=body,
        headers={
            "Content-Type": "application/json",
            "Authorization": f"Bearer {ALICE}",
            "Origin": "http://evil.example",
        },
    )
    response = conn.getresponse()
    assert response.status == 403 and json.loads(response.read())["error"]["code"] == "forbidden"
    conn.close()
    assert live.openai.chat_requests() == []
