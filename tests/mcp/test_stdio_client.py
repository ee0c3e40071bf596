"""stdio の MCP サーバー (FastMCP と低水準 API の本物) に対するクライアントのテスト。

ハンドシェイクと版の取り決め、ツールの一覧 (ページ分け、list_changed)、結果の変換、isError、取り消し
(サーバーが notifications/cancelled を受け取ったこと)、時間切れ、呼び出し中の異常終了と次の呼び出しでの再起動。
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
from tests.mcp.helpers import FAST, PAGED, read_events, received, settings_with, stdio_server, wait_for_event
from tests.realtime.harness import wait_until


def test_handshake_lists_tools_with_normalised_schemas(build, events):
    """initialize (私たちの版と clientInfo) → initialized → tools/list。ツールは <server>__<tool> で、スキーマは正規形。"""
    tool_set = build(settings_with({"fast": stdio_server(FAST, events)}))
    tools = tool_set.tools()
    assert {"fast__echo", "fast__picture", "fast__forecast", "fast__fail", "fast__slow", "fast__crash"} <= set(tools)
    echo = tools["fast__echo"]
    assert echo.source == "mcp:fast" and echo.tool == "echo"
    assert echo.parameters["type"] == "object" and echo.parameters["required"] == ["text"]
    assert "受け取った文" in echo.description
    methods = [e["message"].get("method") for e in read_events(events) if e["kind"] == "stdin"]
    assert methods[:3] == ["initialize", "notifications/initialized", "tools/list"]
    init = received(events, "initialize")[0]["params"]
    assert init["protocolVersion"] == "2025-11-25" and init["clientInfo"]["name"] == "llm_router"
    assert tool_set.servers["fast"].connection.protocol_version == "2025-11-25"


def test_version_negotiation_accepts_an_older_version(build, events):
    """2025-06-18 を名乗れば、サーバーはその版で答え、接続はその版になる。"""
    tool_set = build(
        settings_with(
            {"fast": stdio_server(FAST, events)},
            protocol_version="2025-06-18",
            accepted_protocol_versions=["2025-06-18", "2025-03-26"],
        )
    )
    tool_set.servers["fast"].ensure()
    assert tool_set.servers["fast"].connection.protocol_version == "2025-06-18"


def test_version_negotiation_refuses_a_version_we_do_not_accept(build, events):
    """サーバーが受け入れていない版で答えたら切り、理由 (その版と受け入れる版) を示す。"""
    tool_set = build(
        settings_with(
            {"fast": stdio_server(FAST, events)},
            protocol_version="2030-01-01",
            accepted_protocol_versions=["2030-01-01"],
        )
    )
    with pytest.raises(McpUnavailable) as info:
        tool_set.servers["fast"].ensure()
    assert "'2025-11-25'" in info.value.message and "2030-01-01" in info.value.message
    assert tool_set.tools() == {}


def test_results_text_image_structured_and_is_error(build, events):
    """テキストは文字列、テキスト+画像は content のリスト、構造化は structuredContent、isError は McpToolError。"""
    tool_set = build(settings_with({"fast": stdio_server(FAST, events)}))
    registry = CombinedToolRegistry(None, tool_set)
    assert registry.call("fast__echo", {"text": "やあ"}) == {"result": "echo: やあ"}
    picture = registry.call("fast__picture", {"caption": "赤い点"})
    assert picture["content"][0] == {"type": "text", "text": "赤い点"}
    image = picture["content"][1]
    assert image["type"] == "image" and image["mime_type"] == "image/png" and image["data"].startswith("iVBOR")
    assert registry.call("fast__forecast", {"city": "札幌"}) == {"city": "札幌", "temperature_c": 21, "sky": "晴れ"}
    with pytest.raises(McpToolError) as info:
        registry.call("fast__fail", {"reason": "だめ"})
    assert "refused: だめ" in info.value.message
    assert registry.source("fast__echo") == "mcp:fast" and registry.enabled([]) == registry.names()


def test_invalid_arguments_are_refused_before_the_call(build, events):
    """スキーマに合わない引数はサーバーへ送らずに断る。"""
    tool_set = build(settings_with({"fast": stdio_server(FAST, events)}))
    registry = CombinedToolRegistry(None, tool_set)
    with pytest.raises(Exception) as info:
        registry.call("fast__echo", {"text": 5})
    assert "invalid arguments for tool 'fast__echo'" in str(info.value)
    assert not [m for m in received(events, "tools/call") if m["params"]["name"] == "echo"]


def test_cancel_sends_notifications_cancelled_and_returns_at_once(build, events):
    """遅いツールの途中でトークンを立てると、呼び出しはすぐ戻り、サーバーは notifications/cancelled を受け取る。"""
    tool_set = build(settings_with({"fast": stdio_server(FAST, events)}))
    registry = CombinedToolRegistry(None, tool_set)
    token = CancelToken()
    outcome: dict[str, BaseException] = {}

    def call() -> None:
        """遅いツールを呼ぶ。"""
        try:
            registry.call("fast__slow", {"seconds": 60}, token)
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
    assert notice["params"] == {"requestId": call_id, "reason": "client"}
    wait_for_event(events, lambda e: e.get("event") == "slow_cancelled")
    # 同じプロセスがそのまま次の呼び出しに答える
    assert registry.call("fast__echo", {"text": "まだ居る"}) == {"result": "echo: まだ居る"}
    assert tool_set.servers["fast"].starts == 1


def test_call_timeout_cancels_the_request(build, events):
    """call_timeout_s を過ぎたら理由つきで失敗し、サーバーには reason "timeout" の取り消しが届く。"""
    tool_set = build(settings_with({"fast": stdio_server(FAST, events, call_timeout_s=0.5)}))
    with pytest.raises(McpUnavailable) as info:
        tool_set.servers["fast"].call("slow", {"seconds": 60})
    assert "did not answer tools/call within 0.5s" in info.value.message
    notice = wait_until(lambda: received(events, "notifications/cancelled"))[0]
    assert notice["params"]["reason"] == "timeout"


def test_crash_mid_call_gives_the_reason_and_the_next_call_restarts(build, events):
    """呼び出しの途中でプロセスが終わると理由 (終了コード) つきで失敗し、次の呼び出しで起動し直す。"""
    tool_set = build(settings_with({"fast": stdio_server(FAST, events)}))
    server = tool_set.servers["fast"]
    first_pid = server.call("pid", {})["structuredContent"]["result"]
    with pytest.raises(McpUnavailable) as info:
        server.call("crash", {})
    assert "MCP server 'fast' stopped (exit code 3)" in info.value.message
    second_pid = server.call("pid", {})["structuredContent"]["result"]
    assert second_pid != first_pid and server.starts == 2
    assert received(events, "initialize")[1]["params"]["protocolVersion"] == "2025-11-25"


def test_ping_and_stderr_goes_to_our_log(build, events, caplog):
    """ping に空の結果が返る。サーバーの標準エラーは私たちのロガーに行として流れる。"""
    caplog.set_level(logging.INFO, logger="llm_router.mcp")
    tool_set = build(settings_with({"fast": stdio_server(FAST, events)}))
    tool_set.servers["fast"].ping()
    assert received(events, "ping")
    wait_until(lambda: any("MCP server fast stderr:" in r.getMessage() for r in caplog.records))


def test_child_gets_only_inherited_and_configured_environment(build, events, monkeypatch):
    """子プロセスには inherited_env と設定の env だけが渡る (親の API キーは渡らない)。"""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-parent-NEVER-PASS")
    server = stdio_server(FAST, events, env={"GREETING": "${MCP_GREETING}"})
    tool_set = build(settings_with({"fast": server}, environ={"MCP_GREETING": "こんにちは"}))
    registry = CombinedToolRegistry(None, tool_set)
    assert registry.call("fast__getenv", {"name": "GREETING"}) == {"result": "こんにちは"}
    assert registry.call("fast__getenv", {"name": "OPENAI_API_KEY"}) == {"result": "<unset>"}
    assert registry.call("fast__getenv", {"name": "PATH"}) != {"result": "<unset>"}


def test_pagination_follows_next_cursor(build, events):
    """tools/list を nextCursor が無くなるまで繰り返す (25 + grow を 10 ずつ)。"""
    tool_set = build(settings_with({"paged": stdio_server(PAGED, events, "--tools", "25", "--page", "10")}))
    names = list(tool_set.tools())
    assert names == [f"paged__t{i:02d}" for i in range(25)] + ["paged__grow"]
    cursors = [m.get("params", {}).get("cursor") for m in received(events, "tools/list")]
    assert cursors == [None, "10", "20"]
    assert CombinedToolRegistry(None, tool_set).call("paged__t07", {"n": 3}) == "t07:3"


def test_list_changed_refreshes_the_tools(build, events):
    """サーバーが notifications/tools/list_changed を送ると一覧を取り直し、新しいツールが使える。"""
    tool_set = build(settings_with({"paged": stdio_server(PAGED, events, "--tools", "3", "--page", "2")}))
    registry = CombinedToolRegistry(None, tool_set)
    assert "paged__added_4" not in registry.names()
    assert registry.call("paged__grow", {}) == "added added_4"
    wait_until(lambda: "paged__added_4" in registry.names(), timeout=10)
    assert registry.call("paged__added_4", {"n": 1}) == "added_4:1"


def test_a_server_that_cannot_start_gives_a_reason(build, tmp_path):
    """実行ファイルが無いサーバー: 一覧には何も出ず、呼び出しは理由つきで失敗する。"""
    missing = tmp_path / "no-such-server"
    tool_set = build(settings_with({"gone": McpServerConfig(command=[str(missing), "--stdio"])}))
    assert tool_set.tools() == {}
    warnings = CombinedToolRegistry(None, tool_set).warnings()
    assert len(warnings) == 1 and "MCP server 'gone' could not be started" in warnings[0]
    with pytest.raises(McpUnavailable) as info:
        tool_set.servers["gone"].call("echo", {"text": "x"})
    assert "MCP server 'gone' could not be started: FileNotFoundError" in info.value.message


def test_a_slow_starting_server_times_out_and_is_retried_on_the_next_call(build, events):
    """initialize に startup_timeout_s までに答えないサーバー: 理由つきで失敗 (initialize は取り消さない)、
    プロセスは止め、次の呼び出しでまた起動する。"""
    # 2 秒後に標準入力を読み始める: 止めるときに (shutdown_timeout_s のあいだに) 届いていたものをすべて記録して終わる
    server = stdio_server(FAST, events, "--start-delay", "2", startup_timeout_s=1.0)
    tool_set = build(settings_with({"sleepy": server}, shutdown_timeout_s=10.0))
    with pytest.raises(McpUnavailable) as info:
        tool_set.servers["sleepy"].call("echo", {"text": "x"})
    assert "did not answer initialize within 1s" in info.value.message
    with pytest.raises(McpUnavailable):
        tool_set.servers["sleepy"].call("echo", {"text": "x"})
    assert tool_set.servers["sleepy"].starts == 2
    started = [e for e in read_events(events) if e.get("event") == "started"]
    assert len(started) == 2
    assert len(received(events, "initialize")) == 2
    assert not received(events, "notifications/cancelled")


def test_eager_servers_start_without_being_used(build, events, tmp_path):
    """start: eager のサーバーは、使われる前に (起動時に) 立ち上がる。lazy のサーバーは使われるまで起動しない。"""
    lazy_events = tmp_path / "lazy.jsonl"
    tool_set = build(
        settings_with({"early": stdio_server(FAST, events, start="eager"), "late": stdio_server(FAST, lazy_events)})
    )
    tool_set.start_eager()
    # 接続ができ、ツールの一覧を取るところまで (使われる前に) 進む
    wait_until(lambda: tool_set.servers["early"].connected and received(events, "tools/list"), timeout=20)
    assert not tool_set.servers["late"].connected and not lazy_events.exists()


def test_a_message_over_the_size_limit_disconnects_with_the_reason(build, events):
    """max_message_bytes を超える答え: 呼び出しは理由つきで失敗し、次の呼び出しで起動し直して答える。"""
    tool_set = build(settings_with({"fast": stdio_server(FAST, events)}, max_message_bytes=100_000))
    server = tool_set.servers["fast"]
    with pytest.raises(McpUnavailable) as info:
        server.call("big", {"size": 300_000})
    assert "MCP server 'fast' sent a message larger than 100000 bytes" in info.value.message
    assert server.call("big", {"size": 10})["structuredContent"] == {"result": "x" * 10}
    assert server.starts == 2


def test_requests_from_the_server_are_answered(build, events):
    """サーバーからの ping には空の結果で、未対応の要求 (roots/list) には -32601 で答える (ツールは止まらない)。"""
    tool_set = build(settings_with({"fast": stdio_server(FAST, events)}))
    registry = CombinedToolRegistry(None, tool_set)
    assert registry.call("fast__ping_client", {}) == {"result": "pong"}
    refused = registry.call("fast__ask_roots", {})["result"]
    assert refused.startswith("roots refused:") and "not supported" in refused
    answers = [e["message"] for e in read_events(events) if e["kind"] == "stdin" and "method" not in e["message"]]
    assert {"result": {}} in [{k: v for k, v in a.items() if k == "result"} for a in answers]
    assert any(a.get("error", {}).get("code") == -32601 for a in answers)
