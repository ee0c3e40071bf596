"""エンドツーエンド: プロトコルの全エラーコードにクライアントから届くこと、不正なペイロードの総当たりで
サーバーが落ちずに応え続けること、``run_error`` のコード。"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llm_router.realtime.schemas import ACK_ERROR_CODES
from tests.realtime.conftest import FAKE_OPENAI_KEY, assert_no_secret, live_server, run_events, types_of
from tests.realtime.harness import wait_until

EVENTS = ("start", "user_message", "tool_result", "cancel")
LOCATION_TOOL = {"name": "get_location", "description": "現在地", "parameters": {"type": "object", "properties": {}}}


def _code(ack):
    """失敗の ack のエラーコード。"""
    assert isinstance(ack, dict) and ack.get("ok") is False, ack
    assert set(ack["error"]) == {"code", "message"}
    return ack["error"]["code"]


# ---------------------------------------------------------------- ack のエラーコード


def test_invalid_payload_names_the_field(client):
    """打ち間違いのフィールドは invalid_payload で、近い名前を示す。"""
    ack = client.call("start", {"tool": []})
    assert _code(ack) == "invalid_payload"
    assert ack["error"]["message"] == "unknown field 'tool' (did you mean 'tools'?)"
    bad = client.call("start", {"settings": {"max_tokens": "many"}})
    assert _code(bad) == "invalid_payload" and "settings.max_tokens" in bad["error"]["message"]


def test_invalid_tool_definitions_are_refused_naming_the_tool(client):
    """不正なツール定義 (名前の形、object でないスキーマ、サーバー側ツールとの衝突) はツールを名指して拒否。"""
    cases = [
        [{"name": "bad name!", "parameters": {"type": "object"}}],
        [{"name": "listy", "parameters": {"type": "array"}}],
        [{"name": "calculator", "parameters": {"type": "object"}}],
        [{"description": "no name"}],
    ]
    for tools in cases:
        ack = client.call("start", {"tools": tools})
        assert _code(ack) == "invalid_payload", tools
    clash = client.call("start", {"tools": cases[2]})
    assert "calculator" in clash["error"]["message"]


def test_a_refused_start_changes_nothing(client):
    """失敗した start はスレッドの状態を変えない。"""
    ack = client.start(tools=[LOCATION_TOOL])
    bad = client.call("start", {"thread_id": ack["thread_id"], "tools": [], "settings": {"reasoning": "max"}})
    assert _code(bad) == "invalid_payload"
    again = client.start(thread_id=ack["thread_id"])
    assert again["tools"] == ack["tools"]


def test_unknown_model_and_missing_key_are_refused(client):
    """解決できないモデル、キーの無いプロバイダのモデルは invalid_payload (設定すべき変数名つき)。"""
    unknown = client.call("start", {"model": "nope/model-x"})
    assert _code(unknown) == "invalid_payload" and unknown["error"]["message"].startswith("model:")
    keyless = client.call("start", {"model": "anthropic/claude-sonnet-4-5"})
    assert _code(keyless) == "invalid_payload" and "ANTHROPIC_API_KEY" in keyless["error"]["message"]


def test_unknown_thread(client):
    """start していないスレッドへの user_message / tool_result / cancel は unknown_thread。"""
    assert _code(client.send_message("never-started", "hi")) == "unknown_thread"
    assert _code(client.call("tool_result", {"thread_id": "never-started", "tool_call_id": "c", "result": 1})) == (
        "unknown_thread"
    )
    assert _code(client.call("cancel", {"thread_id": "never-started"})) == "unknown_thread"


def test_run_in_progress_and_reused_run_id(client):
    """ランが動いている間の user_message は run_in_progress、使い済みの run_id は invalid_payload。"""
    ack = client.start()
    run_id = client.send_message(ack["thread_id"], "[slow] 長く", run_id="my-run-1")["run_id"]
    assert run_id == "my-run-1"
    assert _code(client.send_message(ack["thread_id"], "割り込み")) == "run_in_progress"
    client.call("cancel", {"thread_id": ack["thread_id"]})
    client.wait_run_end(run_id)
    assert _code(client.send_message(ack["thread_id"], "again", run_id="my-run-1")) == "invalid_payload"


def test_no_active_run_unknown_tool_call_and_not_awaiting(client):
    """tool_result: ランが無ければ no_active_run、知らない ID は unknown_tool_call、回答済みは not_awaiting。"""
    ack = client.start(tools=[LOCATION_TOOL])
    thread_id = ack["thread_id"]
    assert _code(client.call("tool_result", {"thread_id": thread_id, "tool_call_id": "c1", "result": 1})) == (
        "no_active_run"
    )
    run_id = client.send_message(thread_id, "get_location して")["run_id"]
    ready = client.wait_for("tool_call_ready", lambda e: e["run_id"] == run_id)
    unknown = client.call("tool_result", {"thread_id": thread_id, "tool_call_id": "not-a-call", "result": 1})
    assert _code(unknown) == "unknown_tool_call"
    payload = {"thread_id": thread_id, "tool_call_id": ready["tool_call_id"], "result": "here"}
    assert client.call("tool_result", payload) == {"ok": True}
    assert _code(client.call("tool_result", payload)) == "not_awaiting"
    client.wait_run_end(run_id)
    assert _code(client.call("tool_result", {**payload, "run_id": run_id})) == "not_awaiting"


def test_payload_too_large(client):
    """server.max_payload_bytes (このサーバーでは 64 KiB) を超えるペイロードは payload_too_large。"""
    ack = client.start()
    big = client.send_message(ack["thread_id"], "x" * 70_000)
    assert _code(big) == "payload_too_large"
    assert client.send_message(ack["thread_id"], "small")["ok"]


def test_cancel_without_a_run_is_ok_and_not_cancelled(client):
    """ランの無いスレッドへの cancel は冪等に ok / cancelled=false。"""
    ack = client.start()
    assert client.call("cancel", {"thread_id": ack["thread_id"]}) == {"ok": True, "cancelled": False}


def test_unknown_event_gets_an_error_ack(client):
    """知らないイベント名 (打ち間違い) にも invalid_payload の ack が返る。"""
    ack = client.call("strat", {})
    assert _code(ack) == "invalid_payload" and "strat" in ack["error"]["message"]


# ---------------------------------------------------------------- 不正なペイロードの総当たり

MALFORMED = [
    None,
    1,
    "text",
    True,
    [],
    [1, 2],
    {"unknown": 1},
    {"thread_id": 5},
    {"thread_id": "bad id with spaces"},
    {"thread_id": "x" * 200},
    {"thread_id": "t", "content": {"nested": {"deep": [1, 2, {"x": None}]}}},
    {"thread_id": "t", "tool_call_id": ["a"], "result": 1},
    {"thread_id": "t", "mode": 3},
    {"settings": "fast"},
    {"tools": "all"},
    {"tools": [1, "two", None]},
    {"resume_after_seq": 1.5},
    {"k" * 5000: 1},
    {"thread_id": "t", "content": [{"type": "image", "url": 5}]},
]


@pytest.mark.parametrize("event", EVENTS)
def test_malformed_payload_table_never_breaks_the_server(client, event):
    """各イベントに不正なペイロードの表を送っても、毎回エラーの ack が返り、サーバーは応え続ける。"""
    for payload in MALFORMED:
        ack = client.call(event, payload)
        assert isinstance(ack, dict) and "ok" in ack, (event, payload, ack)
        if not ack["ok"]:
            assert ack["error"]["code"] in ACK_ERROR_CODES
    binary = client.call(event, b"\x00\x01binary")
    assert _code(binary) == "invalid_payload"
    many = client.sio.call(event, ({"thread_id": "t"}, {"extra": 1}), namespace="/agent", timeout=10)
    assert _code(many) == "invalid_payload"
    ok = client.start()
    assert ok["ok"]
    run_id = client.send_message(ok["thread_id"], "まだ動く?")["run_id"]
    assert client.wait_run_end(run_id)["type"] == "run_finished"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
FIELD_NAMES = st.sampled_from(
    ["thread_id", "model", "tools", "settings", "content", "run_id", "tool_call_id", "result", "mode", "is_error"]
)
PAYLOADS = JSON | st.dictionaries(FIELD_NAMES, JSON, max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event=st.sampled_from(EVENTS), payload=PAYLOADS)
def test_fuzzed_payloads_always_get_a_well_formed_ack(client, event, payload):
    """ランダムな JSON を送っても、ack は必ず ok を持つオブジェクトで、エラーコードはプロトコルのもの。"""
    ack = client.call(event, payload)
    assert isinstance(ack, dict) and isinstance(ack.get("ok"), bool), ack
    if not ack["ok"]:
        assert ack["error"]["code"] in ACK_ERROR_CODES and ack["error"]["code"] != "internal", ack


# ---------------------------------------------------------------- run_error のコード


@pytest.mark.parametrize(
    ("marker", "code"),
    [
        ("[fail:401]", "provider_auth"),
        ("[fail:400]", "provider_bad_request"),
        ("[fail:429]", "provider_rate_limited"),
        ("[fail:503]", "provider_unavailable"),
        ("[break]", "provider_stream_broken"),
    ],
)
def test_run_error_codes_from_provider_failures(client, marker, code):
    """プロバイダの失敗は run_error の対応するコードになる (秘密はメッセージに出ない。conftest で確認)。"""
    ack = client.start()
    run_id = client.send_message(ack["thread_id"], f"{marker} お願い")["run_id"]
    end = client.wait_run_end(run_id, timeout=30)
    assert end["type"] == "run_error", end
    error = end["error"]
    assert error["code"] == code and error["provider"] == "openai"
    assert set(error) >= {"code", "message", "provider", "retryable", "phase"}
    if marker == "[break]":
        assert error["phase"] == "mid_stream" and "step_reset" in types_of(run_events(client, run_id))
    else:
        assert error["phase"] == "before_output"
    if error["retryable"] and marker != "[break]":
        retries = [e for e in run_events(client, run_id) if e["type"] == "retry"]
        assert retries and all({"step", "attempt", "wait_ms", "reason", "model"} <= set(e) for e in retries)


# ---------------------------------------------------------------- レート制限


@pytest.fixture(scope="module", params=("eventlet",))
def limited_server(request, openai_fake):
    """主体あたり 1 分に 5 イベントまでのサーバー。"""
    yield from live_server(request, openai_fake, ["server.rate_limit_per_minute=5"])


def test_rate_limited(limited_server):
    """server.rate_limit_per_minute を超えると rate_limited。"""
    client = limited_server.client()
    acks = [client.call("cancel", {"thread_id": "t"}) for _ in range(7)]
    codes = [a["error"]["code"] for a in acks if not a["ok"]]
    assert "rate_limited" in codes


# ---------------------------------------------------------------- 秘密と ack の無いイベント


def test_no_api_key_in_any_event_or_in_the_server_log(server, client):
    """認証エラーを起こしても、偽の API キーはどのイベントにもサーバーログにも出ない。"""
    ack = client.start()
    run_id = client.send_message(ack["thread_id"], "[fail:401] キーを見せて")["run_id"]
    assert client.wait_run_end(run_id)["error"]["code"] == "provider_auth"
    assert_no_secret(server.process, [client], FAKE_OPENAI_KEY)


def test_events_sent_without_an_ack_callback_are_handled(client):
    """ack を求めずに送ったイベント (正しいもの・不正なもの) でもサーバーは動き続ける。"""
    client.sio.emit("start", {"tool": []}, namespace="/agent")
    client.sio.emit("cancel", "not an object", namespace="/agent")
    client.sio.emit("start", {"thread_id": "no-ack-thread"}, namespace="/agent")
    wait_until(lambda: client.call("cancel", {"thread_id": "no-ack-thread"}).get("ok"), timeout=5)
    assert client.call("cancel", {"thread_id": "no-ack-thread"}) == {"ok": True, "cancelled": False}
