"""現在時刻ツール: IANA タイムゾーン名 (``zoneinfo``) で現在時刻を ISO 8601 の文字列で返す。"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tools.registry import ToolExecutionError

# IANA 名ではないがよく使われる略号 (日本のユーザー向けに JST を受け付ける)
_ALIASES = {"JST": "Asia/Tokyo", "UTC": "UTC", "GMT": "UTC", "Z": "UTC"}


def current_time(timezone: str = "UTC") -> str:
    """指定したタイムゾーンの現在時刻を ISO 8601 形式 (例 ``2026-11-24T13:45:00+09:00``) で返す。

    Args:
        timezone: IANA のタイムゾーン名 (例 ``Asia/Tokyo``、``America/New_York``、``UTC``)。
    """
    name = (timezone or "UTC").strip()
    try:
        zone = ZoneInfo(_ALIASES.get(name.upper(), name))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ToolExecutionError(
            f"unknown time zone {timezone!r}: use an IANA name such as 'Asia/Tokyo' or 'UTC' "
            "(タイムゾーン名が分かりません)"
        ) from None
    return datetime.now(zone).isoformat(timespec="seconds")
