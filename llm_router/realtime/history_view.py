"""``get_history`` の ``messages``: 保存された履歴 (``HistoryEntry``) を、フロントエンドが会話を描き直す形にする。

推論の署名・``ProviderState``・プロバイダの生データは決して含めない (ここで欄を選んで作るので、
履歴に何が入っていても外へは出ない)。推論のテキストも返さない (ライブのイベントでだけ見せる)。
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from llm_router.core.schemas.thread_record import HistoryEntry
from llm_router.realtime.emitter import content_to_wire


def history_message(entry: HistoryEntry, client_tools: set[str]) -> dict[str, Any]:
    """履歴の 1 件をプロトコルの ``messages[]`` の 1 件にする。"""
    message = entry.message
    result = message.tool_result
    content: Any = content_to_wire(message.content)
    if result is not None:
        content = result.result
    return {
        "message_id": entry.message_id,
        "run_id": entry.run_id,
        "role": message.role,
        "content": content,
        "tool_calls": [
            {
                "tool_call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
                "executor": "client" if call.name in client_tools else "server",
            }
            for call in message.tool_calls
        ],
        "tool_call_id": result.tool_call_id if result is not None else None,
        "is_error": bool(result.is_error) if result is not None else None,
        "interrupted": bool(message.interrupted),
        "created_at": entry.created_at,
    }


def history_messages(entries: Iterable[HistoryEntry], client_tools: set[str]) -> list[dict[str, Any]]:
    """履歴全体を ``messages`` にする (``system`` のメッセージは履歴に無い)。"""
    return [history_message(e, client_tools) for e in entries if e.message.role != "system"]
