"""SSE / NDJSON デコーダの境界条件 (1 テスト 1 ケース)。"""

import pytest

from llm_router.core.clients.stream_readers import NDJSONDecoder, SSEDecoder


def _feed_all(decoder, *chunks):
    """チャンクを順に与え、最後に flush した結果を含めて返す。"""
    out = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    out.extend(decoder.flush())
    return out


def test_sse_single_event():
    """1 イベント。"""
    events = _feed_all(SSEDecoder(), b"data: hello\n\n")
    assert [(e.event, e.data) for e in events] == [(None, "hello")]


def test_sse_event_name():
    """``event:`` フィールド。"""
    events = _feed_all(SSEDecoder(), b"event: message_start\ndata: {}\n\n")
    assert events[0].event == "message_start"


def test_sse_multiline_data_is_joined_with_newlines():
    """複数の ``data:`` 行は改行でつなぐ。"""
    events = _feed_all(SSEDecoder(), b"data: a\ndata: b\n\n")
    assert events[0].data == "a\nb"


def test_sse_comments_are_ignored():
    """``:`` で始まる行 (キープアライブ) は無視する。"""
    events = _feed_all(SSEDecoder(), b": keep-alive\n\ndata: x\n\n")
    assert [e.data for e in events] == ["x"]


def test_sse_crlf_line_endings():
    """CRLF の改行。"""
    events = _feed_all(SSEDecoder(), b"event: a\r\ndata: 1\r\n\r\n")
    assert [(e.event, e.data) for e in events] == [("a", "1")]


def test_sse_crlf_split_across_chunks():
    """CR と LF がチャンクの境目で割れても空行と見なさない。"""
    events = _feed_all(SSEDecoder(), b"data: 1\r", b"\ndata: 2\r\n\r\n")
    assert [e.data for e in events] == ["1\n2"]


def test_sse_bare_cr_line_endings():
    """CR だけの改行。"""
    events = _feed_all(SSEDecoder(), b"data: 1\r\rdata: 2\r\r")
    assert [e.data for e in events] == ["1", "2"]


def test_sse_event_split_in_the_middle_of_a_line():
    """行の途中で割れても 1 イベントになる。"""
    events = _feed_all(SSEDecoder(), b'data: {"a"', b": 1}\n", b"\n")
    assert events[0].json() == {"a": 1}


def test_sse_multibyte_utf8_split_across_chunks():
    """UTF-8 の多バイト文字がチャンクの境目で割れても壊れない。"""
    raw = "data: こんにちは\n\n".encode()
    events = _feed_all(SSEDecoder(), raw[:8], raw[8:])
    assert events[0].data == "こんにちは"


def test_sse_space_after_colon_is_optional_and_only_one_is_removed():
    """コロンの後の空白は 1 つだけ取り除く。"""
    events = _feed_all(SSEDecoder(), b"data:x\n\ndata:  y\n\n")
    assert [e.data for e in events] == ["x", " y"]


def test_sse_event_without_data_is_not_dispatched():
    """data の無いイベントは出さない (仕様どおり)。"""
    events = _feed_all(SSEDecoder(), b"event: ping\n\ndata: 1\n\n")
    assert [(e.event, e.data) for e in events] == [(None, "1")]


def test_sse_id_and_retry_fields():
    """``id:`` と ``retry:``。"""
    events = _feed_all(SSEDecoder(), b"id: 7\nretry: 1500\ndata: x\n\n")
    assert (events[0].id, events[0].retry) == ("7", 1500)


def test_sse_unterminated_last_event_is_flushed():
    """空行で終わらない最後のイベントも flush で返す (Gemini のように終わりの印が無い場合)。"""
    events = _feed_all(SSEDecoder(), b"data: last")
    assert [e.data for e in events] == ["last"]


def test_sse_byte_by_byte():
    """1 バイトずつ与えても同じ結果。"""
    raw = b"event: e\r\ndata: a\r\ndata: b\r\n\r\n: c\n\ndata: z\n\n"
    events = _feed_all(SSEDecoder(), *[raw[i : i + 1] for i in range(len(raw))])
    assert [(e.event, e.data) for e in events] == [("e", "a\nb"), (None, "z")]


def test_ndjson_lines():
    """行ごとに JSON。"""
    assert _feed_all(NDJSONDecoder(), b'{"a":1}\n{"b":2}\n') == [{"a": 1}, {"b": 2}]


def test_ndjson_split_line():
    """行がチャンクの境目で割れても 1 つになる。"""
    assert _feed_all(NDJSONDecoder(), b'{"a"', b":1}\n") == [{"a": 1}]


def test_ndjson_blank_lines_and_crlf():
    """空行と CRLF を許す。"""
    assert _feed_all(NDJSONDecoder(), b'{"a":1}\r\n\r\n{"b":2}\r\n') == [{"a": 1}, {"b": 2}]


def test_ndjson_last_line_without_newline():
    """改行で終わらない最後の行も flush で返す。"""
    assert _feed_all(NDJSONDecoder(), b'{"a":1}\n{"done":true}') == [{"a": 1}, {"done": True}]


def test_ndjson_invalid_line_raises_with_its_text():
    """解析できない行は、その行を含むエラーになる。"""
    with pytest.raises(ValueError, match="not json"):
        _feed_all(NDJSONDecoder(), b"not json\n")
