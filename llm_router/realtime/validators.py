"""ペイロード検証の小さな部品: フィールドの集合の検査、型ごとの検証関数、JSON としての大きさ。

メッセージは問題のフィールドをパスで名指す (``settings.max_tokens: ...``)。未知のフィールドには
近い名前を示す (``unknown field 'tool' (did you mean 'tools'?)``)。
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any

from llm_router.core import json_codec
from llm_router.core.json_schema_validation import json_type
from llm_router.realtime.protocol_errors import PAYLOAD_TOO_LARGE, ProtocolError, invalid

ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")


@dataclass
class FieldSet:
    """1 つのオブジェクトの検証: 許すフィールド、必須のフィールド、パスの接頭辞。"""

    allowed: tuple[str, ...]
    required: tuple[str, ...] = ()
    path: str = ""

    def check(self, obj: Any) -> dict[str, Any]:
        """未知・欠落のフィールドを調べ、``null`` を除いた値を返す。"""
        where = self.path or "payload"
        if not isinstance(obj, dict):
            raise invalid(f"{where}: must be an object, got {json_type(obj, integers=False)}")
        for key in obj:
            if key not in self.allowed:
                raise invalid(_unknown_field_message(self.path, key, self.allowed))
        values = {k: v for k, v in obj.items() if v is not None}
        for key in self.required:
            if key not in values:
                raise invalid(f"missing field '{join_path(self.path, key)}'")
        return values


def join_path(path: str, key: str) -> str:
    """``settings`` と ``max_tokens`` から ``settings.max_tokens`` を作る。"""
    return f"{path}.{key}" if path else key


def _unknown_field_message(path: str, key: Any, allowed: tuple[str, ...]) -> str:
    """未知のフィールドのメッセージ (近い名前があれば示す)。"""
    name = join_path(path, str(key)[:64])
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    hint = f" (did you mean '{join_path(path, close[0])}'?)" if close else f" (allowed: {', '.join(allowed)})"
    return f"unknown field '{name}'{hint}"


def parse_id(value: Any, path: str) -> str:
    """ID (``^[A-Za-z0-9_.:-]{1,128}$``) を検証する。"""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise invalid(f"{path}: must be a string matching ^[A-Za-z0-9_.:-]{{1,128}}$")
    return value


def as_string(value: Any, path: str, *, non_empty: bool = False, max_chars: int | None = None) -> str:
    """文字列を検証する。"""
    if not isinstance(value, str):
        raise invalid(f"{path}: must be a string, got {json_type(value, integers=False)}")
    if non_empty and not value.strip():
        raise invalid(f"{path}: must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise invalid(f"{path}: must be at most {max_chars} characters")
    return value


def as_boolean(value: Any, path: str) -> bool:
    """真偽値を検証する (0/1 は受けない)。"""
    if not isinstance(value, bool):
        raise invalid(f"{path}: must be a boolean, got {json_type(value, integers=False)}")
    return value


def as_integer(value: Any, path: str, low: int, high: int) -> int:
    """範囲つきの整数を検証する (真偽値と小数は受けない)。"""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{path}: must be an integer in {low}..{high}, got {_short(value)}")
    return value


def as_number(value: Any, path: str, low: float, high: float) -> float:
    """範囲つきの数値を検証する。"""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid(f"{path}: must be a number in {low:g}..{high:g}, got {_short(value)}")
    return float(value)


def as_choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    """列挙値を検証する。"""
    if not isinstance(value, str) or value not in choices:
        raise invalid(f"{path}: must be one of {', '.join(choices)}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    """メッセージに入れる値の短い表現 (長い入力をそのまま返さない)。"""
    text = json.dumps(value, ensure_ascii=False, default=json_type)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------- 大きさ


def payload_size(args: tuple[Any, ...]) -> int:
    """イベント引数の JSON としての大きさ (バイト)。バイナリはそのバイト数で数える。"""
    size = 0
    for arg in args:
        size += len(json_codec.dumps(arg, ensure_ascii=False, separators=(",", ":"), default=_binary_size).encode())
    return size


def _binary_size(value: Any) -> str:
    """``json.dumps`` の ``default``: バイナリは同じ長さの文字列として数える。"""
    if isinstance(value, bytes | bytearray):
        return "x" * len(value)
    return str(value)


def check_size(args: tuple[Any, ...], max_bytes: int) -> None:
    """``server.max_payload_bytes`` を超えたら ``payload_too_large``。"""
    size = payload_size(args)
    if size > max_bytes:
        raise ProtocolError(PAYLOAD_TOO_LARGE, f"payload is {size} bytes; the limit is {max_bytes} bytes")


def single_payload(args: tuple[Any, ...]) -> Any:
    """ハンドラの引数からペイロード 1 つを取り出す (無い・多すぎるのは誤り)。"""
    if not args:
        raise invalid("payload: missing (send one object)")
    if len(args) > 1:
        raise invalid(f"payload: expected one object, got {len(args)} arguments")
    return args[0]
