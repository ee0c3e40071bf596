"""AG-UI の公式 JavaScript クライアント (``@ag-ui/client`` の ``HttpAgent``) を headless Chromium で動かし、
本物のサーバーの ``POST /agui`` と話させる。クライアント自身の検証 (イベントの並びとスキーマ) を通ることと、
クライアントが組み立てたメッセージ (フロントエンドツールの往復、サーバー側ツールの結果) を確かめる。

ページはサーバーと同じオリジンの URL を Playwright の ``route`` で差し替えて出す (CORS 無しで /agui を呼べる)。
クライアントは tests/agui/vendor/ag-ui-client.js (npm の @ag-ui/client 1.0.0 を束ねたもの、README.md 参照)。
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agui.client import validate_events
from tests.agui.conftest import ALICE, LiveAgui

VENDOR = Path(__file__).parent / "vendor" / "ag-ui-client.js"
PAGE_PATH = "/agui-browser-test"

PAGE = """<!doctype html><meta charset="utf-8"><title>AG-UI client test</title>
<script src="/agui-browser-test/ag-ui-client.js"></script>
<script>
// HttpAgent でランを 1 回動かし、届いたイベントと、終わった後のメッセージを返す
window.runOnce = async (agent, params) => {
  const events = [];
  let failure = null;
  try {
    await agent.runAgent(params, { onEvent: ({ event }) => { events.push(JSON.parse(JSON.stringify(event))); } });
  } catch (err) {
    failure = String(err && err.message || err);
  }
  return { events, failure, messages: JSON.parse(JSON.stringify(agent.messages)) };
};
window.makeAgent = (token, threadId, url) => new AgUiClient.HttpAgent({
  url: url || "/agui",
  headers: token ? { Authorization: "Bearer " + token } : {},
  threadId,
});
</script>
"""

PANEL = {
    "name": "show_panel",
    "description": "画面にパネルを出す",
    "parameters": {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]},
}


def open_page(browser: Any, base: str) -> tuple[Any, Any, list[str]]:
    """オリジン ``base`` でテスト用のページを開く (ページとクライアントは route で差し替える)。"""
    context = browser.new_context()
    context.set_default_timeout(20_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # クライアントは受け取ったものを直したり捨てたりするときに console.warn で知らせる: 1 つも出ないこと
    page.on(
        "console", lambda msg: errors.append(f"{msg.type}: {msg.text}") if msg.type in ("warning", "error") else None
    )
    page.route(base + PAGE_PATH, lambda route: route.fulfill(status=200, content_type="text/html", body=PAGE))
    page.route(
        base + PAGE_PATH + "/ag-ui-client.js",
        lambda route: route.fulfill(status=200, content_type="text/javascript", body=VENDOR.read_text("utf-8")),
    )
    page.agui_errors = errors
    page.goto(base + PAGE_PATH)
    assert page.evaluate("typeof AgUiClient.HttpAgent") == "function"
    return context, page, errors


@pytest.fixture
def agui_page(browser: Any, agui: LiveAgui) -> Iterator[Any]:
    """サーバーのオリジンでテスト用のページを開く (例外と、クライアントの警告・エラーの表示が無いことを最後に確かめる)。"""
    context, page, errors = open_page(browser, agui.process.url)
    try:
        yield page
    finally:
        context.close()
    assert not errors, errors


pytestmark = pytest.mark.parametrize("agui", ["eventlet"], indirect=True)


def test_http_agent_frontend_tool_round_trip(agui_page: Any, live: LiveAgui) -> None:
    """ラン 1: モデルがフロントエンドツールを呼んでランが終わる。ページがツールの結果を足してラン 2 を動かすと答えが届く。"""
    script = """async ([token, panel]) => {
      const agent = window.makeAgent(token, "thread-browser-" + Math.random().toString(36).slice(2));
      agent.addMessage({ id: "u1", role: "user", content: 'show_panel で {"title": "売上"} を出して' });
      const first = await window.runOnce(agent, { runId: "run-b1", tools: [panel] });
      const assistant = first.messages.find((m) => m.role === "assistant" && m.toolCalls && m.toolCalls.length);
      if (assistant) {
        agent.addMessage({ id: "t1", role: "tool", toolCallId: assistant.toolCalls[0].id, content: "パネルを出しました" });
      }
      const second = await window.runOnce(agent, { runId: "run-b2", tools: [panel] });
      return { first, second };
    }"""
    out = agui_page.evaluate(script, [ALICE, PANEL])
    first, second = out["first"], out["second"]
    assert first["failure"] is None, first["failure"]
    assert second["failure"] is None, second["failure"]
    validate_events(first["events"])
    validate_events(second["events"])
    assert [e["type"] for e in first["events"]][-1] == "RUN_FINISHED"
    assert "TOOL_CALL_END" in [e["type"] for e in first["events"]]
    (assistant,) = [m for m in first["messages"] if m["role"] == "assistant"]
    (call,) = assistant["toolCalls"]
    assert call["function"]["name"] == "show_panel"
    assert call["function"]["arguments"].replace(" ", "") == '{"title":"売上"}'
    final = second["messages"][-1]
    assert final["role"] == "assistant" and final["content"] == "ツールの結果: パネルを出しました"
    # ラン 2 の上流には、クライアントが送った履歴 (ツールの呼び出しと結果) がそのまま届いた
    sent = live.openai.chat_requests()[-1]["messages"]
    assert sent[-1] == {"role": "tool", "tool_call_id": call["id"], "content": "パネルを出しました"}


def test_http_agent_sees_server_tool_results_and_text(agui_page: Any, live: LiveAgui) -> None:
    """サーバー側ツール (calculator) のラン: クライアントは TOOL_CALL_RESULT を tool メッセージにし、答えの文を持つ。"""
    script = """async (token) => {
      const agent = window.makeAgent(token, "thread-browser-calc");
      agent.addMessage({ id: "u1", role: "user", content: 'calculator で {"expression": "6*7"}' });
      return await window.runOnce(agent, { runId: "run-calc" });
    }"""
    out = agui_page.evaluate(script, ALICE)
    assert out["failure"] is None, out["failure"]
    validate_events(out["events"])
    roles = [m["role"] for m in out["messages"]]
    assert roles[:3] == ["user", "assistant", "tool"], roles
    tool = out["messages"][2]
    assert "42" in tool["content"]
    assert out["messages"][-1]["role"] == "assistant" and "42" in out["messages"][-1]["content"]


def test_http_agent_reasoning_then_a_follow_up_run(agui_page: Any, live: LiveAgui) -> None:
    """推論のラン (Anthropic の偽サーバー): クライアントは推論を reasoning メッセージにし、次のランでそれを
    送り返しても受け付けられる (上流へは送らない)。"""
    script = """async (token) => {
      const agent = window.makeAgent(token, "thread-browser-reasoning");
      const props = { model: "anthropic/claude-sonnet-4-6", settings: { reasoning: "low" } };
      agent.addMessage({ id: "u1", role: "user", content: "考えてから答えて" });
      const first = await window.runOnce(agent, { runId: "run-r1", forwardedProps: props });
      agent.addMessage({ id: "u2", role: "user", content: "もう一度" });
      const second = await window.runOnce(agent, { runId: "run-r2", forwardedProps: props });
      return { first, second };
    }"""
    out = agui_page.evaluate(script, ALICE)
    first, second = out["first"], out["second"]
    assert first["failure"] is None and second["failure"] is None, (first["failure"], second["failure"])
    validate_events(first["events"])
    validate_events(second["events"])
    reasoning = [m for m in first["messages"] if m["role"] == "reasoning"]
    assert reasoning and reasoning[0]["content"] == "ユーザーの依頼を検討しています。"
    assert second["messages"][-1]["role"] == "assistant"
    sent = live.anthropic.bodies()[-1]["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant", "user"]


def test_http_agent_without_token_fails_with_401(agui_page: Any, live: LiveAgui) -> None:
    """トークン無しの HttpAgent: runAgent は HTTP 401 のエラーで失敗し、上流へは何も送られない。"""
    script = """async () => {
      const agent = window.makeAgent(null, "thread-browser-anon");
      agent.addMessage({ id: "u1", role: "user", content: "こんにちは" });
      return await window.runOnce(agent, { runId: "run-anon" });
    }"""
    out = agui_page.evaluate(script)
    assert out["failure"] is not None and "401" in out["failure"]
    # ブラウザとクライアントが 401 を知らせる表示 (このテストでは期待どおり) だけを取り除く
    errors = agui_page.agui_errors
    errors[:] = [e for e in errors if "401" not in e and "Agent execution failed" not in e]
    assert live.openai.chat_requests() == []


def test_http_agent_abort_closes_the_upstream(agui_page: Any, live: LiveAgui) -> None:
    """ページが ``abortRun()`` でランを止める: サーバーはランを取り消し、上流の接続が 2 秒以内に閉じる。"""
    script = """async (token) => {
      const agent = window.makeAgent(token, "thread-browser-abort");
      agent.addMessage({ id: "u1", role: "user", content: "[stall] 長い話をして" });
      const events = [];
      const done = agent.runAgent({ runId: "run-abort" }, {
        onEvent: ({ event }) => {
          events.push(event.type);
          if (event.type === "TEXT_MESSAGE_CONTENT" && events.filter((t) => t === event.type).length === 1) {
            agent.abortRun();
          }
        },
      }).then(() => null, (err) => String(err && err.message || err));
      const failure = await done;
      return { events, failure };
    }"""
    out = agui_page.evaluate(script, ALICE)
    assert "TEXT_MESSAGE_CONTENT" in out["events"], out
    assert live.openai.server.client_disconnected.wait(2.0), "the upstream stayed open after abortRun()"


class PageServer:
    """テスト用のページと束ねたクライアントを配る、別のポートの本物の HTTP サーバー (別オリジンの試験用)。

    Playwright の ``route`` で差し替えたページはアドレスが無く、Chromium はそこからループバックへの要求を
    (Local Network Access として) 止めるので、別オリジンの試験には本物のループバックのサーバーを使う。
    """

    def __init__(self) -> None:
        """空きポートで起動する。"""
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            """ページとクライアントだけを返す。"""

            def log_message(self, format: str, *args: Any) -> None:
                """ログを出さない。"""

            def do_GET(self) -> None:
                """``PAGE_PATH`` はページ、``.../ag-ui-client.js`` は束ねたクライアント。"""
                if self.path == PAGE_PATH:
                    body, kind = PAGE.encode(), "text/html; charset=utf-8"
                elif self.path == PAGE_PATH + "/ag-ui-client.js":
                    body, kind = VENDOR.read_bytes(), "text/javascript"
                else:
                    self.send_response(204)  # favicon.ico など: 何も無い (404 の表示を出させない)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """止める。"""
        self.server.shutdown()
        self.server.server_close()


def test_http_agent_from_another_origin_follows_the_cors_rule(browser: Any, live: LiveAgui) -> None:
    """別オリジンのページ: 既定で許される 127.0.0.1 の別ポートからは通る。許されないオリジンからは止まり、上流へは何も行かない。"""
    url = live.process.url + "/agui"
    script = """async ([token, url]) => {
      const agent = window.makeAgent(token, "thread-cors-" + Math.random().toString(36).slice(2), url);
      agent.addMessage({ id: "u1", role: "user", content: "別のオリジンから" });
      return await window.runOnce(agent, { runId: "run-cors-" + Math.random().toString(36).slice(2) });
    }"""
    pages = PageServer()
    context = browser.new_context()
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda msg: errors.append(msg.text) if msg.type in ("warning", "error") else None)
        page.goto(pages.url + PAGE_PATH)
        out = page.evaluate(script, [ALICE, url])
    finally:
        context.close()
        pages.close()
    assert out["failure"] is None, (out["failure"], errors)
    validate_events(out["events"])
    assert out["messages"][-1]["content"] == "了解しました: 別のオリジンから"
    assert not errors, errors
    live.openai.reset()
    context, page, errors = open_page(browser, "http://evil.example")
    try:
        refused = page.evaluate(script, [ALICE, url])
    finally:
        context.close()
    assert refused["failure"] is not None and refused["events"] == []
    assert live.openai.chat_requests() == []
