"""リアルタイム層のエラーコード (PROTOCOL.md「Error codes」) と、ack で返す誤り :class:`ProtocolError`。"""

from __future__ import annotations

from typing import Any

# ---------------------------------------------------------------- エラーコード

INVALID_PAYLOAD = "invalid_payload"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
UNKNOWN_THREAD = "unknown_thread"
RUN_IN_PROGRESS = "run_in_progress"
NO_ACTIVE_RUN = "no_active_run"
UNKNOWN_TOOL_CALL = "unknown_tool_call"
NOT_AWAITING = "not_awaiting"
PAYLOAD_TOO_LARGE = "payload_too_large"
RATE_LIMITED = "rate_limited"
LIMIT_REACHED = "limit_reached"
UNKNOWN_RUN = "unknown_run"
STORE_UNAVAILABLE = "store_unavailable"
INTERNAL = "internal"

# ack に現れるエラーコード (run_error の中のコードは core.schemas.errors の各例外の ``code``)
ACK_ERROR_CODES = (
    INVALID_PAYLOAD,
    UNAUTHORIZED,
    FORBIDDEN,
    UNKNOWN_THREAD,
    RUN_IN_PROGRESS,
    NO_ACTIVE_RUN,
    UNKNOWN_TOOL_CALL,
    NOT_AWAITING,
    PAYLOAD_TOO_LARGE,
    RATE_LIMITED,
    LIMIT_REACHED,
    UNKNOWN_RUN,
    STORE_UNAVAILABLE,
    INTERNAL,
)


class ProtocolError(Exception):
    """ack で ``{"ok": false, "error": {"code", "message"}}`` として返す誤り。"""

    def __init__(self, code: str, message: str) -> None:
        """プロトコルのエラーコードと、人が読むメッセージを受け取る。"""
        super().__init__(message)
        self.code = code
        self.message = message

    def to_ack(self) -> dict[str, Any]:
        """失敗の ack。"""
        return {"ok": False, "error": {"code": self.code, "message": self.message}}


def invalid(message: str) -> ProtocolError:
    """``invalid_payload`` の :class:`ProtocolError` を作る。"""
    return ProtocolError(INVALID_PAYLOAD, message)
