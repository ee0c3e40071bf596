"""AG-UI の ``RunAgentInput`` (camelCase の JSON) を自前のコードで厳密に検証し、エージェントの語彙へ写す。

- 受け付けるフィールドは AG-UI のスキーマ (``RunAgentInput`` / メッセージ / ``Tool`` / ``Context``) にあるものだけ。
  未知のフィールドは近い名前を示して拒否し、誤りはフィールドのパスで名指す (``messages[2].toolCalls[0].id``)。
- メッセージの写し方 (docs/agui.md): ``user`` → ユーザー (テキストと画像のパーツ)、``assistant`` → テキストと
  ``toolCalls``、``tool`` → ツール結果 (``error`` があれば ``is_error``)、``system`` / ``developer`` → システム
  プロンプト (順に連結)、``reasoning`` / ``activity`` → 読み飛ばす (署名の無い推論はプロバイダへ送り返せない)。
- ``forwardedProps`` はアプリ固有の値の入れ物なので、知っているキー (``model`` / ``settings`` / ``serverTools``)
  だけを検証して使い、ほかは素通しにする。
検証は状態を一切変えない。失敗は :class:`InputError` (HTTP 400 でそのまま返す)。
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from llm_router.core.json_schema_validation import json_type
from llm_router.core.schemas.common import ContentPart, ImagePart, Message, TextPart, ToolCall, ToolResult
from llm_router.realtime.protocol_errors import INVALID_PAYLOAD, ProtocolError
from llm_router.realtime.schemas import RunSettings, parse_settings
from llm_router.realtime.validators import FieldSet, as_string, join_path

MAX_ID_CHARS = 256
_BASE_MESSAGE = ("id", "role", "name", "encryptedValue", "metadata", "subagentRunId")
MESSAGE_FIELDS: dict[str, tuple[str, ...]] = {
    "user": (*_BASE_MESSAGE, "content"),
    "assistant": (*_BASE_MESSAGE, "content", "toolCalls"),
    "system": (*_BASE_MESSAGE, "content"),
    "developer": (*_BASE_MESSAGE, "content"),
    "tool": ("id", "role", "content", "toolCallId", "error", "encryptedValue", "metadata", "subagentRunId"),
    "reasoning": ("id", "role", "content", "encryptedValue", "metadata", "subagentRunId"),
    "activity": ("id", "role", "activityType", "content", "metadata", "subagentRunId"),
}
INPUT_FIELDS = (
    "threadId",
    "runId",
    "protocolVersion",
    "parentRunId",
    "state",
    "messages",
    "tools",
    "context",
    "forwardedProps",
    "resume",
)
_FIELD_IN_MESSAGE = re.compile(r"^(?:missing|unknown) field '([^']+)'|^([^\s:]+):")


class InputError(ProtocolError):
    """``RunAgentInput`` の誤り (コードはいつも ``invalid_payload``)。``field`` は問題のフィールドのパス。"""

    def __init__(self, field: str, message: str) -> None:
        """フィールドのパスと、人が読む説明を受け取る。"""
        super().__init__(INVALID_PAYLOAD, message)
        self.field = field


@dataclass
class AguiInput:
    """検証済みの ``RunAgentInput``。``history`` はエージェントの履歴 (システムプロンプトは ``system`` へ)。"""

    thread_id: str
    run_id: str
    history: list[Message]
    system: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    settings: RunSettings | None = None
    server_tools: list[str] | None = None
    protocol_version: str | None = None
    parent_run_id: str | None = None


def _fail(exc: ProtocolError) -> InputError:
    """検証部品の :class:`ProtocolError` を、フィールドのパスつきの :class:`InputError` にする (既にそれならそのまま)。"""
    if isinstance(exc, InputError):
        return exc
    match = _FIELD_IN_MESSAGE.match(exc.message)
    name = (match.group(1) or match.group(2)) if match else ""
    return InputError(name, exc.message)


def _id(value: Any, path: str) -> str:
    """AG-UI の ID: 空でない文字列 (``MAX_ID_CHARS`` 文字まで、制御文字なし: ログの行を偽らせない)。"""
    text = as_string(value, path, non_empty=True, max_chars=MAX_ID_CHARS)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise InputError(path, f"{path}: must not contain control characters")
    return text


def parse_run_input(body: Any) -> AguiInput:
    """``RunAgentInput`` を検証して :class:`AguiInput` を返す。

    Raises:
        InputError: どこかのフィールドが不正なとき (``field`` がそのパス)。
    """
    try:
        return _parse(body)
    except ProtocolError as exc:
        raise _fail(exc) from None


def _parse(body: Any) -> AguiInput:
    """検証の本体 (誤りは :class:`ProtocolError`)。"""
    if not isinstance(body, dict):
        raise InputError("", f"body: must be a JSON object (RunAgentInput), got {json_type(body, integers=False)}")
    fields = FieldSet(INPUT_FIELDS, required=("threadId", "runId", "messages")).check(body)
    thread_id = _id(fields["threadId"], "threadId")
    run_id = _id(fields["runId"], "runId")
    raw_messages = fields["messages"]
    if not isinstance(raw_messages, list):
        raise InputError("messages", f"messages: must be an array, got {json_type(raw_messages, integers=False)}")
    history, system = MessageReader().read(raw_messages)
    if not history:
        raise InputError("messages", "messages: must hold at least one user, assistant or tool message")
    out = AguiInput(thread_id=thread_id, run_id=run_id, history=history)
    out.tools = _tools(fields.get("tools", []))
    context = _context(fields.get("context", []))
    out.system = "\n\n".join(part for part in (system, context) if part) or None
    if "protocolVersion" in fields:
        out.protocol_version = as_string(fields["protocolVersion"], "protocolVersion", non_empty=True, max_chars=32)
    if "parentRunId" in fields:
        out.parent_run_id = _id(fields["parentRunId"], "parentRunId")
    resume = fields.get("resume")
    if resume is not None:
        if not isinstance(resume, list):
            raise InputError("resume", f"resume: must be an array, got {json_type(resume, integers=False)}")
        if resume:
            raise InputError(
                "resume", "resume: this agent never ends a run with an interrupt; there is nothing to resume"
            )
    _forwarded(fields.get("forwardedProps"), out)
    return out


def _tools(value: Any) -> list[dict[str, Any]]:
    """``tools``: ``{name, description, parameters?, metadata?}`` の配列を正規形の dict にする。"""
    if not isinstance(value, list):
        raise InputError("tools", f"tools: must be an array, got {json_type(value, integers=False)}")
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(value):
        path = f"tools[{i}]"
        tool = FieldSet(("name", "description", "parameters", "metadata"), required=("name", "description"), path=path)
        fields = tool.check(raw)
        parameters = fields.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise InputError(f"{path}.parameters", f"{path}.parameters: must be a JSON Schema object")
        out.append(
            {
                "name": as_string(fields["name"], f"{path}.name", non_empty=True, max_chars=64),
                "description": as_string(fields["description"], f"{path}.description"),
                "parameters": parameters or {"type": "object", "properties": {}},
            }
        )
    return out


def _context(value: Any) -> str:
    """``context``: ``{description, value}`` の配列を、システムプロンプトに足す文章にする。"""
    if not isinstance(value, list):
        raise InputError("context", f"context: must be an array, got {json_type(value, integers=False)}")
    lines = []
    for i, raw in enumerate(value):
        fields = FieldSet(("description", "value"), required=("description", "value"), path=f"context[{i}]").check(raw)
        description = as_string(fields["description"], f"context[{i}].description")
        text = as_string(fields["value"], f"context[{i}].value")
        lines.append(f"- {description}: {text}")
    return "Context:\n" + "\n".join(lines) if lines else ""


def _forwarded(value: Any, out: AguiInput) -> None:
    """``forwardedProps`` のうち、知っているキー (``model`` / ``settings`` / ``serverTools``) を検証して写す。"""
    if value is None:
        return
    if not isinstance(value, dict):
        return  # 任意の JSON 値: このサーバーが読むものは無い
    path = "forwardedProps"
    if value.get("model") is not None:
        out.model = as_string(value["model"], f"{path}.model", non_empty=True, max_chars=200).strip()
    if value.get("settings") is not None:
        out.settings = parse_settings(value["settings"], f"{path}.settings")
    names = value.get("serverTools")
    if names is not None:
        if not isinstance(names, list):
            raise InputError(f"{path}.serverTools", f"{path}.serverTools: must be an array of tool names")
        out.server_tools = [as_string(n, f"{path}.serverTools[{i}]", non_empty=True) for i, n in enumerate(names)]


class MessageReader:
    """``messages`` を順に読み、エージェントの履歴とシステムプロンプトを作る。"""

    def __init__(self) -> None:
        """空の状態で作る。"""
        self.history: list[Message] = []
        self.system: list[str] = []
        self.calls: dict[str, ToolCall] = {}

    def read(self, raw: list[Any]) -> tuple[list[Message], str | None]:
        """全メッセージを読む。``(履歴, システムプロンプト)`` を返す。"""
        for i, message in enumerate(raw):
            self._one(message, f"messages[{i}]")
        return self.history, ("\n\n".join(self.system) or None)

    def _one(self, raw: Any, path: str) -> None:
        """1 メッセージを検証して写す。"""
        if not isinstance(raw, dict):
            raise InputError(path, f"{path}: must be an object, got {json_type(raw, integers=False)}")
        role = raw.get("role")
        if role not in MESSAGE_FIELDS:
            raise InputError(
                f"{path}.role",
                f"{path}.role: must be one of {', '.join(MESSAGE_FIELDS)}, got {json_type(role, integers=False)}",
            )
        required = ("id", "role", "toolCallId", "content") if role == "tool" else ("id", "role")
        if role in ("user", "system", "developer", "reasoning"):
            required = ("id", "role", "content")
        elif role == "activity":
            required = ("id", "role", "activityType", "content")
        fields = FieldSet(MESSAGE_FIELDS[role], required=required, path=path).check(raw)
        _id(fields["id"], f"{path}.id")
        getattr(self, f"_{role}")(fields, path)

    def _user(self, fields: dict[str, Any], path: str) -> None:
        """``user``: 文字列か、パーツ (``text`` / ``image``) の配列。"""
        self.history.append(Message.user(_user_content(fields["content"], f"{path}.content")))

    def _system(self, fields: dict[str, Any], path: str) -> None:
        """``system``: システムプロンプトに足す。"""
        self.system.append(as_string(fields["content"], f"{path}.content"))

    _developer = _system

    def _assistant(self, fields: dict[str, Any], path: str) -> None:
        """``assistant``: テキスト (任意) と ``toolCalls``。"""
        text = as_string(fields["content"], f"{path}.content") if "content" in fields else ""
        calls = [self._tool_call(c, f"{path}.toolCalls[{j}]") for j, c in enumerate(_array(fields, "toolCalls", path))]
        if not text and not calls:
            return  # 空のアシスタントメッセージ (中断された出力など) はプロバイダへ送らない
        self.history.append(Message.assistant(text, calls))

    def _tool_call(self, raw: Any, path: str) -> ToolCall:
        """``{id, type: "function", function: {name, arguments}}``。引数は JSON オブジェクトの文字列。"""
        fields = FieldSet(("id", "type", "function", "encryptedValue", "metadata"), ("id", "function"), path).check(raw)
        call_id = _id(fields["id"], f"{path}.id")
        if fields.get("type", "function") != "function":
            raise InputError(f"{path}.type", f'{path}.type: must be "function"')
        function = FieldSet(("name", "arguments"), ("name", "arguments"), f"{path}.function").check(fields["function"])
        name = as_string(function["name"], f"{path}.function.name", non_empty=True, max_chars=64)
        text = as_string(function["arguments"], f"{path}.function.arguments")
        try:
            arguments = json.loads(text) if text.strip() else {}
        except ValueError:
            raise InputError(
                f"{path}.function.arguments", f"{path}.function.arguments: must be a JSON object"
            ) from None
        if not isinstance(arguments, dict):
            raise InputError(f"{path}.function.arguments", f"{path}.function.arguments: must be a JSON object")
        if call_id in self.calls:
            raise InputError(f"{path}.id", f"{path}.id: tool call id '{call_id[:64]}' appears twice")
        call = ToolCall(id=call_id, name=name, arguments=arguments, raw_arguments=text)
        self.calls[call_id] = call
        return call

    def _tool(self, fields: dict[str, Any], path: str) -> None:
        """``tool``: 前のアシスタントの呼び出しへの結果。``error`` があれば失敗の結果。"""
        call_id = _id(fields["toolCallId"], f"{path}.toolCallId")
        call = self.calls.get(call_id)
        if call is None:
            raise InputError(
                f"{path}.toolCallId", f"{path}.toolCallId: no earlier assistant tool call has id '{call_id[:64]}'"
            )
        content = _text_content(fields["content"], f"{path}.content")
        error = as_string(fields["error"], f"{path}.error") if "error" in fields else None
        result = content if content or error is None else error
        self.history.append(Message(role="tool", tool_result=ToolResult(call_id, call.name, result, error is not None)))

    def _reasoning(self, fields: dict[str, Any], path: str) -> None:
        """``reasoning``: 検証だけして読み飛ばす (署名が無く、プロバイダへ送り返せない)。"""
        as_string(fields["content"], f"{path}.content")

    def _activity(self, fields: dict[str, Any], path: str) -> None:
        """``activity``: フロントエンドの表示用。読み飛ばす。"""
        if not isinstance(fields["content"], dict):
            raise InputError(f"{path}.content", f"{path}.content: must be an object")


def _array(fields: dict[str, Any], key: str, path: str) -> list[Any]:
    """任意の配列フィールド (無ければ空)。"""
    value = fields.get(key, [])
    if not isinstance(value, list):
        raise InputError(
            join_path(path, key), f"{join_path(path, key)}: must be an array, got {json_type(value, integers=False)}"
        )
    return value


def _user_content(value: Any, path: str) -> str | list[ContentPart]:
    """ユーザーの ``content``: 文字列か、``text`` / ``image`` パーツの配列 (音声・動画・文書は扱わない)。"""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise InputError(path, f"{path}: must be a string or an array of parts, got {json_type(value, integers=False)}")
    parts: list[ContentPart] = []
    for i, raw in enumerate(value):
        part_path = f"{path}[{i}]"
        kind = raw.get("type") if isinstance(raw, dict) else None
        if kind == "text":
            fields = FieldSet(("type", "id", "text", "metadata"), ("text",), part_path).check(raw)
            parts.append(TextPart(as_string(fields["text"], f"{part_path}.text")))
        elif kind == "image":
            fields = FieldSet(("type", "id", "source", "metadata"), ("source",), part_path).check(raw)
            parts.append(_image(fields["source"], f"{part_path}.source"))
        else:
            raise InputError(
                f"{part_path}.type",
                f'{part_path}.type: must be "text" or "image" (audio, video and documents are not supported)',
            )
    if not parts:
        raise InputError(path, f"{path}: must not be an empty array")
    return parts


def _image(raw: Any, path: str) -> ImagePart:
    """画像の ``source``: ``{type: "data", value, mimeType}`` か ``{type: "url", value, mimeType?}``。"""
    kind = raw.get("type") if isinstance(raw, dict) else None
    if kind == "data":
        fields = FieldSet(("type", "value", "mimeType"), ("value", "mimeType"), path).check(raw)
        return ImagePart(
            data=as_string(fields["value"], f"{path}.value", non_empty=True),
            mime_type=as_string(fields["mimeType"], f"{path}.mimeType", non_empty=True),
        )
    if kind == "url":
        fields = FieldSet(("type", "value", "mimeType"), ("value",), path).check(raw)
        mime = as_string(fields["mimeType"], f"{path}.mimeType") if "mimeType" in fields else None
        return ImagePart(url=as_string(fields["value"], f"{path}.value", non_empty=True), mime_type=mime)
    raise InputError(f"{path}.type", f'{path}.type: must be "data" or "url"')


def _text_content(value: Any, path: str) -> str:
    """ツール結果の ``content``: 文字列か、``text`` パーツの配列 (テキストを連結する)。"""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise InputError(path, f"{path}: must be a string or an array of parts, got {json_type(value, integers=False)}")
    texts = []
    for i, raw in enumerate(value):
        if not isinstance(raw, dict) or raw.get("type") != "text":
            raise InputError(f"{path}[{i}].type", f'{path}[{i}].type: only "text" parts are supported in a tool result')
        fields = FieldSet(("type", "id", "text", "metadata"), ("text",), f"{path}[{i}]").check(raw)
        texts.append(as_string(fields["text"], f"{path}[{i}].text"))
    return "".join(texts)


MISSING_RESULT = "no result: the frontend sent no tool message for this call"


def complete_tool_results(history: list[Message], kept: dict[str, ToolResult]) -> list[Message]:
    """各アシスタントのツール呼び出しのすぐ後に、その結果を呼び出し順に並べた履歴を返す。

    結果の出どころは、前のランでサーバーが答えた結果 (``kept``: サーバー側ツールの結果はサーバーのものが正で、
    ``is_error`` も保たれる)、無ければ ``messages`` の ``role: "tool"`` (どこにあってもよい)、それも無ければ
    ``is_error`` の結果 (:data:`MISSING_RESULT`)。どのプロバイダも「すべての呼び出しに結果がある」履歴を
    求めるため (docs/agui.md「ツールの規則」)。
    """
    given = {m.tool_result.tool_call_id: m for m in history if m.role == "tool" and m.tool_result is not None}
    out: list[Message] = []
    for message in history:
        if message.role == "tool":
            continue  # 呼び出しの直後に置き直す
        out.append(message)
        for call in message.tool_calls if message.role == "assistant" else []:
            if call.id in kept:
                out.append(Message(role="tool", tool_result=kept[call.id]))
            elif call.id in given:
                out.append(given[call.id])
            else:
                out.append(Message(role="tool", tool_result=ToolResult(call.id, call.name, MISSING_RESULT, True)))
    return out
