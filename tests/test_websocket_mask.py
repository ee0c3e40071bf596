"""eventlet の WebSocket のマスク解除の差し替え (llm_router.websocket_mask) が元と同じ結果を返すこと。"""

from __future__ import annotations

import random

import pytest
from eventlet.websocket import RFC6455WebSocket

from llm_router.websocket_mask import apply_mask

ORIGINAL = RFC6455WebSocket.__dict__["_apply_mask"].__func__


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 127, 1000, 65_537])
@pytest.mark.parametrize("offset", [0, 1, 2, 3, 7])
def test_same_bytes_as_eventlets_own_unmasking(size, offset):
    """どの長さ・どの offset でも、eventlet の 1 バイトずつの実装と同じバイト列になる。"""
    rng = random.Random(size * 31 + offset)
    data = bytes(rng.getrandbits(8) for _ in range(size))
    mask = tuple(rng.getrandbits(8) for _ in range(4))
    assert apply_mask(data, mask, offset=offset) == ORIGINAL(data, mask, offset=offset)


def test_length_shorter_than_the_data_and_round_trip():
    """``length`` が短ければ先頭だけを解く。同じマスクを 2 度かければ元に戻る。"""
    data = b"hello websocket world"
    mask = (1, 2, 3, 4)
    assert apply_mask(data, mask, length=5) == ORIGINAL(data, mask, length=5)
    assert apply_mask(apply_mask(data, mask), mask) == data
