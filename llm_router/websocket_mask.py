"""eventlet の WebSocket の受信フレームのマスク解除を、1 バイトずつの Python のループから整数の XOR に替える。

クライアントが送るフレームは必ずマスクされている (RFC 6455 5.3)。eventlet の
``RFC6455WebSocket._apply_mask`` はそれを 1 バイトごとに Python で解くので、900 KB のツール結果 1 つで
ハブ (全接続が分け合う 1 本の OS スレッド) が数百ミリ秒止まり、ほかの利用者のトークンが届かなくなる
(``benchmarks/hub_bench.py``、docs/benchmarks.md)。:func:`apply_mask` は同じ結果を
``int.from_bytes`` の XOR 1 回で作る (C の速さ)。:func:`install` が eventlet モードの起動時に差し替える。
"""

from __future__ import annotations

from typing import Any


def apply_mask(data: Any, mask: Any, length: int | None = None, offset: int = 0) -> bytes:
    """``data`` の先頭 ``length`` バイトを、``offset`` の位置から始まる 4 バイトの ``mask`` で XOR する。

    eventlet の ``_apply_mask`` と同じ引数と結果 (``mask`` は 4 つの整数、``offset`` は既に解いたバイト数)。
    """
    if length is None:
        length = len(data)
    if length <= 0:
        return b""
    key = bytes(mask[(offset + i) % 4] for i in range(4))
    stream = (key * (length // 4 + 1))[:length]
    body = bytes(data[:length])
    return (int.from_bytes(body, "big") ^ int.from_bytes(stream, "big")).to_bytes(length, "big")


def install() -> bool:
    """eventlet の WebSocket のマスク解除を :func:`apply_mask` に差し替える (eventlet が無ければ偽)。"""
    try:
        from eventlet.websocket import RFC6455WebSocket
    except ImportError:
        return False
    RFC6455WebSocket._apply_mask = staticmethod(apply_mask)
    return True


__all__ = ["apply_mask", "install"]
