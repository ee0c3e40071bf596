"""エンドツーエンド: 本物のサーバー (eventlet と threading) に mcpServers 形式のファイルで stdio と HTTP の
MCP サーバーを 1 つずつ設定し、偽の OpenAI (規則モード) に MCP のツールを呼ばせる。

ack にツールと source が載ること、ランでの呼び出し、エラーの結果、遅い呼び出しの途中の ``cancel`` で
ランがすぐ終わり notifications/cancelled が届くこと、落ちた stdio サーバーが次の呼び出しで起動し直すことを確かめる。
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_fake import OpenAIFake
from tests.mcp.helpers import HttpMcpServer, read_events, received, wait_for_event
from tests.realtime.conftest import FAKE_OPENAI_KEY, base_overrides, run_events
from tests.realtime.harness import ProtocolClient, ServerProcess, wait_until

MCP_TOKEN = "mcp-e2e-token-NEVER-LOG-8080"


class Setup:
    """起動したものの一式 (llm_router、HTTP の MCP サーバー、記録ファイル)。"""

    def __init__(self, server: ServerProcess, stdio_events: Path, http_events: Path) -> None:
        """部品を受け取る。"""
        self.server = server
        self.stdio_events = stdio_events
        self.http_events = http_events

    def client(self) -> ProtocolClient:
        """クライアント (``with`` で接続し、抜けるときに切る)。"""
        return ProtocolClient(self.server.url)


@pytest.fixture(scope="module", params=["eventlet", "threading"])
def setup(request, tmp_path_factory) -> Iterator[Setup]:
    """偽の OpenAI、HTTP の MCP サーバー (SSE)、mcpServers ファイル、llm_router を起動する (最後にすべて止める)。"""
    tmp = tmp_path_factory.mktemp("mcp-e2e")
    stdio_events, http_events = tmp / "stdio.jsonl", tmp / "http.jsonl"
    with OpenAIFake(rules=True) as fake, HttpMcpServer(http_events, json_response=False) as http:
        config = {
            "mcpServers": {
                "local": {
                    "command": str(Path(__import__("sys").executable)),
                    "args": ["-m", "tests.mcp.servers.fast_server"],
                    "env": {"MCP_TEST_EVENTS": str(stdio_events)},
                },
                "remote": {"type": "http", "url": http.url, "headers": {"Authorization": "Bearer ${MCP_TOKEN}"}},
                "broken": {"command": str(tmp / "no-such-mcp-server")},
            }
        }
        path = tmp / "mcp.json"
        path.write_text(json.dumps(config), encoding="utf-8")
        overrides = [*base_overrides(fake), f"mcp.config_file={path}"]
        secrets = {"OPENAI_API_KEY": FAKE_OPENAI_KEY, "MCP_TOKEN": MCP_TOKEN}
        server = ServerProcess(overrides, secrets=secrets, async_mode=request.param, log_dir=tmp)
        try:
            server.start()
            yield Setup(server, stdio_events, http_events)
        finally:
            server.close()
        # llm_router を止めると、stdio の MCP サーバーは止まり、HTTP のセッションは DELETE される
        pids = [e["pid"] for e in read_events(stdio_events) if e.get("event") == "started"]
        assert pids
        wait_until(lambda: not any(alive(pid) for pid in pids), timeout=10)
        assert [r for r in read_events(http_events) if r["kind"] == "request" and r["method"] == "DELETE"]
        log = server.log_text()
        assert MCP_TOKEN not in log


def alive(pid: int) -> bool:
    """そのプロセスがまだ居れば真 (ゾンビは居ないとみなす)。"""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def run(client: ProtocolClient, thread_id: str, text: str) -> tuple[dict, list[dict]]:
    """メッセージを送り、ランの終わりのイベントとランの全イベントを返す。"""
    run_id = client.send_message(thread_id, text)["run_id"]
    end = client.wait_run_end(run_id, timeout=30)
    return end, run_events(client, run_id)


def tool_result(events: list[dict]) -> dict:
    """ランの最初の tool_result。"""
    return next(e for e in events if e["type"] == "tool_result")


def test_ack_lists_mcp_tools_with_their_source(setup):
    """ack の tools に MCP のツールが executor server と source mcp:<name> で載る (組み込みには source が無い)。
    起動できないサーバーのツールは出ず、理由が warnings に載る。"""
    with setup.client() as client:
        ack = client.start()
        tools = {t["name"]: t for t in ack["tools"]}
        assert tools["local__echo"] == {"name": "local__echo", "executor": "server", "source": "mcp:local"}
        assert tools["remote__forecast"] == {"name": "remote__forecast", "executor": "server", "source": "mcp:remote"}
        assert "source" not in tools["calculator"]
        assert not [name for name in tools if name.startswith("broken__")]
        assert any("MCP server 'broken' could not be started" in w for w in ack["warnings"])
        selected = client.start(server_tools=["remote__echo"])
        assert [t["name"] for t in selected["tools"] if t["executor"] == "server"] == ["remote__echo"]
        refused = client.start(server_tools=["local__nope"])
        assert refused["ok"] is False and "server_tools[0]" in refused["error"]["message"]


def test_runs_call_stdio_and_http_tools(setup):
    """stdio と HTTP のツールがランで呼ばれ、結果がモデルへ戻る。HTTP には設定のヘッダが届く。"""
    with setup.client() as client:
        thread_id = client.start()["thread_id"]
        end, events = run(client, thread_id, 'local__echo {"text": "こんにちは"}')
        result = tool_result(events)
        assert result["executor"] == "server" and result["is_error"] is False
        assert result["result"] == {"result": "echo: こんにちは"}
        assert end["type"] == "run_finished" and "echo: こんにちは" in end["text"]
        end, events = run(client, thread_id, 'remote__forecast {"city": "札幌"}')
        assert tool_result(events)["result"] == {"city": "札幌", "temperature_c": 21, "sky": "晴れ"}
        assert end["type"] == "run_finished"
        calls = [
            e
            for e in read_events(setup.http_events)
            if e["kind"] == "request" and (e["body"] or {}).get("method") == "tools/call"
        ]
        assert calls and calls[-1]["headers"]["authorization"] == f"Bearer {MCP_TOKEN}"


def test_tool_errors_come_back_as_error_results(setup):
    """isError はエラーの結果 (is_error true、ツールの文) になり、ランは続いて終わる。"""
    with setup.client() as client:
        thread_id = client.start()["thread_id"]
        end, events = run(client, thread_id, 'local__fail {"reason": "ノー"}')
        result = tool_result(events)
        assert result["is_error"] is True and "refused: ノー" in result["result"]
        assert end["type"] == "run_finished"


def test_cancel_during_a_slow_call_ends_the_run_at_once(setup):
    """遅い MCP の呼び出しの途中の cancel: ランはすぐ run_cancelled で終わり、サーバーは notifications/cancelled を受ける。"""
    with setup.client() as client:
        thread_id = client.start()["thread_id"]
        run_id = client.send_message(thread_id, 'local__slow {"seconds": 120}')["run_id"]
        wait_for_event(setup.stdio_events, lambda e: e.get("event") == "slow_started", timeout=20)
        assert client.call("cancel", {"thread_id": thread_id})["ok"] is True
        end = client.wait_run_end(run_id, timeout=10)
        assert end["type"] == "run_cancelled"
        call_id = [m["id"] for m in received(setup.stdio_events, "tools/call") if m["params"]["name"] == "slow"][-1]
        wait_until(
            lambda: any(
                m["params"]["requestId"] == call_id for m in received(setup.stdio_events, "notifications/cancelled")
            )
        )
        wait_for_event(setup.stdio_events, lambda e: e.get("event") == "slow_cancelled")
        # スレッドはすぐ次のメッセージを受け付ける
        end, _ = run(client, thread_id, 'local__echo {"text": "次"}')
        assert end["type"] == "run_finished"


def test_a_crashed_stdio_server_is_started_again_on_the_next_call(setup):
    """呼び出しの途中で落ちた stdio サーバー: エラーの結果 (理由つき)、次の呼び出しで起動し直して答える。"""
    with setup.client() as client:
        thread_id = client.start()["thread_id"]
        end, events = run(client, thread_id, "local__crash {}")
        result = tool_result(events)
        assert result["is_error"] is True and "MCP server 'local' stopped" in result["result"]
        assert end["type"] == "run_finished"
        starts = len(received(setup.stdio_events, "initialize"))
        end, events = run(client, thread_id, "local__pid {}")
        assert tool_result(events)["is_error"] is False and isinstance(tool_result(events)["result"]["result"], int)
        assert len(received(setup.stdio_events, "initialize")) == starts + 1
