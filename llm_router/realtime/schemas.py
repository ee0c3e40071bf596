"""PROTOCOL.md のペイロードとイベント: クライアントからの全ペイロードの厳密な検証と、サーバーイベントの封筒。

検証の方針 (PROTOCOL.md「Client -> server events」):
- ペイロードはオブジェクト (dict) でなければならない。未知のフィールドは拒否し、近い名前を示す
  (``unknown field 'tool' (did you mean 'tools'?)``)。型の誤りはフィールドのパスで名指す
  (``settings.max_tokens: must be an integer > 0``)。
- ID (``thread_id`` / ``run_id`` / ``tool_call_id``) は ``^[A-Za-z0-9_.:-]{1,128}$``。
- ``null`` は「省略」と同じに扱う (JS のフロントエンドは未設定を null で送ることが多いため)。
- 検証は状態を一切変えない。失敗は :class:`ProtocolError` (``code`` がプロトコルのエラーコード)。

ツール定義の正規化 (OpenAI / Anthropic / Gemini / 正規形) は ``core.tool_schemas.normalize_tools`` に任せる。
このモジュールはネットワークにもスレッド登録簿にも触れない (単体で試せる)。
docs/protocol.md はこのモジュールと歩調を合わせて書く。
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from typing import Any

from llm_router.agent.errors import RUN_ERROR_CODES
from llm_router.core.schemas.common import ContentPart, ImagePart, TextPart, ToolChoice
from llm_router.realtime.protocol_errors import (
    ACK_ERROR_CODES,
    FORBIDDEN,
    INTERNAL,
    INVALID_PAYLOAD,
    LIMIT_REACHED,
    NO_ACTIVE_RUN,
    NOT_AWAITING,
    PAYLOAD_TOO_LARGE,
    RATE_LIMITED,
    RUN_IN_PROGRESS,
    STORE_UNAVAILABLE,
    UNAUTHORIZED,
    UNKNOWN_RUN,
    UNKNOWN_THREAD,
    UNKNOWN_TOOL_CALL,
    ProtocolError,
    invalid,
)
from llm_router.realtime.validators import (
    ID_PATTERN,
    FieldSet,
    as_boolean,
    as_choice,
    as_integer,
    as_number,
    as_string,
    check_size,
    join_path,
    json_type_name,
    parse_id,
    payload_size,
    single_payload,
)

# ---------------------------------------------------------------- イベント

CLIENT_EVENTS = (
    "start",
    "user_message",
    "tool_result",
    "cancel",
    "list_threads",
    "get_history",
    "rewind",
    "update_thread",
    "delete_thread",
)
PROTOCOL_VERSION = "1.1"

# サーバー -> クライアントのイベント名と、封筒以外のフィールド (PROTOCOL.md の表と同じ順)
SERVER_EVENTS: dict[str, tuple[str, ...]] = {
    "run_started": ("model", "max_steps", "message"),
    "context_trimmed": ("step", "dropped_messages", "estimated_tokens"),
    "step_started": ("step", "model"),
    "text_started": ("message_id",),
    "text_delta": ("message_id", "delta"),
    "text_finished": ("message_id", "text"),
    "reasoning_started": ("message_id",),
    "reasoning_delta": ("message_id", "delta"),
    "reasoning_finished": ("message_id", "text"),
    "tool_call_started": ("tool_call_id", "name", "executor"),
    "tool_call_delta": ("tool_call_id", "delta"),
    "tool_call_ready": ("tool_call_id", "name", "arguments", "executor"),
    "tool_result": ("tool_call_id", "name", "result", "is_error", "executor", "duration_ms"),
    "step_finished": ("step", "finish_reason", "usage"),
    "retry": ("step", "attempt", "wait_ms", "reason", "model"),
    "step_reset": ("step", "reason"),
    "run_finished": ("finish_reason", "usage", "text"),
    "run_error": ("error", "usage", "rolled_back"),
    "run_cancelled": ("reason", "usage"),
    "thread_rewound": ("removed_runs",),
}
ENVELOPE_FIELDS = ("type", "thread_id", "run_id", "seq", "ts")
RUN_END_EVENTS = ("run_finished", "run_error", "run_cancelled")

REASONING_LEVELS = ("off", "low", "medium", "high")
TOOL_CHOICE_MODES = ("auto", "none", "required")
CANCEL_MODES = ("now", "after_step")
MAX_STEPS_CAP = 64
MAX_TOKENS_CAP = 1_000_000
MAX_MODEL_SPEC_CHARS = 200
MAX_TITLE_CHARS = 200
MAX_CURSOR_CHARS = 512
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 200


# ---------------------------------------------------------------- 検証済みのペイロード


@dataclass
class RunSettings:
    """``start`` の ``settings`` (指定されたものだけが ``None`` 以外)。"""

    temperature: float | None = None
    max_tokens: int | None = None
    max_steps: int | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """指定された項目だけの dict (エージェントの ``ThreadState.settings`` へ渡す形)。"""
        out: dict[str, Any] = {}
        for name in ("temperature", "max_tokens", "max_steps", "parallel_tool_calls", "reasoning"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.tool_choice is not None:
            choice = self.tool_choice
            out["tool_choice"] = {"type": "tool", "name": choice.name} if choice.mode == "tool" else choice.mode
        return out


@dataclass
class StartPayload:
    """``start`` の検証済みペイロード。``tools`` は生の定義のまま (正規化は登録簿が行う)。"""

    thread_id: str | None = None
    model: str | None = None
    system: str | None = None
    tools: list[Any] | None = None
    server_tools: list[str] | None = None
    settings: RunSettings | None = None
    resume_after_seq: int | None = None


@dataclass
class UserMessagePayload:
    """``user_message`` の検証済みペイロード。"""

    thread_id: str
    content: str | list[ContentPart]
    run_id: str | None = None


@dataclass
class ToolResultPayload:
    """``tool_result`` の検証済みペイロード。"""

    thread_id: str
    tool_call_id: str
    result: Any
    run_id: str | None = None
    is_error: bool = False


@dataclass
class CancelPayload:
    """``cancel`` の検証済みペイロード。"""

    thread_id: str
    run_id: str | None = None
    mode: str = "now"


@dataclass
class ListThreadsPayload:
    """``list_threads`` の検証済みペイロード。"""

    limit: int = DEFAULT_LIST_LIMIT
    before: str | None = None


@dataclass
class ThreadRefPayload:
    """``get_history`` / ``delete_thread`` の検証済みペイロード (スレッド ID だけ)。"""

    thread_id: str


@dataclass
class RewindPayload:
    """``rewind`` の検証済みペイロード。"""

    thread_id: str
    run_id: str


@dataclass
class UpdateThreadPayload:
    """``update_thread`` の検証済みペイロード。"""

    thread_id: str
    title: str


# ---------------------------------------------------------------- 各イベントのペイロード


def parse_settings(value: Any, path: str = "settings") -> RunSettings:
    """``settings`` を検証する。"""
    fields = FieldSet(
        ("temperature", "max_tokens", "max_steps", "tool_choice", "parallel_tool_calls", "reasoning"), path=path
    ).check(value)
    out = RunSettings()
    if "temperature" in fields:
        out.temperature = as_number(fields["temperature"], join_path(path, "temperature"), 0.0, 2.0)
    if "max_tokens" in fields:
        out.max_tokens = as_integer(fields["max_tokens"], join_path(path, "max_tokens"), 1, MAX_TOKENS_CAP)
    if "max_steps" in fields:
        out.max_steps = as_integer(fields["max_steps"], join_path(path, "max_steps"), 1, MAX_STEPS_CAP)
    if "tool_choice" in fields:
        out.tool_choice = parse_tool_choice(fields["tool_choice"], join_path(path, "tool_choice"))
    if "parallel_tool_calls" in fields:
        out.parallel_tool_calls = as_boolean(fields["parallel_tool_calls"], join_path(path, "parallel_tool_calls"))
    if "reasoning" in fields:
        out.reasoning = as_choice(fields["reasoning"], join_path(path, "reasoning"), REASONING_LEVELS)
    return out


def parse_tool_choice(value: Any, path: str) -> ToolChoice:
    """``tool_choice``: ``"auto" | "none" | "required"`` か ``{"type": "tool", "name": "..."}``。"""
    if isinstance(value, str):
        return ToolChoice(mode=as_choice(value, path, TOOL_CHOICE_MODES))  # type: ignore[arg-type]
    fields = FieldSet(("type", "name"), required=("type", "name"), path=path).check(value)
    as_choice(fields["type"], join_path(path, "type"), ("tool",))
    return ToolChoice(
        mode="tool", name=as_string(fields["name"], join_path(path, "name"), non_empty=True, max_chars=64)
    )


def parse_start(payload: Any) -> StartPayload:
    """``start`` を検証する (ツール定義の中身は登録簿が ``normalize_tools`` で調べる)。"""
    allowed = ("thread_id", "model", "system", "tools", "server_tools", "settings", "resume_after_seq")
    fields = FieldSet(allowed).check(payload)
    out = StartPayload()
    if "thread_id" in fields:
        out.thread_id = parse_id(fields["thread_id"], "thread_id")
    if "model" in fields:
        out.model = as_string(fields["model"], "model", non_empty=True, max_chars=MAX_MODEL_SPEC_CHARS).strip()
    if "system" in fields:
        out.system = as_string(fields["system"], "system")
    if "tools" in fields:
        if not isinstance(fields["tools"], list):
            raise invalid(f"tools: must be an array, got {json_type_name(fields['tools'])}")
        out.tools = fields["tools"]
    if "server_tools" in fields:
        names = fields["server_tools"]
        if not isinstance(names, list):
            raise invalid(f"server_tools: must be an array of tool names, got {json_type_name(names)}")
        out.server_tools = [as_string(n, f"server_tools[{i}]", non_empty=True) for i, n in enumerate(names)]
    if "settings" in fields:
        out.settings = parse_settings(fields["settings"])
    if "resume_after_seq" in fields:
        out.resume_after_seq = as_integer(fields["resume_after_seq"], "resume_after_seq", 0, 2**53)
    return out


# 画像のパーツで受け付ける MIME タイプ (4 つのプロバイダが共通に受けるもの)
IMAGE_MIME_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
# 既定の画像 1 枚の上限 (デコード後のバイト数。設定 server.max_image_bytes が上書きする)
DEFAULT_MAX_IMAGE_BYTES = 1_000_000
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
_DATA_URL = re.compile(r"^data:(image/[a-z0-9.+-]+);base64,(.*)$", re.DOTALL)


def parse_content(
    value: Any, path: str = "content", max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
) -> str | list[ContentPart]:
    """``content``: 文字列か、コンテンツパーツ (``text`` / ``image``) の配列。"""
    if isinstance(value, str):
        if not value.strip():
            raise invalid(f"{path}: must not be empty")
        return value
    if not isinstance(value, list) or not value:
        raise invalid(f"{path}: must be a non-empty string or a non-empty array of content parts")
    parts: list[ContentPart] = []
    for i, raw in enumerate(value):
        parts.append(_content_part(raw, f"{path}[{i}]", max_image_bytes))
    return parts


def _content_part(raw: Any, path: str, max_image_bytes: int) -> ContentPart:
    """1 つのコンテンツパーツ: ``{"type": "text", "text"}`` か ``{"type": "image", "url" | "data", "mime_type"?}``。

    画像の ``url`` は ``https:`` / ``http:`` (ホストつき) と ``data:image/<type>;base64,...`` だけ。
    ``data`` (base64) と data URL はデコード後 ``max_image_bytes`` まで、MIME タイプは :data:`IMAGE_MIME_TYPES`。
    """
    if not isinstance(raw, dict):
        raise invalid(f"{path}: must be an object, got {json_type_name(raw)}")
    kind = as_choice(raw.get("type"), join_path(path, "type"), ("text", "image"))
    if kind == "text":
        fields = FieldSet(("type", "text"), required=("text",), path=path).check(raw)
        return TextPart(text=as_string(fields["text"], join_path(path, "text")))
    fields = FieldSet(("type", "url", "data", "mime_type"), path=path).check(raw)
    url = as_string(fields["url"], join_path(path, "url"), non_empty=True) if "url" in fields else None
    data = as_string(fields["data"], join_path(path, "data"), non_empty=True) if "data" in fields else None
    if (url is None) == (data is None):
        raise invalid(f"{path}: an image part needs exactly one of 'url' or 'data'")
    mime = as_string(fields["mime_type"], join_path(path, "mime_type")) if "mime_type" in fields else None
    if data is not None and not mime:
        raise invalid(f"{join_path(path, 'mime_type')}: required with 'data'")
    if mime is not None:
        as_choice(mime, join_path(path, "mime_type"), IMAGE_MIME_TYPES)
    if url is not None:
        _check_image_url(url, join_path(path, "url"), max_image_bytes)
    if data is not None:
        _check_base64(data, join_path(path, "data"), max_image_bytes)
    return ImagePart(url=url, data=data, mime_type=mime)


def _check_image_url(url: str, path: str, max_image_bytes: int) -> None:
    """画像の URL: ``https:`` / ``http:`` (ホストつき、空白なし) か、画像の base64 の data URL。"""
    if url[:5].lower() == "data:":
        match = _DATA_URL.match(url)
        if match is None:
            raise invalid(f"{path}: a data URL must be data:image/<type>;base64,<data>")
        as_choice(match.group(1), f"{path} (media type)", IMAGE_MIME_TYPES)
        _check_base64(match.group(2), path, max_image_bytes)
        return
    parsed = urllib.parse.urlsplit(url) if len(url) <= 8192 else None
    if parsed is None or parsed.scheme.lower() not in ("https", "http") or not parsed.hostname:
        raise invalid(f"{path}: must be an https:, http: or data:image/...;base64 URL")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise invalid(f"{path}: must not contain whitespace or control characters")


def _check_base64(data: str, path: str, max_image_bytes: int) -> None:
    """base64 の画像データ: 文字の種類、長さ (4 の倍数)、デコード後の大きさ。"""
    decoded = len(data) // 4 * 3 - len(data) + len(data.rstrip("="))
    if decoded > max_image_bytes:
        raise invalid(f"{path}: the image is larger than {max_image_bytes} bytes")
    if len(data) % 4 != 0 or not _BASE64.match(data):
        raise invalid(f"{path}: must be base64 (A-Z, a-z, 0-9, +, / and = padding)")


def parse_user_message(payload: Any, max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES) -> UserMessagePayload:
    """``user_message`` を検証する (画像 1 枚の上限は ``server.max_image_bytes``)。"""
    fields = FieldSet(("thread_id", "content", "run_id"), required=("thread_id", "content")).check(payload)
    return UserMessagePayload(
        thread_id=parse_id(fields["thread_id"], "thread_id"),
        content=parse_content(fields["content"], max_image_bytes=max_image_bytes),
        run_id=parse_id(fields["run_id"], "run_id") if "run_id" in fields else None,
    )


def parse_tool_result(payload: Any) -> ToolResultPayload:
    """``tool_result`` を検証する。``result`` は任意の JSON 値 (``null`` も可だが、フィールドは必須)。"""
    allowed = ("thread_id", "run_id", "tool_call_id", "result", "is_error")
    fields = FieldSet(allowed, required=("thread_id", "tool_call_id")).check(payload)
    if "result" not in payload:
        raise invalid("missing field 'result'")
    return ToolResultPayload(
        thread_id=parse_id(fields["thread_id"], "thread_id"),
        tool_call_id=parse_id(fields["tool_call_id"], "tool_call_id"),
        result=payload["result"],
        run_id=parse_id(fields["run_id"], "run_id") if "run_id" in fields else None,
        is_error=as_boolean(fields["is_error"], "is_error") if "is_error" in fields else False,
    )


def parse_cancel(payload: Any) -> CancelPayload:
    """``cancel`` を検証する。"""
    fields = FieldSet(("thread_id", "run_id", "mode"), required=("thread_id",)).check(payload)
    return CancelPayload(
        thread_id=parse_id(fields["thread_id"], "thread_id"),
        run_id=parse_id(fields["run_id"], "run_id") if "run_id" in fields else None,
        mode=as_choice(fields["mode"], "mode", CANCEL_MODES) if "mode" in fields else "now",
    )


def parse_list_threads(payload: Any) -> ListThreadsPayload:
    """``list_threads`` を検証する (``limit`` は 1..200、``before`` は前のページの ``next_cursor``)。"""
    fields = FieldSet(("limit", "before")).check({} if payload is None else payload)
    out = ListThreadsPayload()
    if "limit" in fields:
        out.limit = as_integer(fields["limit"], "limit", 1, MAX_LIST_LIMIT)
    if "before" in fields:
        out.before = as_string(fields["before"], "before", non_empty=True, max_chars=MAX_CURSOR_CHARS)
    return out


def parse_thread_ref(payload: Any) -> ThreadRefPayload:
    """``get_history`` / ``delete_thread`` を検証する。"""
    fields = FieldSet(("thread_id",), required=("thread_id",)).check(payload)
    return ThreadRefPayload(thread_id=parse_id(fields["thread_id"], "thread_id"))


def parse_rewind(payload: Any) -> RewindPayload:
    """``rewind`` を検証する。"""
    fields = FieldSet(("thread_id", "run_id"), required=("thread_id", "run_id")).check(payload)
    return RewindPayload(
        thread_id=parse_id(fields["thread_id"], "thread_id"), run_id=parse_id(fields["run_id"], "run_id")
    )


def parse_update_thread(payload: Any) -> UpdateThreadPayload:
    """``update_thread`` を検証する (``title`` は空でない 200 文字までの文字列。前後の空白は除く)。"""
    fields = FieldSet(("thread_id", "title"), required=("thread_id", "title")).check(payload)
    title = as_string(fields["title"], "title", non_empty=True, max_chars=MAX_TITLE_CHARS).strip()
    if not title:
        raise invalid("title: must not be blank")
    return UpdateThreadPayload(thread_id=parse_id(fields["thread_id"], "thread_id"), title=title)


# ---------------------------------------------------------------- 成功の ack


def start_ack(
    thread_id: str, model: str, tools: list[dict[str, str]], last_seq: int, warnings: list[str]
) -> dict[str, Any]:
    """``start`` の成功 ack (PROTOCOL.md のとおりのキーだけ)。"""
    return {
        "ok": True,
        "thread_id": thread_id,
        "model": model,
        "tools": tools,
        "last_seq": last_seq,
        "warnings": warnings,
        "protocol": PROTOCOL_VERSION,
    }


def user_message_ack(run_id: str) -> dict[str, Any]:
    """``user_message`` の成功 ack。"""
    return {"ok": True, "run_id": run_id}


def tool_result_ack() -> dict[str, Any]:
    """``tool_result`` の成功 ack。"""
    return {"ok": True}


def cancel_ack(cancelled: bool) -> dict[str, Any]:
    """``cancel`` の成功 ack。"""
    return {"ok": True, "cancelled": cancelled}


# 他のモジュール (routes / registry / テスト) がこのモジュールから引くもの
__all__ = [
    "ACK_ERROR_CODES",
    "CLIENT_EVENTS",
    "ENVELOPE_FIELDS",
    "FORBIDDEN",
    "ID_PATTERN",
    "INTERNAL",
    "INVALID_PAYLOAD",
    "LIMIT_REACHED",
    "NOT_AWAITING",
    "NO_ACTIVE_RUN",
    "PAYLOAD_TOO_LARGE",
    "PROTOCOL_VERSION",
    "RATE_LIMITED",
    "RUN_END_EVENTS",
    "RUN_ERROR_CODES",
    "RUN_IN_PROGRESS",
    "SERVER_EVENTS",
    "STORE_UNAVAILABLE",
    "UNAUTHORIZED",
    "UNKNOWN_RUN",
    "UNKNOWN_THREAD",
    "UNKNOWN_TOOL_CALL",
    "CancelPayload",
    "ListThreadsPayload",
    "ProtocolError",
    "RewindPayload",
    "RunSettings",
    "StartPayload",
    "ThreadRefPayload",
    "ToolResultPayload",
    "UpdateThreadPayload",
    "UserMessagePayload",
    "cancel_ack",
    "check_size",
    "invalid",
    "parse_cancel",
    "parse_content",
    "parse_id",
    "parse_list_threads",
    "parse_rewind",
    "parse_settings",
    "parse_start",
    "parse_thread_ref",
    "parse_tool_choice",
    "parse_tool_result",
    "parse_update_thread",
    "parse_user_message",
    "payload_size",
    "single_payload",
    "start_ack",
    "tool_result_ack",
    "user_message_ack",
]
