"""ツール定義の正規化と、プロバイダごとのスキーマ変換の入口。

- :func:`normalize_tools`: ``docs/protocol.md`` の 3.1 節にある全形式 (OpenAI Chat の入れ子、OpenAI のフラット
  (Responses)、Anthropic、Gemini (大文字の OpenAPI 型を含む)、正規形) を正規形
  ``{"name", "description", "parameters"}`` にそろえ、名前とスキーマを検査する。
- :func:`schema_for_provider`: 正規形のスキーマをプロファイル (``PROFILES`` の表) の変換器に通し、
  ``(スキーマ, 警告)`` を返す。元のスキーマは決して変えない。
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from llm_router.core.json_schema_validation import pattern_problem
from llm_router.core.schema_transforms import (
    GeminiJsonSchema,
    GeminiOpenAPI,
    Ollama,
    OpenAIStrict,
    PassThrough,
    StrictImpossible,
    accepts_null,
)
from llm_router.core.schema_walker import SchemaTransformer, ToolDefinitionError
from llm_router.core.schemas.common import ToolDefinition
from llm_router.core.schemas.errors import ConfigurationError

# Anthropic と OpenAI の文書が挙げるツール名の規則 (``docs/protocol.md`` の 3.1 節も同じ)
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# ツール定義の入れ子の上限。変換器と検証器は再帰で歩くので、極端に深い定義は最初に断る
MAX_DEFINITION_DEPTH = 64
JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")


@dataclass
class ToolSpec(ToolDefinition):
    """正規化したツール定義。入力の形式を覚えておく (``strict`` の指定は :class:`ToolDefinition` が持つ)。"""

    source_format: str = "canonical"


@dataclass
class ConvertedSchema:
    """プロファイル向けに変換したスキーマ。``strict`` は OpenAI の strict を付けてよいか。"""

    schema: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    strict: bool = False


# ---------------------------------------------------------------- 正規化


def normalize_tools(raw: list, reserved_names: Iterable[str] = ()) -> list[ToolDefinition]:
    """どの形式のツール定義のリストも正規形にそろえる。

    Args:
        raw: クライアントが送ったツール定義のリスト。
        reserved_names: 使えない名前 (サーバーツールの名前など)。

    Returns:
        :class:`ToolSpec` (``ToolDefinition`` の派生) のリスト。入力の順序を保つ。

    Raises:
        ToolDefinitionError: 形式不明、名前が無い・不正・重複、スキーマが object でないなど。
            メッセージはツール名 (無ければ ``tools[i]``) と問題を示す。
    """
    if not isinstance(raw, list):
        raise ToolDefinitionError("tools: must be a list of tool definitions")
    reserved = set(reserved_names)
    out: list[ToolDefinition] = []
    seen: dict[str, str] = {}
    for index, entry in enumerate(raw):
        for where, tool in _parse_entry(entry, f"tools[{index}]"):
            if tool.name in reserved:
                raise ToolDefinitionError(f"tool '{tool.name}' ({where}): name clashes with a server tool")
            if tool.name in seen:
                raise ToolDefinitionError(f"tool '{tool.name}' ({where}): duplicate name (also {seen[tool.name]})")
            seen[tool.name] = where
            out.append(tool)
    return out


def _parse_entry(entry: Any, where: str) -> list[tuple[str, ToolSpec]]:
    """1 つのエントリを形式で見分けて正規形にする (Gemini の 1 エントリは複数の宣言を持ちうる)。"""
    if isinstance(entry, ToolDefinition):
        entry = entry.to_dict()  # 正規化済みのものをもう一度通しても同じ検査を受ける
    if not isinstance(entry, dict):
        raise ToolDefinitionError(f"{where}: a tool definition must be an object")
    if _nesting_depth(entry) > MAX_DEFINITION_DEPTH:
        raise ToolDefinitionError(f"{where}: the definition is nested deeper than {MAX_DEFINITION_DEPTH} levels")
    for matches, parse in _FORMATS:
        if matches(entry):
            return parse(entry, where)
    raise ToolDefinitionError(
        f"{where}: unknown tool definition format (expected OpenAI, Anthropic, Gemini or "
        "{'name', 'description', 'parameters'})"
    )


def _openai_chat(entry: dict[str, Any], where: str) -> list[tuple[str, ToolSpec]]:
    """OpenAI Chat の入れ子形式: ``{"type": "function", "function": {...}}``。"""
    fn = entry["function"]
    if not isinstance(fn, dict):
        raise ToolDefinitionError(f"{where}: 'function' must be an object")
    _refuse_unknown(fn, _OPENAI_FUNCTION_KEYS, where)
    return [(where, _make(fn, fn.get("parameters"), where, "openai", fn.get("strict", entry.get("strict"))))]


def _openai_flat(entry: dict[str, Any], where: str) -> list[tuple[str, ToolSpec]]:
    """OpenAI のフラット形式 (Responses API): ``{"type": "function", "name", ...}``。"""
    _refuse_unknown(entry, _OPENAI_FUNCTION_KEYS | {"type"}, where)
    return [(where, _make(entry, entry.get("parameters"), where, "openai_flat", entry.get("strict")))]


def _anthropic(entry: dict[str, Any], where: str) -> list[tuple[str, ToolSpec]]:
    """Anthropic の形式: ``{"name", "description", "input_schema"}``。"""
    return [(where, _make(entry, entry.get("input_schema"), where, "anthropic"))]


def _gemini(entry: dict[str, Any], where: str) -> list[tuple[str, ToolSpec]]:
    """Gemini: ``{"functionDeclarations": [...]}`` (snake_case も受ける)。"""
    decls = entry.get("functionDeclarations", entry.get("function_declarations"))
    if not isinstance(decls, list) or not decls:
        raise ToolDefinitionError(f"{where}: 'functionDeclarations' must be a non-empty list")
    out = []
    for i, decl in enumerate(decls):
        sub = f"{where}.functionDeclarations[{i}]"
        if not isinstance(decl, dict):
            raise ToolDefinitionError(f"{sub}: a function declaration must be an object")
        json_schema = decl.get("parametersJsonSchema", decl.get("parameters_json_schema"))
        if json_schema is not None:
            out.append((sub, _make(decl, json_schema, sub, "gemini")))
        else:
            out.append((sub, _make(decl, from_openapi(decl.get("parameters")), sub, "gemini")))
    return out


# 正規形と OpenAI の function で知っているキー。ほかのキーは打ち間違い (``parameter``、``input_shema``) か
# 未対応の形式 (MCP の ``inputSchema`` など) なので断る。黙って無視すると引数なしのツールになってしまう
_CANONICAL_KEYS = frozenset({"name", "description", "parameters", "type"})
_OPENAI_FUNCTION_KEYS = frozenset({"name", "description", "parameters", "strict"})


def _refuse_unknown(body: dict[str, Any], known: frozenset[str], where: str) -> None:
    """知らないキーがあれば、ツール名とキーを挙げて :class:`ToolDefinitionError` にする。"""
    unknown = sorted(str(key) for key in body if key not in known)
    if unknown:
        raise ToolDefinitionError(
            f"tool {body.get('name')!r} ({where}): unknown field(s) {', '.join(repr(k) for k in unknown)} "
            f"(expected {', '.join(repr(k) for k in sorted(known))}; Anthropic's schema is 'input_schema')"
        )


def _canonical(entry: dict[str, Any], where: str) -> list[tuple[str, ToolSpec]]:
    """正規形: ``{"name", "description", "parameters"}``。知らないキーは名前を挙げて断る。"""
    _refuse_unknown(entry, _CANONICAL_KEYS, where)
    return [(where, _make(entry, entry.get("parameters"), where, "canonical"))]


# 形式の見分け方の表 (上から順に試す)
_FORMATS: list[tuple[Callable[[dict[str, Any]], bool], Callable[[dict[str, Any], str], list]]] = [
    (lambda e: "functionDeclarations" in e or "function_declarations" in e, _gemini),
    (lambda e: e.get("type") == "function" and "function" in e, _openai_chat),
    (lambda e: e.get("type") == "function", _openai_flat),
    (lambda e: "input_schema" in e, _anthropic),
    (lambda e: "name" in e and e.get("type") in (None, "custom"), _canonical),
]


def _make(body: dict[str, Any], schema: Any, where: str, source: str, strict: Any = None) -> ToolSpec:
    """名前・説明・スキーマを検査して :class:`ToolSpec` を作る。"""
    name = body.get("name")
    if name is None or name == "":
        raise ToolDefinitionError(f"{where}: missing 'name'")
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise ToolDefinitionError(f"tool {name!r} ({where}): name must match ^[a-zA-Z0-9_-]{{1,64}}$")
    description = body.get("description") or ""
    if not isinstance(description, str):
        raise ToolDefinitionError(f"tool '{name}': 'description' must be a string")
    if strict is not None and not isinstance(strict, bool):
        raise ToolDefinitionError(f"tool '{name}': 'strict' must be a boolean")
    return ToolSpec(name, description, _object_schema(schema, name), strict=strict, source_format=source)


def _object_schema(schema: Any, name: str) -> dict[str, Any]:
    """引数のスキーマが object のスキーマであることを確かめる (無ければ空の object)。"""
    if schema is None:
        return {"type": "object", "properties": {}}
    if not isinstance(schema, dict):
        raise ToolDefinitionError(
            f"tool '{name}': parameters must be a JSON Schema object, got {type(schema).__name__}"
        )
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str) and kind.lower() in JSON_TYPES:
        kind = out["type"] = kind.lower()
    if kind is None:
        out["type"] = "object"
    elif kind != "object":
        raise ToolDefinitionError(f"tool '{name}': parameters must be an object schema (type 'object'), got {kind!r}")
    properties = out.setdefault("properties", {})
    if not isinstance(properties, dict) or not all(isinstance(v, dict | bool) for v in properties.values()):
        raise ToolDefinitionError(f"tool '{name}': 'properties' must map names to schemas")
    required = out.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise ToolDefinitionError(f"tool '{name}': 'required' must be a list of property names")
    _check_patterns(out, name)
    return out


# スキーマではなくデータを持つキーワード (中の "pattern" はただの値なので調べない)
_DATA_KEYWORDS = frozenset({"enum", "const", "default", "examples", "example"})


def _check_patterns(schema: dict[str, Any], name: str) -> None:
    """スキーマ中のすべての ``pattern`` と ``patternProperties`` のキーを RE2 でコンパイルできるか確かめる。

    照合は RE2 (線形時間) で行うので、RE2 が受け付けない構文 (後方参照、先読み) は実行時に確かめようがない。
    ``start`` の時点で、ツール名・キーワード・場所を挙げて断る (再帰を使わずに歩く)。
    """
    stack: list[tuple[Any, str]] = [(schema, "parameters")]
    while stack:
        node, path = stack.pop()
        if isinstance(node, list):
            stack.extend((item, f"{path}[{i}]") for i, item in enumerate(node))
            continue
        if not isinstance(node, dict):
            continue
        if isinstance(node.get("pattern"), str):
            problem = pattern_problem(node["pattern"])
            if problem is not None:
                raise ToolDefinitionError(f"tool '{name}': 'pattern' at {path}.pattern {problem}")
        patterns = node.get("patternProperties")
        if isinstance(patterns, dict):
            for key in patterns:
                problem = pattern_problem(key)
                if problem is not None:
                    raise ToolDefinitionError(
                        f"tool '{name}': 'patternProperties' key {key!r} at {path}.patternProperties {problem}"
                    )
        for key, child in node.items():
            if key not in _DATA_KEYWORDS and isinstance(child, dict | list):
                stack.append((child, f"{path}.{key}"))


def _nesting_depth(value: Any) -> int:
    """JSON の値の入れ子の深さ (再帰を使わずに数える: 深すぎる入力でもスタックを溢れさせない)。"""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEFINITION_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


class _FromOpenAPI(SchemaTransformer):
    """Gemini の OpenAPI 形 (大文字の型、``nullable``) を JSON Schema に直す。"""

    provider = "gemini"

    def transform(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        """型を小文字に、``nullable: true`` を ``["T", "null"]`` にする。"""
        kind = node.get("type")
        if isinstance(kind, str) and kind.lower() in JSON_TYPES:
            node["type"] = kind.lower()
        if node.get("format") == "enum":
            del node["format"]  # OpenAPI で「文字列の列挙」を示すだけの印
        if node.pop("nullable", False) is True:
            if isinstance(node.get("type"), str):
                node["type"] = [node["type"], "null"]
            if isinstance(node.get("enum"), list) and None not in node["enum"]:
                node["enum"] = [*node["enum"], None]
        return node


def from_openapi(schema: Any) -> Any:
    """Gemini の ``parameters`` (OpenAPI 3.0 のサブセット) を JSON Schema にする (元は変えない)。"""
    if not isinstance(schema, dict):
        return schema
    return _FromOpenAPI("").run(schema)


# ---------------------------------------------------------------- プロバイダ向けの変換

# プロファイル名 -> 変換器の作り方。プロバイダの分岐はこの表だけで決まる (if provider == は書かない)
PROFILES: dict[str, Callable[[str], SchemaTransformer]] = {
    "openai": lambda name: PassThrough(name, "openai"),
    "openai_strict": OpenAIStrict,
    "anthropic": lambda name: PassThrough(name, "anthropic"),
    "gemini_json_schema": GeminiJsonSchema,
    "gemini_openapi": GeminiOpenAPI,
    "ollama": Ollama,
}


def convert_schema(profile: str, tool: ToolDefinition) -> ConvertedSchema:
    """``tool.parameters`` を ``profile`` 向けに変換する (元のスキーマは変えない)。

    ``openai_strict`` で strict に合わせられないときは、元のスキーマと「strict を切った」警告を返し、
    ``strict`` を偽にする。

    Raises:
        ConfigurationError: 未知のプロファイル。
        ToolDefinitionError: 変換できないスキーマ (OpenAPI 形での再帰する ``$ref`` など)。
    """
    factory = PROFILES.get(profile)
    if factory is None:
        raise ConfigurationError(f"unknown tool schema profile '{profile}' (known: {', '.join(PROFILES)})")
    transformer = factory(tool.name)
    try:
        schema = transformer.run(tool.parameters)
    except StrictImpossible as exc:
        fallback = PassThrough(tool.name, transformer.provider).run(tool.parameters)
        return ConvertedSchema(fallback, [f"tool '{tool.name}' (openai): strict mode disabled: {exc}"], strict=False)
    return ConvertedSchema(schema, transformer.warnings, strict=isinstance(transformer, OpenAIStrict))


def schema_for_provider(profile: str, tool: ToolDefinition) -> tuple[dict[str, Any], list[str]]:
    """``profile`` 向けに ``tool.parameters`` を変換し、(スキーマ, 警告) を返す。

    profile: ``openai`` / ``openai_strict`` / ``anthropic`` / ``gemini_json_schema`` / ``gemini_openapi`` / ``ollama``。
    警告は落とした・書き換えたキーワードごとに 1 つ、ツール名・プロバイダ・JSON パスを含む。
    """
    converted = convert_schema(profile, tool)
    return converted.schema, converted.warnings


def drop_null_optionals(schema: dict[str, Any], arguments: Any) -> Any:
    """任意のプロパティに来た ``null`` を取り除いた引数のコピーを返す (元の引数は変えない)。

    OpenAI の strict モードでは任意のプロパティも必須 + null 可にして送るので、モデルは省略の代わりに
    ``null`` を返す。元のスキーマが ``null`` を許さない任意のプロパティなら「省略」と同じ意味なので、
    検証の前にこれで戻す。入れ子の object、配列の要素、ローカルの ``$ref`` の先にも降りる。
    """
    return _NullDropper(schema).run(schema, arguments, 0)


class _NullDropper:
    """:func:`drop_null_optionals` の本体 (``$ref`` の解決のためにルートを持つ)。"""

    def __init__(self, root: dict[str, Any]) -> None:
        """ルートのスキーマを受け取る。"""
        self.root = root

    def run(self, schema: Any, value: Any, depth: int) -> Any:
        """``value`` から、``schema`` で任意かつ null 不可のプロパティの ``null`` を取り除く。"""
        if not isinstance(schema, dict) or depth > 32:
            return value
        schema = self._deref(schema)
        if isinstance(value, list) and isinstance(schema.get("items"), dict):
            return [self.run(schema["items"], item, depth + 1) for item in value]
        properties = schema.get("properties")
        if not isinstance(value, dict) or not isinstance(properties, dict):
            return value
        required = set(schema.get("required") or [])
        out = {}
        for key, item in value.items():
            sub = properties.get(key)
            if item is None and key not in required and isinstance(sub, dict) and not accepts_null(self._deref(sub)):
                continue
            out[key] = self.run(sub, item, depth + 1) if sub is not None else item
        return out

    def _deref(self, schema: dict[str, Any]) -> dict[str, Any]:
        """ローカルの ``$ref`` (``#/$defs/X`` など) を 1 段たどる (解決できなければそのまま)。"""
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/"):
            return schema
        target: Any = self.root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, dict) else None
        return target if isinstance(target, dict) else schema


__all__ = [
    "PROFILES",
    "ConvertedSchema",
    "ToolDefinitionError",
    "ToolSpec",
    "convert_schema",
    "drop_null_optionals",
    "from_openapi",
    "normalize_tools",
    "schema_for_provider",
]
