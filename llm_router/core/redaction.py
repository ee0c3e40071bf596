"""秘密の値 (API キー、接続トークン) を文字列から伏せる唯一の関数。

ログ (:mod:`llm_router.logging_setup`)、``run_error`` のメッセージ (:mod:`llm_router.agent.errors`)、
クライアントへ出るすべてのイベント (:class:`llm_router.agent.events.RunEvents`: ツールのエラー、再試行の理由、
``step_reset`` の理由など) が同じ規則で伏せる: 4 文字以上の値を長い順に ``***`` へ置き換える。
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "***"
# これより短い値は伏せない (普通の語を誤って伏せないため)
MIN_SECRET_LENGTH = 4
# 入れ子の値をたどる深さの上限 (イベントの値は JSON で、これより深いものは来ない)
_MAX_DEPTH = 64


def secret_list(secrets: Iterable[str]) -> tuple[str, ...]:
    """伏せる値を、短すぎるものを除いて長い順にそろえる (長い値の一部が短い値のときも正しく伏せる)。"""
    return tuple(sorted({s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` の中の秘密の値を ``***`` に置き換える。"""
    for secret in secret_list(secrets):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def redact_value(value: Any, secrets: tuple[str, ...], depth: int = 0) -> Any:
    """JSON の値の中のすべての文字列 (キーも) を伏せる。変わらなければ同じオブジェクトを返す。

    ``secrets`` は :func:`secret_list` でそろえたもの。
    """
    if not secrets or depth > _MAX_DEPTH:
        return value
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {redact_value(k, secrets, depth + 1): redact_value(v, secrets, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v, secrets, depth + 1) for v in value]
    return value


__all__ = ["MASK", "redact", "redact_value", "secret_list"]
