"""共有の語彙 (メッセージ、パーツ、ツール) と JSON 互換の dict の相互変換。

ストア (``llm_router/store``) はこの形でスレッドの履歴を保存する。出力はそのまま ``json.dumps`` できる
(``bytes`` は ``{"$bytes": "<base64>"}`` になる)。``from_dict`` は形を検査し、誤りは欄の場所
(例 ``history[3].message.tool_calls[0].name``) を名指しした :class:`SerializationError` にする。

プロバイダの不透明なデータ (:class:`ProviderState`、推論の署名、``redacted_data``) もそのまま保存する:
プロバイダへ送り返すために必要だから。クライアントへのイベントには決して出さない (それは呼ぶ側の責任)。
"""

from __future__ import annotations

import base64
from typing import Any

from llm_router.core.schemas.common import (
    ContentPart,
    ImagePart,
    Message,
    ProviderState,
    ReasoningPart,
    TextPart,
    ToolCall,
    ToolDefinition,
    ToolResult,
)

ROLES = ("system", "user", "assistant", "tool")


class SerializationError(ValueError):
    """保存された dict の形が誤っている。``path`` は誤った欄の場所。"""

    def __init__(self, path: str, problem: str) -> None:
        """欄の場所と問題を受け取る。"""
        super().__init__(f"{path}: {problem}")
        self.path = path


# ---------------------------------------------------------------- 任意の JSON 値 (bytes を含み得る)


def encode_value(value: Any) -> Any:
    """任意の値を JSON 互換にする: ``bytes`` は ``{"$bytes": base64}``、タプルはリスト。

    ``$`` で始まるキーを持つ dict は ``{"$dict": {...}}`` で包み、``$bytes`` と取り違えないようにする。
    """
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        encoded = {str(k): encode_value(v) for k, v in value.items()}
        if any(k.startswith("$") for k in encoded):
            return {"$dict": encoded}
        return encoded
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"value of type {type(value).__name__} cannot be stored as JSON")


def decode_value(value: Any) -> Any:
    """:func:`encode_value` の逆。"""
    if isinstance(value, dict):
        if set(value) == {"$bytes"} and isinstance(value["$bytes"], str):
            return base64.b64decode(value["$bytes"])
        if set(value) == {"$dict"} and isinstance(value["$dict"], dict):
            return {k: decode_value(v) for k, v in value["$dict"].items()}
        return {k: decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


# ---------------------------------------------------------------- 検査の小さな部品


def _obj(data: Any, path: str) -> dict[str, Any]:
    """dict であることを確かめる。"""
    if not isinstance(data, dict):
        raise SerializationError(path, f"expected an object, got {type(data).__name__}")
    return data


def _str(data: dict[str, Any], key: str, path: str, *, optional: bool = False, default: str = "") -> Any:
    """文字列の欄 (``optional`` なら ``None`` も可、無ければ ``default``)。"""
    if key not in data:
        if optional:
            return None
        return default
    value = data[key]
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise SerializationError(f"{path}.{key}", f"expected a string, got {type(value).__name__}")
    return value


def _bool(data: dict[str, Any], key: str, path: str) -> bool:
    """真偽値の欄 (無ければ偽)。"""
    value = data.get(key, False)
    if not isinstance(value, bool):
        raise SerializationError(f"{path}.{key}", f"expected a boolean, got {type(value).__name__}")
    return value


def _list(data: dict[str, Any], key: str, path: str) -> list[Any]:
    """リストの欄 (無ければ空)。"""
    value = data.get(key, [])
    if not isinstance(value, list):
        raise SerializationError(f"{path}.{key}", f"expected a list, got {type(value).__name__}")
    return value


def _set_fields(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """``obj`` の属性 ``names`` のうち ``None`` でないものの dict (省略できる欄は、値がある時だけ書く)。"""
    return {name: getattr(obj, name) for name in names if getattr(obj, name) is not None}


# ---------------------------------------------------------------- パーツ


def part_to_dict(part: ContentPart) -> dict[str, Any]:
    """コンテンツパーツ (テキストか画像) を dict にする。"""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    if isinstance(part, ImagePart):
        return {"type": "image", **_set_fields(part, ("url", "data", "mime_type"))}
    raise TypeError(f"unknown content part {type(part).__name__}")


def part_from_dict(data: Any, path: str = "part") -> ContentPart:
    """:func:`part_to_dict` の逆。"""
    data = _obj(data, path)
    kind = data.get("type")
    if kind == "text":
        text = _str(data, "text", path)
        return TextPart(text)
    if kind == "image":
        return ImagePart(
            url=_str(data, "url", path, optional=True),
            data=_str(data, "data", path, optional=True),
            mime_type=_str(data, "mime_type", path, optional=True),
        )
    raise SerializationError(f"{path}.type", f"expected 'text' or 'image', got {kind!r}")


def reasoning_to_dict(part: ReasoningPart) -> dict[str, Any]:
    """推論パーツを dict にする (署名と ``redacted_data`` も含む)。"""
    return {"text": part.text, **_set_fields(part, ("signature", "redacted_data"))}


def reasoning_from_dict(data: Any, path: str = "reasoning") -> ReasoningPart:
    """:func:`reasoning_to_dict` の逆。"""
    data = _obj(data, path)
    return ReasoningPart(
        text=_str(data, "text", path),
        signature=_str(data, "signature", path, optional=True),
        redacted_data=_str(data, "redacted_data", path, optional=True),
    )


def tool_call_to_dict(call: ToolCall) -> dict[str, Any]:
    """ツール呼び出しを dict にする。"""
    out = {"id": call.id, "name": call.name, "arguments": encode_value(call.arguments)}
    return {**out, **_set_fields(call, ("raw_arguments", "parse_error"))}


def tool_call_from_dict(data: Any, path: str = "tool_call") -> ToolCall:
    """:func:`tool_call_to_dict` の逆。"""
    data = _obj(data, path)
    for key in ("id", "name"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise SerializationError(f"{path}.{key}", "expected a non-empty string")
    arguments = decode_value(data.get("arguments", {}))
    if not isinstance(arguments, dict):
        raise SerializationError(f"{path}.arguments", "expected an object")
    return ToolCall(
        id=data["id"],
        name=data["name"],
        arguments=arguments,
        raw_arguments=_str(data, "raw_arguments", path, optional=True),
        parse_error=_str(data, "parse_error", path, optional=True),
    )


def tool_result_to_dict(result: ToolResult) -> dict[str, Any]:
    """ツール結果を dict にする (``result`` は任意の JSON 値)。"""
    return {
        "tool_call_id": result.tool_call_id,
        "name": result.name,
        "result": encode_value(result.result),
        "is_error": result.is_error,
    }


def tool_result_from_dict(data: Any, path: str = "tool_result") -> ToolResult:
    """:func:`tool_result_to_dict` の逆。"""
    data = _obj(data, path)
    if not isinstance(data.get("tool_call_id"), str) or not data["tool_call_id"]:
        raise SerializationError(f"{path}.tool_call_id", "expected a non-empty string")
    return ToolResult(
        tool_call_id=data["tool_call_id"],
        name=_str(data, "name", path),
        result=decode_value(data.get("result")),
        is_error=_bool(data, "is_error", path),
    )


def provider_state_to_dict(state: ProviderState) -> dict[str, Any]:
    """プロバイダの不透明なデータを dict にする。"""
    return {"provider": state.provider, "data": encode_value(state.data)}


def provider_state_from_dict(data: Any, path: str = "provider_state") -> ProviderState:
    """:func:`provider_state_to_dict` の逆。"""
    data = _obj(data, path)
    if not isinstance(data.get("provider"), str):
        raise SerializationError(f"{path}.provider", "expected a string")
    return ProviderState(provider=data["provider"], data=decode_value(data.get("data")))


def tool_definition_to_dict(tool: ToolDefinition) -> dict[str, Any]:
    """ツール定義を dict にする (ツール自身の ``strict`` の指定があれば、それも残す)。"""
    out = {"name": tool.name, "description": tool.description, "parameters": encode_value(tool.parameters)}
    if tool.strict is not None:
        out["strict"] = tool.strict
    return out


def tool_definition_from_dict(data: Any, path: str = "tool") -> ToolDefinition:
    """:func:`tool_definition_to_dict` の逆。"""
    data = _obj(data, path)
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise SerializationError(f"{path}.name", "expected a non-empty string")
    parameters = decode_value(data.get("parameters", {"type": "object", "properties": {}}))
    if not isinstance(parameters, dict):
        raise SerializationError(f"{path}.parameters", "expected an object")
    strict = data.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise SerializationError(f"{path}.strict", "expected a boolean")
    return ToolDefinition(
        name=data["name"], description=_str(data, "description", path), parameters=parameters, strict=strict
    )


# ---------------------------------------------------------------- メッセージ


def message_to_dict(message: Message) -> dict[str, Any]:
    """メッセージを dict にする。既定値の欄は省く (保存の大きさを抑える)。"""
    out: dict[str, Any] = {"role": message.role}
    if isinstance(message.content, str):
        out["content"] = message.content
    else:
        out["content"] = [part_to_dict(p) for p in message.content]
    if message.tool_calls:
        out["tool_calls"] = [tool_call_to_dict(c) for c in message.tool_calls]
    if message.tool_result is not None:
        out["tool_result"] = tool_result_to_dict(message.tool_result)
    if message.reasoning:
        out["reasoning"] = [reasoning_to_dict(r) for r in message.reasoning]
    if message.provider_state is not None:
        out["provider_state"] = provider_state_to_dict(message.provider_state)
    if message.interrupted:
        out["interrupted"] = True
    return out


def message_from_dict(data: Any, path: str = "message") -> Message:
    """:func:`message_to_dict` の逆。"""
    data = _obj(data, path)
    role = data.get("role")
    if role not in ROLES:
        raise SerializationError(f"{path}.role", f"expected one of {', '.join(ROLES)}, got {role!r}")
    raw_content = data.get("content", "")
    content: str | list[ContentPart]
    if isinstance(raw_content, str):
        content = raw_content
    elif isinstance(raw_content, list):
        content = [part_from_dict(p, f"{path}.content[{i}]") for i, p in enumerate(raw_content)]
    else:
        raise SerializationError(f"{path}.content", "expected a string or a list of parts")
    result = data.get("tool_result")
    state = data.get("provider_state")
    return Message(
        role=role,
        content=content,
        tool_calls=[
            tool_call_from_dict(c, f"{path}.tool_calls[{i}]") for i, c in enumerate(_list(data, "tool_calls", path))
        ],
        tool_result=None if result is None else tool_result_from_dict(result, f"{path}.tool_result"),
        reasoning=[
            reasoning_from_dict(r, f"{path}.reasoning[{i}]") for i, r in enumerate(_list(data, "reasoning", path))
        ],
        provider_state=None if state is None else provider_state_from_dict(state, f"{path}.provider_state"),
        interrupted=_bool(data, "interrupted", path),
    )
