"""``realtime/schemas.py`` の検証の単体テスト (1 つの誤りにつき 1 行の表)。"""

import pytest

from llm_router.core.schemas.common import ImagePart, TextPart, ToolChoice
from llm_router.core.schemas.events import EVENT_TYPES
from llm_router.realtime.schemas import (
    INVALID_PAYLOAD,
    PAYLOAD_TOO_LARGE,
    SERVER_EVENTS,
    ProtocolError,
    check_size,
    parse_cancel,
    parse_start,
    parse_tool_result,
    parse_user_message,
    single_payload,
    start_ack,
)

BAD = [
    # (関数, ペイロード, メッセージに含まれるべき文字列)
    (parse_start, [], "payload: must be an object"),
    (parse_start, "x", "payload: must be an object"),
    (parse_start, {"tool": []}, "unknown field 'tool' (did you mean 'tools'?)"),
    (parse_start, {"thread_id": "a b"}, "thread_id"),
    (parse_start, {"thread_id": "x" * 129}, "thread_id"),
    (parse_start, {"thread_id": 5}, "thread_id"),
    (parse_start, {"model": ""}, "model: must not be empty"),
    (parse_start, {"model": 3}, "model: must be a string"),
    (parse_start, {"system": ["x"]}, "system: must be a string"),
    (parse_start, {"tools": {}}, "tools: must be an array"),
    (parse_start, {"server_tools": "calculator"}, "server_tools: must be an array"),
    (parse_start, {"server_tools": [1]}, "server_tools[0]"),
    (parse_start, {"settings": []}, "settings: must be an object"),
    (
        parse_start,
        {"settings": {"temprature": 1}},
        "unknown field 'settings.temprature' (did you mean 'settings.temperature'?)",
    ),
    (parse_start, {"settings": {"temperature": "hot"}}, "settings.temperature"),
    (parse_start, {"settings": {"temperature": True}}, "settings.temperature"),
    (parse_start, {"settings": {"temperature": 9}}, "settings.temperature"),
    (parse_start, {"settings": {"max_tokens": 0}}, "settings.max_tokens"),
    (parse_start, {"settings": {"max_tokens": 1.5}}, "settings.max_tokens"),
    (parse_start, {"settings": {"max_steps": 0}}, "settings.max_steps"),
    (parse_start, {"settings": {"max_steps": 10_000}}, "settings.max_steps"),
    (parse_start, {"settings": {"tool_choice": "sometimes"}}, "settings.tool_choice"),
    (parse_start, {"settings": {"tool_choice": {"type": "tool"}}}, "settings.tool_choice.name"),
    (parse_start, {"settings": {"parallel_tool_calls": "yes"}}, "settings.parallel_tool_calls"),
    (parse_start, {"settings": {"reasoning": "max"}}, "settings.reasoning"),
    (parse_start, {"resume_after_seq": -1}, "resume_after_seq"),
    (parse_start, {"resume_after_seq": "3"}, "resume_after_seq"),
    (parse_user_message, {"content": "hi"}, "missing field 'thread_id'"),
    (parse_user_message, {"thread_id": "t"}, "missing field 'content'"),
    (parse_user_message, {"thread_id": "t", "content": ""}, "content: must not be empty"),
    (parse_user_message, {"thread_id": "t", "content": 5}, "content"),
    (parse_user_message, {"thread_id": "t", "content": [{"type": "video"}]}, "content[0].type"),
    (parse_user_message, {"thread_id": "t", "content": [{"type": "text", "txt": "a"}]}, "content[0].txt"),
    (parse_user_message, {"thread_id": "t", "content": [{"type": "image"}]}, "exactly one of 'url' or 'data'"),
    (parse_user_message, {"thread_id": "t", "content": "hi", "run_id": "../x"}, "run_id"),
    (parse_user_message, {"thread_id": "t", "content": "hi", "contents": "x"}, "did you mean 'content'"),
    (parse_tool_result, {"thread_id": "t", "tool_call_id": "c"}, "missing field 'result'"),
    (parse_tool_result, {"thread_id": "t", "result": 1}, "missing field 'tool_call_id'"),
    (parse_tool_result, {"thread_id": "t", "tool_call_id": "c", "result": 1, "is_error": "no"}, "is_error"),
    (parse_tool_result, {"thread_id": "t", "tool_call_id": "c", "result": 1, "output": 1}, "unknown field 'output'"),
    (parse_cancel, {}, "missing field 'thread_id'"),
    (parse_cancel, {"thread_id": "t", "mode": "later"}, "mode: must be one of now, after_step"),
]


@pytest.mark.parametrize(("parse", "payload", "needle"), BAD)
def test_bad_payloads_are_refused_naming_the_field(parse, payload, needle):
    """悪いペイロードは invalid_payload で、フィールドを名指したメッセージになる。"""
    with pytest.raises(ProtocolError) as info:
        parse(payload)
    assert info.value.code == INVALID_PAYLOAD
    assert needle in info.value.message


def test_a_full_start_payload_is_accepted():
    """docs/protocol.md の例どおりの start が通り、null は省略と同じに扱われる。"""
    p = parse_start(
        {
            "thread_id": "th-1",
            "model": "anthropic/claude-sonnet-4-5",
            "system": "sys",
            "tools": [{"name": "a"}],
            "server_tools": ["calculator"],
            "settings": {
                "temperature": 0.2,
                "max_tokens": 1024,
                "max_steps": 8,
                "tool_choice": "auto",
                "parallel_tool_calls": True,
                "reasoning": "off",
            },
            "resume_after_seq": 41,
        }
    )
    assert p.thread_id == "th-1" and p.resume_after_seq == 41 and p.settings.max_tokens == 1024
    assert p.settings.to_dict()["tool_choice"] == "auto"
    assert parse_start({"thread_id": None, "model": None}).thread_id is None


def test_tool_choice_naming_a_tool_round_trips_to_the_agent_form():
    """ツールを名指す tool_choice はエージェントの RunSettings が読む dict になる。"""
    p = parse_start({"settings": {"tool_choice": {"type": "tool", "name": "get_weather"}}})
    assert p.settings.tool_choice == ToolChoice("tool", "get_weather")
    assert p.settings.to_dict() == {"tool_choice": {"type": "tool", "name": "get_weather"}}


def test_content_parts_become_shared_parts():
    """コンテンツパーツは共有の TextPart / ImagePart になる。"""
    p = parse_user_message(
        {
            "thread_id": "t",
            "content": [{"type": "text", "text": "see"}, {"type": "image", "data": "AAAA", "mime_type": "image/png"}],
        }
    )
    assert p.content == [TextPart("see"), ImagePart(data="AAAA", mime_type="image/png")]


def test_tool_result_accepts_any_json_value_including_null():
    """result は任意の JSON 値 (null も) で、is_error の既定は偽。"""
    p = parse_tool_result({"thread_id": "t", "tool_call_id": "c", "result": None})
    assert p.result is None and p.is_error is False and p.run_id is None


def test_cancel_defaults_to_now():
    """cancel の mode の既定は now。"""
    assert parse_cancel({"thread_id": "t"}).mode == "now"


def test_payload_size_limit_and_argument_count():
    """大きすぎるペイロードは payload_too_large、引数が無い・多いのは invalid_payload。"""
    with pytest.raises(ProtocolError) as info:
        check_size(({"content": "x" * 2000},), 1000)
    assert info.value.code == PAYLOAD_TOO_LARGE
    check_size(({"content": "x" * 10},), 1000)
    check_size((b"\x00" * 10,), 1000)
    for args in ((), (1, 2)):
        with pytest.raises(ProtocolError) as info:
            single_payload(args)
        assert info.value.code == INVALID_PAYLOAD


def test_start_ack_has_exactly_the_protocol_keys():
    """start の ack のキーは docs/protocol.md のとおり。"""
    ack = start_ack("t", "demo/scripted", [{"name": "calculator", "executor": "server"}], 0, [])
    assert set(ack) == {"ok", "thread_id", "model", "tools", "last_seq", "warnings", "protocol"}
    assert ack["protocol"] == "1.1"


def test_server_event_table_matches_the_protocol():
    """サーバーイベントの表は共有の語彙の写し: 版 1 の 18 種類に、1.1 の context_trimmed・thread_rewound・thread_deleted を足した 21 種類。"""
    assert SERVER_EVENTS == {name: cls.field_names() for name, cls in EVENT_TYPES.items()}
    assert len(SERVER_EVENTS) == 21
    assert SERVER_EVENTS["thread_deleted"] == ("reason",)
    assert SERVER_EVENTS["thread_rewound"] == ("removed_runs",)
    assert SERVER_EVENTS["context_trimmed"] == ("step", "dropped_messages", "estimated_tokens")
    assert SERVER_EVENTS["run_error"] == ("error", "usage", "rolled_back")
    assert SERVER_EVENTS["tool_result"] == ("tool_call_id", "name", "result", "is_error", "executor", "duration_ms")


def _image(**part):
    """画像パーツ 1 つの user_message。"""
    return {"thread_id": "t", "content": [{"type": "image", **part}]}


@pytest.mark.parametrize(
    ("part", "needle"),
    [
        ({"url": "javascript:alert(1)"}, "content[0].url: must be an https:, http: or data:image"),
        ({"url": "file:///etc/passwd"}, "content[0].url: must be an https:"),
        ({"url": "ftp://example.com/a.png"}, "content[0].url: must be an https:"),
        ({"url": "https://"}, "content[0].url: must be an https:"),
        ({"url": "//example.com/a.png"}, "content[0].url: must be an https:"),
        ({"url": "https://example.com/a b.png"}, "content[0].url: must not contain whitespace"),
        ({"url": "data:text/html;base64,PGI+"}, "content[0].url: a data URL must be"),
        ({"url": "data:image/png,rawdata"}, "content[0].url: a data URL must be"),
        ({"url": "data:image/png;base64,@@@@"}, "content[0].url: must be base64"),
        ({"url": "data:image/svg+xml;base64,AAAA"}, "content[0].url (media type): must be one of"),
        ({"data": "AAAA", "mime_type": "text/html"}, "content[0].mime_type: must be one of"),
        ({"data": "not base64!", "mime_type": "image/png"}, "content[0].data: must be base64"),
        ({"data": "AAA", "mime_type": "image/png"}, "content[0].data: must be base64"),
        ({"data": "A" * 16, "mime_type": "image/png", "extra": 1}, "unknown field 'content[0].extra'"),
    ],
)
def test_image_parts_are_validated_strictly(part, needle):
    """画像の URL は https: / http: / data:image/...;base64 だけ。MIME タイプと base64 も確かめ、フィールドを名指す。"""
    with pytest.raises(ProtocolError) as info:
        parse_user_message(_image(**part))
    assert info.value.code == INVALID_PAYLOAD
    assert needle in info.value.message


def test_image_size_limit_comes_from_the_caller():
    """画像の大きさの上限 (server.max_image_bytes) は、data でも data URL でもデコード後のバイト数で数える。"""
    data = "A" * 400  # 300 バイト
    assert parse_user_message(_image(data=data, mime_type="image/png"), 300).content[0].data == data
    for part in ({"data": data, "mime_type": "image/png"}, {"url": "data:image/png;base64," + data}):
        with pytest.raises(ProtocolError, match="larger than 299 bytes"):
            parse_user_message(_image(**part), 299)


@pytest.mark.parametrize(
    "url", ["https://example.com/cat.png", "http://127.0.0.1:8000/x.jpg?y=1", "data:image/jpeg;base64,/9j/4AAQ"]
)
def test_good_image_urls_are_accepted(url):
    """正しい URL はそのまま通る。"""
    assert parse_user_message(_image(url=url)).content[0].url == url


@pytest.mark.parametrize(
    ("part", "needle"),
    [
        ({"type": "audio", "data": "AAAA"}, "content[0].type: must be one of text, image"),
        ({"type": "text", "text": 5}, "content[0].text: must be a string, got number"),
        ({"type": "text", "text": ["a"]}, "content[0].text: must be a string, got array"),
        ({"text": "no type"}, "content[0].type: must be one of"),
        ("just a string", "content[0]: must be an object, got string"),
    ],
)
def test_unknown_part_types_and_non_string_texts_are_refused(part, needle):
    """未知のパーツの種類と文字列でないテキストは、フィールドのパスを挙げて断る。"""
    with pytest.raises(ProtocolError) as info:
        parse_user_message({"thread_id": "t", "content": [part]})
    assert info.value.code == INVALID_PAYLOAD and needle in info.value.message


def test_the_namespace_is_the_one_the_protocol_names():
    """Socket.IO の名前空間は docs/protocol.md 1 章の表のもの (/agent)。"""
    from pathlib import Path

    from llm_router.realtime.schemas import NAMESPACE

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text(encoding="utf-8")
    assert f"| 名前空間 | `{NAMESPACE}` |" in doc and NAMESPACE == "/agent"
