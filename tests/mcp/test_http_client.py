"""streamable HTTP の MCP サーバー (FastMCP + uvicorn の本物、空きポート) に対するクライアントのテスト。

JSON の答えと SSE の答えの両方で: ハンドシェイク、ヘッダ (Accept、Mcp-Session-Id、MCP-Protocol-Version、設定の
ヘッダと ``${VAR}``)、通知への 202、結果、isError、取り消し、閉じるときの DELETE を、サーバーが見たもので確かめる。
"""

from __future__ import annotations

import logging
import threading

import pytest

from llm_router.config.schema import McpServerConfig
from llm_router.core.cancel import CancelToken
from llm_router.core.schemas.errors import RequestCancelled
from llm_router.mcp.errors import McpToolError, McpUnavailable
from llm_router.mcp.tools import CombinedToolRegistry
from tests.mcp.helpers import HttpMcpServer, read_events, received, settings_with, wait_for_event
from tests.realtime.harness import free_port, wait_until

TOKEN = "mcp-token-NEVER-LOG-4711"


@pytest.fixture(params=[True, False], ids=["json", "sse"])
def http_server(request, events):
    """JSON で答える / SSE で答える FastMCP の HTTP サーバー (テストの終わりに止める)。"""
    with HttpMcpServer(events, json_response=request.param) as server:
        yield server


def http_settings(server: HttpMcpServer, **overrides):
    """Authorization ヘッダを ``${MCP_TOKEN}`` で持つ HTTP サーバーの設定。"""
    config = McpServerConfig(
        transport="http", url=server.url, headers={"Authorization": "Bearer ${MCP_TOKEN}"}, **overrides
    )
    return settings_with({"remote": config}, environ={"MCP_TOKEN": TOKEN})


def requests_seen(events) -> list[dict]:
    """サーバーが受けた HTTP リクエストの記録。"""
    return [e for e in read_events(events) if e["kind"] == "request"]


def test_handshake_headers_session_and_answers(build, events, http_server, caplog):
    """Accept と設定のヘッダは毎回。セッション ID は initialize の答えから、版のヘッダはハンドシェイクの後から。"""
    caplog.set_level(logging.DEBUG)
    tool_set = build(http_settings(http_server))
    registry = CombinedToolRegistry(None, tool_set)
    assert "remote__echo" in registry.names() and registry.source("remote__echo") == "mcp:remote"
    assert registry.call("remote__echo", {"text": "やあ"}) == {"result": "echo: やあ"}
    seen = [r for r in requests_seen(events) if r["method"] == "POST"]
    assert [r["body"]["method"] for r in seen[:3]] == ["initialize", "notifications/initialized", "tools/list"]
    for r in seen:
        assert r["headers"]["accept"] == "application/json, text/event-stream"
        assert r["headers"]["authorization"] == f"Bearer {TOKEN}"
    session = next(
        e["session_id"] for e in read_events(events) if e["kind"] == "response" and e["request"] == "initialize"
    )
    assert session
    assert "mcp-session-id" not in seen[0]["headers"] and "mcp-protocol-version" not in seen[0]["headers"]
    for r in seen[1:]:
        assert r["headers"]["mcp-session-id"] == session
        assert r["headers"]["mcp-protocol-version"] == "2025-11-25"
    responses = {e["request"]: e for e in read_events(events) if e["kind"] == "response"}
    assert responses["notifications/initialized"]["status"] == 202
    expected = "application/json" if http_server.json_response else "text/event-stream"
    assert responses["tools/call"]["content_type"].startswith(expected)
    assert all(TOKEN not in r.getMessage() for r in caplog.records)


def test_results_and_is_error_over_http(build, events, http_server):
    """画像と構造化された結果、isError が HTTP でも同じに変換される。"""
    registry = CombinedToolRegistry(None, build(http_settings(http_server)))
    picture = registry.call("remote__picture", {"caption": "点"})
    assert [c["type"] for c in picture["content"]] == ["text", "image"]
    assert registry.call("remote__forecast", {"city": "那覇"})["city"] == "那覇"
    with pytest.raises(McpToolError) as info:
        registry.call("remote__fail", {"reason": "no"})
    assert "refused: no" in info.value.message


def test_negotiated_version_goes_in_the_header(build, events, http_server):
    """2025-06-18 で取り決めたら、以後のヘッダはその版。"""
    settings = http_settings(http_server)
    settings.config.mcp.protocol_version = "2025-06-18"
    tool_set = build(settings)
    tool_set.servers["remote"].ping()
    later = [r for r in requests_seen(events) if r["method"] == "POST"][1:]
    assert later and all(r["headers"]["mcp-protocol-version"] == "2025-06-18" for r in later)


def test_cancel_over_http_posts_notifications_cancelled(build, events, http_server):
    """遅いツールの途中で取り消すと、呼び出しはすぐ戻り、notifications/cancelled が POST される。"""
    registry = CombinedToolRegistry(None, build(http_settings(http_server)))
    registry.names()
    token = CancelToken()
    outcome: dict[str, BaseException] = {}

    def call() -> None:
        """遅いツールを呼ぶ。"""
        try:
            registry.call("remote__slow", {"seconds": 60}, token)
        except BaseException as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=call)
    worker.start()
    wait_for_event(events, lambda e: e.get("event") == "slow_started")
    token.cancel("client")
    worker.join(10)
    assert not worker.is_alive() and isinstance(outcome["error"], RequestCancelled)
    call_id = next(m["id"] for m in received(events, "tools/call") if m["params"]["name"] == "slow")
    notice = wait_until(lambda: received(events, "notifications/cancelled"))[0]
    assert notice["params"]["requestId"] == call_id
    wait_for_event(events, lambda e: e.get("event") == "slow_cancelled")
    assert registry.call("remote__echo", {"text": "次"}) == {"result": "echo: 次"}


def test_list_changed_arrives_on_the_notification_stream(build, events, http_server):
    """GET の通知ストリームを開き、そこに来た list_changed で一覧を取り直す。"""
    registry = CombinedToolRegistry(None, build(http_settings(http_server)))
    assert "remote__added" not in registry.names()
    gets = wait_until(lambda: [r for r in requests_seen(events) if r["method"] == "GET"])
    assert gets[0]["headers"]["accept"] == "text/event-stream" and gets[0]["headers"]["mcp-session-id"]
    assert registry.call("remote__grow", {}) == {"result": "grown"}
    wait_until(lambda: "remote__added" in registry.names(), timeout=10)
    assert registry.call("remote__added", {}) == {"result": "added tool"}


def test_close_deletes_the_session(build, events, http_server):
    """止めるとき、セッション ID を付けて DELETE する。"""
    tool_set = build(http_settings(http_server))
    tool_set.servers["remote"].ensure()
    session = tool_set.servers["remote"].connection.transport.session_id
    tool_set.close()
    delete = wait_until(lambda: [r for r in requests_seen(events) if r["method"] == "DELETE"])[0]
    assert delete["headers"]["mcp-session-id"] == session


def test_unreachable_server_gives_an_error_with_the_reason(build):
    """誰も待っていないポート: 一覧は空、呼び出しは 'unreachable' の理由で失敗する (URL は文に出さない)。"""
    url = f"http://127.0.0.1:{free_port()}/mcp?key=secret-in-url"
    tool_set = build(settings_with({"down": McpServerConfig(transport="http", url=url)}))
    assert tool_set.tools() == {}
    with pytest.raises(McpUnavailable) as info:
        tool_set.servers["down"].call("echo", {"text": "x"})
    assert "MCP server 'down' is unreachable" in info.value.message and "secret-in-url" not in info.value.message


def test_an_answer_over_the_size_limit_fails_that_call(build, events, http_server):
    """max_message_bytes を超える答え: その呼び出しは理由つきで失敗し、同じセッションで次の呼び出しは答える。"""
    settings = http_settings(http_server)
    settings.config.mcp.max_message_bytes = 100_000
    registry = CombinedToolRegistry(None, build(settings))
    with pytest.raises(McpUnavailable) as info:
        registry.call("remote__big", {"size": 300_000})
    assert "answered tools/call with more than 100000 bytes" in info.value.message
    assert registry.call("remote__big", {"size": 10}) == {"result": "x" * 10}
