"""サーバーイベントの語彙 (``core/schemas/events.py``): ペイロードの形と、docs/protocol.md の表との一致。"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llm_router.core.schemas import events as ev
from llm_router.core.schemas.common import ImagePart, TextPart, Usage

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def _split_items(cell: str) -> list[str]:
    """表のフィールドの欄を、バッククォート・括弧・波括弧の外のカンマで分ける。"""
    items, depth, quoted, current = [], 0, False, ""
    for ch in cell:
        if ch == "`":
            quoted = not quoted
        elif not quoted and ch in "({":
            depth += 1
        elif not quoted and ch in ")}":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            items.append(current.strip())
            current = ""
        else:
            current += ch
    if current.strip():
        items.append(current.strip())
    return items


def documented_events() -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    """docs/protocol.md 4 章の表を読み、(イベント名, いつも付くフィールド, 括弧の中の省略できるフィールド) の並びを返す。"""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## 4. サーバー → クライアントのイベント", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        match = re.match(r"^\| `([a-z_]+)` \| (.+?) \| .+\|$", line)
        if match is None:
            continue
        required, optional = [], []
        for item in _split_items(match.group(2)):
            name = re.match(r"^\(?`([a-z_]+)", item)
            assert name is not None, f"cannot read the field {item!r} of {match.group(1)}"
            (optional if item.startswith("(") else required).append(name.group(1))
        rows.append((match.group(1), tuple(required), tuple(optional)))
    return rows


def test_the_protocol_table_lists_exactly_the_vocabulary_in_order():
    """docs/protocol.md の表は語彙のイベントを同じ順で、同じフィールド (省略できるものは括弧つき) で挙げる。"""
    expected = [(cls.TYPE, cls.field_names(), cls.optional_names()) for cls in ev.EVENT_CLASSES]
    assert documented_events() == expected


def test_the_vocabulary_covers_version_1_and_the_1_1_additions():
    """版 1 の 18 のイベントに、1.1 の context_trimmed・thread_rewound・thread_deleted を足した 21。終わりのイベントは 3 つ。"""
    assert len(ev.EVENT_TYPES) == 21
    assert {"context_trimmed", "thread_rewound", "thread_deleted"} <= set(ev.EVENT_TYPES)
    assert ev.RUN_END_EVENTS == ("run_finished", "run_error", "run_cancelled")


def test_the_console_ends_runs_on_the_same_events():
    """ブラウザのコンソール (connection.js) のランの終わりのイベントは語彙と同じ。"""
    js = (DOC.parents[1] / "llm_router" / "web" / "static" / "js" / "connection.js").read_text(encoding="utf-8")
    match = re.search(r"export const RUN_END_EVENTS = new Set\(\[([^\]]*)\]\)", js)
    assert match is not None
    assert tuple(re.findall(r'"([a-z_]+)"', match.group(1))) == ev.RUN_END_EVENTS


def test_usage_becomes_the_usage_object_and_absent_optionals_are_left_out():
    """使用量は usage オブジェクトに、None の省略できるフィールドは出さない。"""
    usage = Usage(3, 5, 1)
    assert ev.StepFinished(2, "stop", usage).fields() == {
        "step": 2,
        "finish_reason": "stop",
        "usage": {"input_tokens": 3, "output_tokens": 5, "reasoning_tokens": 1},
    }
    ready = ev.ToolCallReady("c1", "calc", {"e": "1"}, "client")
    assert ready.fields() == {"tool_call_id": "c1", "name": "calc", "arguments": {"e": "1"}, "executor": "client"}
    assert ev.ToolCallReady("c1", "calc", {}, "server", "bad").fields()["error"] == "bad"
    assert ev.RunStarted("demo/scripted", 8).fields() == {"model": "demo/scripted", "max_steps": 8}


def test_run_started_carries_the_user_message_with_its_parts():
    """1.1 の run_started.message は {message_id, content}。パーツは JSON の形になる。"""
    message = ev.StartedMessage("msg_1", [TextPart("see"), ImagePart(url="https://example.com/a.png")])
    fields = ev.RunStarted("demo/scripted", 4, message).fields()
    assert fields["message"]["message_id"] == "msg_1"
    assert fields["message"]["content"][0] == {"type": "text", "text": "see"}
    assert fields["message"]["content"][1]["url"] == "https://example.com/a.png"
    assert ev.RunStarted("m", 1, ev.StartedMessage("msg_2", "こんにちは")).fields()["message"] == {
        "message_id": "msg_2",
        "content": "こんにちは",
    }


def test_the_internal_run_error_has_every_error_field():
    """登録簿の後始末の run_error は、プロトコルの error の 5 つの欄と 0 の使用量を持つ。"""
    fields = ev.internal_run_error("the run ended unexpectedly", rolled_back=True).fields()
    assert set(fields["error"]) == {"code", "message", "provider", "retryable", "phase"}
    assert fields["error"]["code"] == "internal" and fields["rolled_back"] is True
    assert fields["usage"] == {"input_tokens": 0, "output_tokens": 0, "reasoning_tokens": 0}


def test_events_are_values():
    """イベントは値: 同じフィールドなら等しく、書き換えられない。"""
    assert ev.TextDelta("m", "a") == ev.TextDelta("m", "a")
    with pytest.raises(AttributeError):
        ev.TextDelta("m", "a").delta = "b"  # type: ignore[misc]
