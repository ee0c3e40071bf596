"""Python 関数の型ヒントと日本語 docstring から、ツールの説明と引数の JSON Schema を作る。

対応する型: ``str`` / ``int`` / ``float`` / ``bool`` / ``list[T]`` / ``dict`` / ``dict[str, T]`` /
``Literal[...]`` / ``Optional[T]`` (``T | None``) / ``Any`` (任意の JSON 値)。既定値のある引数は任意、無いものは ``required``。
説明は docstring の最初の段落、各引数の説明は Google 形式の ``Args:`` 節から取る。
``cancel`` という名前の引数はツールに取り消しトークンを渡すためのもので、スキーマには出さない。
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from collections.abc import Callable
from typing import Any, Literal, get_args, get_origin

CANCEL_PARAMETER = "cancel"
# docstring の節見出し (Google 形式)。Args 以外はここで説明の収集を止める
_SECTION = re.compile(r"^(Args|Arguments|Returns|Return|Raises|Yields|Examples|Example|Note|Notes|Attributes):\s*$")
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*[:：]\s*(.*)$")

_SCALARS: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def json_schema_for(annotation: Any, where: str) -> dict[str, Any]:
    """型ヒント 1 つを JSON Schema にする。

    Raises:
        TypeError: 対応しない型 (どの引数かを示す)。
    """
    if annotation is Any:
        return {}  # 任意の JSON 値
    if annotation in _SCALARS:
        return {"type": _SCALARS[annotation]}
    origin, args = get_origin(annotation), get_args(annotation)
    if annotation is list or origin is list:
        return {"type": "array", "items": json_schema_for(args[0], where)} if args else {"type": "array"}
    if annotation is dict or origin is dict:
        if args and args[0] is not str:
            raise TypeError(f"{where}: dict keys must be str (JSON object keys are strings)")
        return (
            {"type": "object", "additionalProperties": json_schema_for(args[1], where)} if args else {"type": "object"}
        )
    if origin is Literal:
        return _literal(args)
    if origin is typing.Union or origin is types.UnionType:
        return _optional(args, where)
    raise TypeError(
        f"{where}: unsupported type {annotation!r} (use str, int, float, bool, list, dict, Literal, Optional)"
    )


def _literal(values: tuple[Any, ...]) -> dict[str, Any]:
    """``Literal[...]`` を ``enum`` に (値の型がそろっていれば ``type`` も付ける)。"""
    kinds = {_SCALARS.get(type(v)) for v in values}
    schema: dict[str, Any] = {"enum": list(values)}
    if len(kinds) == 1 and None not in kinds:
        schema = {"type": kinds.pop(), **schema}
    return schema


def _optional(args: tuple[Any, ...], where: str) -> dict[str, Any]:
    """``T | None`` を ``null`` も許すスキーマにする (``None`` 以外の型は 1 つだけ)。"""
    rest = [a for a in args if a is not type(None)]
    if len(rest) != 1 or len(rest) == len(args):
        raise TypeError(f"{where}: only Optional[T] (T | None) unions are supported")
    inner = json_schema_for(rest[0], where)
    if isinstance(inner.get("type"), str):
        inner = {**inner, "type": [inner["type"], "null"]}
        if "enum" in inner:
            inner["enum"] = [*inner["enum"], None]
        return inner
    return {"anyOf": [inner, {"type": "null"}]}


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """docstring から (最初の段落, 引数名 -> 説明) を取り出す。"""
    # reST のリテラル記法 ``x`` はモデルに見せる説明では `x` で足りる
    text = inspect.cleandoc(doc or "").replace("``", "`")
    paragraphs = re.split(r"\n\s*\n", text, maxsplit=1)
    summary = " ".join(line.strip() for line in paragraphs[0].splitlines()).strip() if text else ""
    args: dict[str, str] = {}
    in_args, current, indent = False, None, 0
    for line in text.splitlines():
        heading = _SECTION.match(line.strip())
        if heading and len(line) - len(line.lstrip()) == 0:
            in_args, current = heading.group(1) in ("Args", "Arguments"), None
            continue
        if not in_args or not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(line.strip())
        if match and (current is None or depth <= indent):
            current, indent = match.group(1).lstrip("*"), depth
            args[current] = match.group(2).strip()
        elif current is not None:
            args[current] = f"{args[current]} {line.strip()}".strip()
    return summary, args


def schema_from_function(func: Callable[..., Any]) -> tuple[str, dict[str, Any], bool]:
    """関数から (説明, 引数の JSON Schema, ``cancel`` を受け取るか) を作る。

    Raises:
        TypeError: 型ヒントの無い引数、可変長引数、対応しない型。
    """
    name = getattr(func, "__name__", "tool")
    hints = typing.get_type_hints(func)
    summary, arg_docs = parse_docstring(func.__doc__)
    properties: dict[str, Any] = {}
    required: list[str] = []
    accepts_cancel = False
    for param in inspect.signature(func).parameters.values():
        if param.name == CANCEL_PARAMETER:
            accepts_cancel = True
            continue
        where = f"tool '{name}', argument '{param.name}'"
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{where}: *args / **kwargs cannot be described as a JSON Schema")
        if param.name not in hints:
            raise TypeError(f"{where}: a type hint is required")
        schema = json_schema_for(hints[param.name], where)
        if param.name in arg_docs:
            schema["description"] = arg_docs[param.name]
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        elif param.default is not None and _is_json(param.default):
            schema["default"] = param.default
        properties[param.name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        parameters["required"] = required
    return summary, parameters, accepts_cancel


def _is_json(value: Any) -> bool:
    """JSON にできる値か (既定値をスキーマに載せてよいか)。"""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
