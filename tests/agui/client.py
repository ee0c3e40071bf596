"""AG-UI のエンドポイントのテスト用の小さな HTTP クライアントと、公式の ``ag_ui.core`` のモデルによる検証。

- :class:`AguiClient`: ``RunAgentInput`` を ``POST`` し、``text/event-stream`` を行ごとに読む (本物の HTTP、
  ``http.client``)。``: keep-alive`` のコメント行も数える。途中で接続を閉じることもできる (abort のテスト)。
- :func:`validate_events`: すべてのイベントを ``ag_ui.core`` の ``Event`` (判別共用体) で検証し、さらに
  検証したモデルを camelCase で書き出したものが届いた JSON と同じであること (snake_case のキーや未知のキーが
  無いこと) と、AG-UI のクライアントが求める並びの規則を確かめる。
"""

from __future__ import annotations

import http.client
import json
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ag_ui.core import Event, RunAgentInput
from pydantic import TypeAdapter

EVENT_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)


@dataclass
class SSEResult:
    """1 回の POST の結果。"""

    status: int
    headers: dict[str, str]
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    body: Any = None

    def types(self) -> list[str]:
        """イベントの ``type`` の一覧 (届いた順)。"""
        return [e["type"] for e in self.events]

    def of(self, event_type: str) -> list[dict[str, Any]]:
        """指定した種類のイベント。"""
        return [e for e in self.events if e["type"] == event_type]

    def text(self) -> str:
        """``TEXT_MESSAGE_CONTENT`` の連結。"""
        return "".join(e["delta"] for e in self.of("TEXT_MESSAGE_CONTENT"))


def new_id(prefix: str) -> str:
    """テスト用の ID。"""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def user(text: str) -> dict[str, Any]:
    """AG-UI のユーザーメッセージ。"""
    return {"id": new_id("u"), "role": "user", "content": text}


def run_input(messages: list[dict[str, Any]], thread_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """``RunAgentInput`` の本文 (公式のモデルでも妥当であることを確かめてから返す)。"""
    body = {
        "threadId": thread_id or new_id("thread"),
        "runId": new_id("run"),
        "messages": messages,
        "tools": [],
        "context": [],
        "state": {},
        "forwardedProps": {},
        **extra,
    }
    RunAgentInput.model_validate(body)
    return body


class AguiClient:
    """``POST /agui`` を話すクライアント。

    Args:
        base_url: サーバーの URL (``http://127.0.0.1:PORT``)。
        path: エンドポイントのパス。
    """

    def __init__(self, base_url: str, path: str = "/agui") -> None:
        """接続先を覚える。"""
        parts = urlsplit(base_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80
        self.path = path

    def open(self, body: Any, token: str | None = None, raw: bytes | None = None) -> tuple[Any, Any]:
        """POST して、応答のヘッダまで読む。``(接続, 応答)`` を返す (閉じるのは呼び手)。"""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        payload = raw if raw is not None else json.dumps(body).encode()
        conn.request("POST", self.path, body=payload, headers=headers)
        sock = conn.sock  # http.client は接続を閉じる応答でこれを手放すので、abort のために先に持っておく
        response = conn.getresponse()
        response.raw_socket = sock
        return conn, response

    def post(self, body: Any, token: str | None = None, raw: bytes | None = None) -> SSEResult:
        """POST して最後まで読む。SSE なら各 ``data:`` 行を JSON として集める。"""
        conn, response = self.open(body, token, raw)
        try:
            result = SSEResult(response.status, {k.lower(): v for k, v in response.getheaders()})
            if not result.headers.get("content-type", "").startswith("text/event-stream"):
                text = response.read().decode("utf-8")
                result.body = json.loads(text) if text else None
                return result
            for kind, value in read_frames(response):
                if kind == "data":
                    result.events.append(value)
                else:
                    result.comments.append(value)
            return result
        finally:
            conn.close()


def read_frames(response: Any) -> Any:
    """SSE の本文を読み、``("data", イベント)`` か ``("comment", 文)`` を順に返す (1 イベント = 1 つの data 行)。"""
    data: list[str] = []
    while True:
        line = response.readline()
        if not line:
            return
        text = line.decode("utf-8").rstrip("\r\n")
        if text.startswith(":"):
            yield "comment", text[1:].strip()
        elif text.startswith("data:"):
            data.append(text[5:].lstrip())
        elif text == "" and data:
            yield "data", json.loads("\n".join(data))
            data = []


# ---------------------------------------------------------------- 検証


def validate_events(events: list[dict[str, Any]], partial: bool = False) -> list[Any]:
    """すべてのイベントを公式のモデルで検証し、並びの規則を確かめる。検証済みのモデルの一覧を返す。

    ``partial`` は途中で読むのをやめたストリーム (abort): 終わりのイベントが無いことだけを許す。
    """
    models = []
    for event in events:
        model = EVENT_ADAPTER.validate_python(event)
        dumped = EVENT_ADAPTER.dump_python(model, mode="json", by_alias=True, exclude_unset=True)
        assert dumped == event, f"event differs from its schema form (casing or unknown keys): {event} vs {dumped}"
        assert not (model.model_extra or {}), f"unknown fields in {event['type']}: {model.model_extra}"
        models.append(model)
    check_sequence(events, partial)
    return models


def check_sequence(events: list[dict[str, Any]], partial: bool = False) -> None:
    """AG-UI のクライアント (``@ag-ui/client`` の verify) が求める並び: 最初は RUN_STARTED、終わりは 1 つ、
    開いたもの (テキスト・推論・ツール呼び出し・ステップ) はすべて RUN_FINISHED の前に閉じる。"""
    assert events, "no events"
    assert events[0]["type"] == "RUN_STARTED", events[0]
    terminal = [i for i, e in enumerate(events) if e["type"] in ("RUN_FINISHED", "RUN_ERROR")]
    expected = [] if partial else [len(events) - 1]
    assert terminal == expected, f"terminal events at {terminal}: {[e['type'] for e in events]}"
    open_sets: dict[str, set[str]] = {"text": set(), "reasoning": set(), "span": set(), "tool": set(), "step": set()}
    opens = {
        "TEXT_MESSAGE_START": ("text", "messageId"),
        "REASONING_MESSAGE_START": ("reasoning", "messageId"),
        "REASONING_START": ("span", "messageId"),
        "TOOL_CALL_START": ("tool", "toolCallId"),
        "STEP_STARTED": ("step", "stepName"),
    }
    continues = {
        "TEXT_MESSAGE_CONTENT": ("text", "messageId"),
        "REASONING_MESSAGE_CONTENT": ("reasoning", "messageId"),
        "TOOL_CALL_ARGS": ("tool", "toolCallId"),
    }
    closes = {
        "TEXT_MESSAGE_END": ("text", "messageId"),
        "REASONING_MESSAGE_END": ("reasoning", "messageId"),
        "REASONING_END": ("span", "messageId"),
        "TOOL_CALL_END": ("tool", "toolCallId"),
        "STEP_FINISHED": ("step", "stepName"),
    }
    for event in events:
        kind = event["type"]
        if kind in opens:
            group, key = opens[kind]
            assert event[key] not in open_sets[group], f"{kind} reopens {event[key]}"
            open_sets[group].add(event[key])
        elif kind in continues or kind in closes:
            group, key = continues.get(kind) or closes[kind]
            assert event[key] in open_sets[group], f"{kind} for {event[key]} that is not open"
            if kind in closes:
                open_sets[group].discard(event[key])
    if events[-1]["type"] == "RUN_FINISHED":
        assert not any(open_sets.values()), f"still open at RUN_FINISHED: {open_sets}"
