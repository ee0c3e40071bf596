"""``llm_router/realtime/packets.py``: バイナリの有無の判定が python-socketio と同じで、深い入れ子でも落ちないこと。"""

from __future__ import annotations

import pytest
from socketio import packet

from llm_router.realtime.packets import Packet

CASES = [
    ["text_delta", {"type": "text_delta", "seq": 3, "ts": 1.5, "delta": "あいう", "usage": None, "ok": True}],
    ["tool_result", {"result": {"rows": [[1, 2.5, "x", None, False], {"deep": {"er": []}}]}}],
    [b"raw"],
    {"a": [1, {"b": bytearray(b"")}]},
    {"a": {"b": [1, 2, [3, b"z"]]}},
    [(b"in a tuple is not looked at",)],
    "text",
    None,
    b"",
    [],
    {},
]


@pytest.mark.parametrize("data", CASES)
def test_binary_detection_matches_python_socketio(data: object) -> None:
    """リストと辞書の中だけをたどる規則が、元の実装と同じ答えになる。"""
    assert Packet.data_is_binary(data) is packet.Packet.data_is_binary(data)


def test_deep_nesting_does_not_recurse() -> None:
    """元の実装なら RecursionError になる深さでも答えが出る (最後にバイナリがあれば真)。"""
    data: list = []
    inner = data
    for _ in range(50_000):
        nxt: list = []
        inner.append(nxt)
        inner = nxt
    assert Packet.data_is_binary(data) is False
    inner.append(b"x")
    assert Packet.data_is_binary(data) is True


def test_a_packet_with_bytes_is_still_sent_as_binary() -> None:
    """バイナリを含むデータは、添付つきのパケット (文字列 + 添付) としてエンコードされる。"""
    encoded = Packet(packet.EVENT, data=["file", {"blob": b"\x00\x01"}], namespace="/agent").encode()
    assert isinstance(encoded, list)
    assert encoded[0].startswith("51-/agent,")
    assert encoded[1] == b"\x00\x01"


def test_the_server_uses_this_packet_class() -> None:
    """create_app の SocketIO は、このパケットのクラスで送る。"""
    from llm_router.config.settings import load_settings
    from llm_router.server import create_app

    settings = load_settings(["server.async_mode=threading", "store.backend=memory"], env_file=None, environ={})
    app, socketio = create_app(settings)
    try:
        assert socketio.server.packet_class is Packet
    finally:
        app.extensions["llm_router"].registry.shutdown(2)
