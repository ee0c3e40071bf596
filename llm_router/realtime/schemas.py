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

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from llm_router.core.schemas.common import ContentPart, ImagePart, TextPart, ToolChoice

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
    INTERNAL,
)
RUN_ERROR_CODES = (
    "provider_auth",
    "provider_rate_limited",
    "provider_unavailable",
    "provider_bad_request",
    "provider_stream_broken",
    "timeout",
    "internal",
)

# ---------------------------------------------------------------- イベント

CLIENT_EVENTS = ("start", "user_message", "tool_result", "cancel")

# サーバー -> クライアントのイベント名と、封筒以外のフィールド (PROTOCOL.md の表と同じ順)
SERVER_EVENTS: dict[str, tuple[str, ...]] = {
    "run_started": ("model", "max_steps"),
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
    "run_error": ("error", "usage"),
    "run_cancelled": ("reason", "usage"),
}
ENVELOPE_FIELDS = ("type", "thread_id", "run_id", "seq", "ts")
RUN_END_EVENTS = ("run_finished", "run_error", "run_cancelled")

ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
REASONING_LEVELS = ("off", "low", "medium", "high")
TOOL_CHOICE_MODES = ("auto", "none", "required")
CANCEL_MODES = ("now", "after_step")
MAX_STEPS_CAP = 64
MAX_TOKENS_CAP = 1_000_000
MAX_MODEL_SPEC_CHARS = 200


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
class _Fields:
    """1 つのオブジェクトの検証: 許すフィールド、必須のフィールド、パスの接頭辞。"""

    allowed: tuple[str, ...]
    required: tuple[str, ...] = ()
    path: str = ""
    values: dict[str, Any] = field(default_factory=dict)

    def check(self, obj: Any) -> dict[str, Any]:
        """未知・欠落のフィールドを調べ、``null`` を除いた値を返す。"""
        where = self.path or "payload"
        if not isinstance(obj, dict):
            raise invalid(f"{where}: must be an object, got {_type_name(obj)}")
        for key in obj:
            if key not in self.allowed:
                raise invalid(_unknown_field_message(self.path, key, self.allowed))
        values = {k: v for k, v in obj.items() if v is not None}
        for key in self.required:
            if key not in values:
                raise invalid(f"missing field '{_join(self.path, key)}'")
        return values


# ---------------------------------------------------------------- 小さな検証関数


def _join(path: str, key: str) -> str:
    """``settings`` と ``max_tokens`` から ``settings.max_tokens`` を作る。"""
    return f"{path}.{key}" if path else key


def _type_name(value: Any) -> str:
    """JSON の型名 (メッセージ用)。"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, bytes | bytearray):
        return "binary"
    return type(value).__name__


def _unknown_field_message(path: str, key: Any, allowed: tuple[str, ...]) -> str:
    """未知のフィールドのメッセージ (近い名前があれば示す)。"""
    name = _join(path, str(key)[:64])
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    hint = f" (did you mean '{_join(path, close[0])}'?)" if close else f" (allowed: {', '.join(allowed)})"
    return f"unknown field '{name}'{hint}"


def parse_id(value: Any, path: str) -> str:
    """ID (``^[A-Za-z0-9_.:-]{1,128}$``) を検証する。"""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise invalid(f"{path}: must be a string matching ^[A-Za-z0-9_.:-]{{1,128}}$")
    return value


def _string(value: Any, path: str, *, non_empty: bool = False, max_chars: int | None = None) -> str:
    """文字列を検証する。"""
    if not isinstance(value, str):
        raise invalid(f"{path}: must be a string, got {_type_name(value)}")
    if non_empty and not value.strip():
        raise invalid(f"{path}: must not be empty")
    if max_chars is not None and len(value) > max_chars:
        raise invalid(f"{path}: must be at most {max_chars} characters")
    return value


def _boolean(value: Any, path: str) -> bool:
    """真偽値を検証する (0/1 は受けない)。"""
    if not isinstance(value, bool):
        raise invalid(f"{path}: must be a boolean, got {_type_name(value)}")
    return value


def _integer(value: Any, path: str, low: int, high: int) -> int:
    """範囲つきの整数を検証する (真偽値と小数は受けない)。"""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{path}: must be an integer in {low}..{high}, got {_short(value)}")
    return value


def _number(value: Any, path: str, low: float, high: float) -> float:
    """範囲つきの数値を検証する。"""
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise invalid(f"{path}: must be a number in {low:g}..{high:g}, got {_short(value)}")
    return float(value)


def _choice(value: Any, path: str, choices: tuple[str, ...]) -> str:
    """列挙値を検証する。"""
    if not isinstance(value, str) or value not in choices:
        raise invalid(f"{path}: must be one of {', '.join(choices)}, got {_short(value)}")
    return value


def _short(value: Any) -> str:
    """メッセージに入れる値の短い表現 (長い入力をそのまま返さない)。"""
    text = json.dumps(value, ensure_ascii=False, default=_type_name)
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------- 大きさ


def payload_size(args: tuple[Any, ...]) -> int:
    """イベント引数の JSON としての大きさ (バイト)。バイナリはそのバイト数で数える。"""
    size = 0
    for arg in args:
        size += len(json.dumps(arg, ensure_ascii=False, separators=(",", ":"), default=_binary_size).encode())
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


# ---------------------------------------------------------------- 各イベントのペイロード


def parse_settings(value: Any, path: str = "settings") -> RunSettings:
    """``settings`` を検証する。"""
    fields = _Fields(
        ("temperature", "max_tokens", "max_steps", "tool_choice", "parallel_tool_calls", "reasoning"), path=path
    ).check(value)
    out = RunSettings()
    if "temperature" in fields:
        out.temperature = _number(fields["temperature"], _join(path, "temperature"), 0.0, 2.0)
    if "max_tokens" in fields:
        out.max_tokens = _integer(fields["max_tokens"], _join(path, "max_tokens"), 1, MAX_TOKENS_CAP)
    if "max_steps" in fields:
        out.max_steps = _integer(fields["max_steps"], _join(path, "max_steps"), 1, MAX_STEPS_CAP)
    if "tool_choice" in fields:
        out.tool_choice = parse_tool_choice(fields["tool_choice"], _join(path, "tool_choice"))
    if "parallel_tool_calls" in fields:
        out.parallel_tool_calls = _boolean(fields["parallel_tool_calls"], _join(path, "parallel_tool_calls"))
    if "reasoning" in fields:
        out.reasoning = _choice(fields["reasoning"], _join(path, "reasoning"), REASONING_LEVELS)
    return out


def parse_tool_choice(value: Any, path: str) -> ToolChoice:
    """``tool_choice``: ``"auto" | "none" | "required"`` か ``{"type": "tool", "name": "..."}``。"""
    if isinstance(value, str):
        return ToolChoice(mode=_choice(value, path, TOOL_CHOICE_MODES))  # type: ignore[arg-type]
    fields = _Fields(("type", "name"), required=("type", "name"), path=path).check(value)
    _choice(fields["type"], _join(path, "type"), ("tool",))
    return ToolChoice(mode="tool", name=_string(fields["name"], _join(path, "name"), non_empty=True, max_chars=64))


def parse_start(payload: Any) -> StartPayload:
    """``start`` を検証する (ツール定義の中身は登録簿が ``normalize_tools`` で調べる)。"""
    allowed = ("thread_id", "model", "system", "tools", "server_tools", "settings", "resume_after_seq")
    fields = _Fields(allowed).check(payload)
    out = StartPayload()
    if "thread_id" in fields:
        out.thread_id = parse_id(fields["thread_id"], "thread_id")
    if "model" in fields:
        out.model = _string(fields["model"], "model", non_empty=True, max_chars=MAX_MODEL_SPEC_CHARS).strip()
    if "system" in fields:
        out.system = _string(fields["system"], "system")
    if "tools" in fields:
        if not isinstance(fields["tools"], list):
            raise invalid(f"tools: must be an array, got {_type_name(fields['tools'])}")
        out.tools = fields["tools"]
    if "server_tools" in fields:
        names = fields["server_tools"]
        if not isinstance(names, list):
            raise invalid(f"server_tools: must be an array of tool names, got {_type_name(names)}")
        out.server_tools = [_string(n, f"server_tools[{i}]", non_empty=True) for i, n in enumerate(names)]
    if "settings" in fields:
        out.settings = parse_settings(fields["settings"])
    if "resume_after_seq" in fields:
        out.resume_after_seq = _integer(fields["resume_after_seq"], "resume_after_seq", 0, 2**53)
    return out


def parse_content(value: Any, path: str = "content") -> str | list[ContentPart]:
    """``content``: 文字列か、コンテンツパーツ (``text`` / ``image``) の配列。"""
    if isinstance(value, str):
        if not value.strip():
            raise invalid(f"{path}: must not be empty")
        return value
    if not isinstance(value, list) or not value:
        raise invalid(f"{path}: must be a non-empty string or a non-empty array of content parts")
    parts: list[ContentPart] = []
    for i, raw in enumerate(value):
        parts.append(_content_part(raw, f"{path}[{i}]"))
    return parts


def _content_part(raw: Any, path: str) -> ContentPart:
    """1 つのコンテンツパーツ: ``{"type": "text", "text"}`` か ``{"type": "image", "url" | "data", "mime_type"?}``。"""
    if not isinstance(raw, dict):
        raise invalid(f"{path}: must be an object, got {_type_name(raw)}")
    kind = _choice(raw.get("type"), _join(path, "type"), ("text", "image"))
    if kind == "text":
        fields = _Fields(("type", "text"), required=("text",), path=path).check(raw)
        return TextPart(text=_string(fields["text"], _join(path, "text")))
    fields = _Fields(("type", "url", "data", "mime_type"), path=path).check(raw)
    url = _string(fields["url"], _join(path, "url"), non_empty=True) if "url" in fields else None
    data = _string(fields["data"], _join(path, "data"), non_empty=True) if "data" in fields else None
    if (url is None) == (data is None):
        raise invalid(f"{path}: an image part needs exactly one of 'url' or 'data'")
    mime = _string(fields["mime_type"], _join(path, "mime_type")) if "mime_type" in fields else None
    if data is not None and not mime:
        raise invalid(f"{_join(path, 'mime_type')}: required with 'data'")
    return ImagePart(url=url, data=data, mime_type=mime)


def parse_user_message(payload: Any) -> UserMessagePayload:
    """``user_message`` を検証する。"""
    fields = _Fields(("thread_id", "content", "run_id"), required=("thread_id", "content")).check(payload)
    return UserMessagePayload(
        thread_id=parse_id(fields["thread_id"], "thread_id"),
        content=parse_content(fields["content"]),
        run_id=parse_id(fields["run_id"], "run_id") if "run_id" in fields else None,
    )


def parse_tool_result(payload: Any) -> ToolResultPayload:
    """``tool_result`` を検証する。``result`` は任意の JSON 値 (``null`` も可だが、フィールドは必須)。"""
    allowed = ("thread_id", "run_id", "tool_call_id", "result", "is_error")
    fields = _Fields(allowed, required=("thread_id", "tool_call_id")).check(payload)
    if "result" not in payload:
        raise invalid("missing field 'result'")
    return ToolResultPayload(
        thread_id=parse_id(fields["thread_id"], "thread_id"),
        tool_call_id=parse_id(fields["tool_call_id"], "tool_call_id"),
        result=payload["result"],
        run_id=parse_id(fields["run_id"], "run_id") if "run_id" in fields else None,
        is_error=_boolean(fields["is_error"], "is_error") if "is_error" in fields else False,
    )


def parse_cancel(payload: Any) -> CancelPayload:
    """``cancel`` を検証する。"""
    fields = _Fields(("thread_id", "run_id", "mode"), required=("thread_id",)).check(payload)
    return CancelPayload(
        thread_id=parse_id(fields["thread_id"], "thread_id"),
        run_id=parse_id(fields["run_id"], "run_id") if "run_id" in fields else None,
        mode=_choice(fields["mode"], "mode", CANCEL_MODES) if "mode" in fields else "now",
    )


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
