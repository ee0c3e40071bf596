"""current_time のテスト: ISO 8601、タイムゾーンのオフセット、未知のタイムゾーン。"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tools.current_time import current_time
from tools.registry import ToolExecutionError


def _between_now(result: str) -> datetime:
    """結果を解析し、呼ぶ前と後の時刻の間にあることを確かめる (秒に切り捨てた分を許す)。"""
    parsed = datetime.fromisoformat(result)
    assert parsed.tzinfo is not None
    return parsed


def test_default_is_utc_iso8601():
    """既定は UTC で、オフセット付きの ISO 8601。"""
    before = datetime.now(UTC).replace(microsecond=0)
    parsed = _between_now(current_time())
    after = datetime.now(UTC)
    assert parsed.utcoffset() == timedelta(0)
    assert before <= parsed <= after


@pytest.mark.parametrize(("zone", "offset"), [("Asia/Tokyo", 9), ("JST", 9), ("utc", 0), ("Etc/GMT+5", -5)])
def test_named_zones_have_their_offset(zone, offset):
    """IANA 名 (と JST) のオフセットが付く (夏時間の無いゾーンで確かめる)。"""
    before = datetime.now(UTC).replace(microsecond=0)
    parsed = _between_now(current_time(zone))
    after = datetime.now(UTC)
    assert parsed.utcoffset() == timedelta(hours=offset)
    assert before <= parsed <= after


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "Asia/Tokyo\x00", "not a zone"])
def test_unknown_zone_is_a_clear_error(zone):
    """未知・不正なタイムゾーン名は、IANA 名の例を示すエラーになる。"""
    with pytest.raises(ToolExecutionError, match=r"unknown time zone.*Asia/Tokyo"):
        current_time(zone)
