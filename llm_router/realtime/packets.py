"""Socket.IO のパケット: python-socketio の ``Packet`` の、バイナリの有無の確かめ方だけを速くしたもの。

python-socketio は送るパケットを作るたびに ``data_is_binary`` でデータ全体を再帰でたどる (リストの内包と
``functools.reduce`` で、1 イベントあたり約 10 µs。docs/benchmarks.md「スケールアウト」)。ここでは同じ規則
(``bytes``/``bytearray`` がリストか辞書の中のどこかにあれば真、それ以外の型の中は見ない) を、再帰しない
1 本の走査で確かめる。深い入れ子でも ``RecursionError`` にならない。
"""

from __future__ import annotations

from typing import Any

from socketio import packet

_LEAVES = (str, int, float, bool, type(None))


class Packet(packet.Packet):
    """``data_is_binary`` だけを差し替えた python-socketio のパケット (``SocketIO(serializer=Packet)``)。"""

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        """``data`` のどこか (リストの要素、辞書の値をたどって) に ``bytes``/``bytearray`` があれば真。"""
        pending = [data]
        while pending:
            item = pending.pop()
            if type(item) in _LEAVES:
                continue
            if isinstance(item, (bytes, bytearray)):
                return True
            if isinstance(item, list):
                pending.extend(item)
            elif isinstance(item, dict):
                pending.extend(item.values())
        return False
