"""エンドツーエンド: 接続トークン (``LLM_ROUTER_API_TOKENS``)、主体の隔離 (forbidden)、CORS。"""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest
import socketio

from tests.realtime.conftest import ASYNC_MODES, live_server

TOKEN_A = "token-alpha-1234567890"
TOKEN_B = "token-bravo-0987654321"


@pytest.fixture(scope="module", params=ASYNC_MODES)
def auth_server(request, openai_fake):
    """2 つのトークン (2 つの主体) を持つサーバー。"""
    yield from live_server(request, openai_fake, [], secrets={"LLM_ROUTER_API_TOKENS": f"{TOKEN_A},{TOKEN_B}"})


@pytest.mark.parametrize("token", [None, "", "wrong-token", TOKEN_A[:-1]])
def test_connection_without_a_valid_token_is_refused(auth_server, token):
    """トークンが無い・違う接続は connect_error (message: unauthorized) で拒否される。"""
    client = auth_server.client(token=token, connect=False)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(timeout=5)
    assert client.connect_errors and client.connect_errors[0]["message"] == "unauthorized"


def test_other_principal_is_forbidden_everywhere(auth_server):
    """別の主体は attach / send / cancel / tool_result のどれも forbidden。持ち主は使える。"""
    owner = auth_server.client(token=TOKEN_A)
    other = auth_server.client(token=TOKEN_B)
    ack = owner.start(tools=[{"name": "get_location", "parameters": {"type": "object", "properties": {}}}])
    thread_id = ack["thread_id"]
    run_id = owner.send_message(thread_id, "get_location して")["run_id"]
    ready = owner.wait_for("tool_call_ready", lambda e: e["run_id"] == run_id)
    attempts = [
        other.call("start", {"thread_id": thread_id, "resume_after_seq": 0}),
        other.send_message(thread_id, "のぞき見"),
        other.call("cancel", {"thread_id": thread_id}),
        other.call("tool_result", {"thread_id": thread_id, "tool_call_id": ready["tool_call_id"], "result": "x"}),
    ]
    for ack_ in attempts:
        assert ack_["ok"] is False and ack_["error"]["code"] == "forbidden", ack_
    assert other.event_payloads(thread_id=thread_id) == []
    # 持ち主の操作は影響を受けていない
    assert owner.call("tool_result", {"thread_id": thread_id, "tool_call_id": ready["tool_call_id"], "result": "ok"})[
        "ok"
    ]
    assert owner.wait_run_end(run_id)["type"] == "run_finished"
    # 同じトークンの別のソケットは同じ主体なので再接続できる
    same = auth_server.client(token=TOKEN_A)
    assert same.start(thread_id=thread_id, resume_after_seq=0)["ok"]


def _polling_handshake(url: str, origin: str) -> int:
    """Origin つきで engine.io の long-polling のハンドシェイクを送り、HTTP ステータスを返す。"""
    request = urllib.request.Request(f"{url}/socket.io/?EIO=4&transport=polling", headers={"Origin": origin})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_cors_allows_localhost_and_refuses_foreign_origins(auth_server):
    """既定の CORS: localhost のオリジンは通り、他のオリジンは拒否される (決して * ではない)。"""
    assert _polling_handshake(auth_server.url, "http://localhost:3000") == 200
    assert _polling_handshake(auth_server.url, auth_server.url) == 200
    assert _polling_handshake(auth_server.url, "https://evil.example") == 400
