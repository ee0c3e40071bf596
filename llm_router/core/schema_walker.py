"""JSON Schema を歩くための土台: 部分スキーマの位置、パス表記、警告を集める変換器の基底。

pydantic-ai の ``_json_schema.py`` と同じく「歩く部分 (walker)」と「1 ノードを変える部分
(``transform``)」を分け、プロバイダごとの癖は ``transform`` の上書きだけに閉じ込める。
``properties`` の値のキーはプロパティ名であってキーワードではないので、名前が ``title`` の
プロパティが落とされることはない。``enum`` / ``const`` / ``default`` / ``examples`` の値は
データなので中へは入らない。
"""

from __future__ import annotations

import copy
from typing import Any

from llm_router.core.schemas.errors import ConfigurationError

# 値が「名前 -> 部分スキーマ」の辞書であるキーワード
SCHEMA_MAP_KEYS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
# 値が部分スキーマ 1 つであるキーワード (items は古い草案ではリストもありうる)
SCHEMA_KEYS = (
    "items",
    "additionalProperties",
    "not",
    "contains",
    "if",
    "then",
    "else",
    "propertyNames",
    "additionalItems",
    "unevaluatedProperties",
    "unevaluatedItems",
)
# 値が部分スキーマのリストであるキーワード
SCHEMA_LIST_KEYS = ("anyOf", "oneOf", "allOf", "prefixItems")


class ToolDefinitionError(ConfigurationError):
    """ツール定義の誤り。メッセージはツール名 (無ければ番号) と問題を含む。"""


def child_path(path: str, *parts: str) -> str:
    """``path`` の下の部分スキーマのパス (``properties.passenger.items`` の形)。"""
    out = path
    for part in parts:
        if part.startswith("["):
            out = f"{out}{part}"
        else:
            out = f"{out}.{part}" if out else part
    return out


def show_path(path: str) -> str:
    """警告に出すパス表記 (ルートは ``root``)。"""
    return path or "root"


def is_object_schema(node: dict[str, Any]) -> bool:
    """``node`` が object 型のスキーマか (``type`` が object、または ``properties`` を持つ)。"""
    kind = node.get("type")
    if isinstance(kind, list):
        return "object" in kind
    return kind == "object" or (kind is None and isinstance(node.get("properties"), dict))


class SchemaTransformer:
    """部分スキーマを下から順に ``transform`` へ渡す変換器の基底 (既定は何も変えない)。

    Attributes:
        provider: 警告に出すプロバイダ名。
        tool_name: 警告に出すツール名。
        warnings: 落とした・書き換えたキーワードごとの警告文。
    """

    provider = ""

    def __init__(self, tool_name: str, provider: str = "") -> None:
        """警告に使うツール名と、クラスの名乗りと違うときのプロバイダ名を受け取る。"""
        self.tool_name = tool_name
        if provider:
            self.provider = provider
        self.warnings: list[str] = []

    def run(self, schema: dict[str, Any]) -> dict[str, Any]:
        """元のスキーマを変えずに、変換したコピーを返す。"""
        return self.walk(copy.deepcopy(schema), "")

    def warn(self, action: str, keyword: str, path: str, detail: str = "") -> None:
        """1 つのキーワードについての警告を足す (ツール名、プロバイダ、JSON パスつき)。"""
        suffix = f" ({detail})" if detail else ""
        self.warnings.append(
            f"tool '{self.tool_name}' ({self.provider}): {action} '{keyword}' at {show_path(path)}{suffix}"
        )

    def drop(self, node: dict[str, Any], keyword: str, path: str, detail: str = "") -> None:
        """``node`` から ``keyword`` を落とし、警告を足す。"""
        if keyword in node:
            del node[keyword]
            self.warn("dropped", keyword, path, detail)

    def walk(self, node: Any, path: str) -> Any:
        """子の部分スキーマを先に変換し、最後に ``node`` 自身を ``transform`` する。"""
        if not isinstance(node, dict):
            return node
        for key in SCHEMA_MAP_KEYS:
            value = node.get(key)
            if isinstance(value, dict):
                node[key] = {name: self.walk(sub, child_path(path, key, name)) for name, sub in value.items()}
        for key in SCHEMA_KEYS:
            value = node.get(key)
            if isinstance(value, dict):
                node[key] = self.walk(value, child_path(path, key))
            elif isinstance(value, list) and key == "items":
                node[key] = [self.walk(sub, child_path(path, key, f"[{i}]")) for i, sub in enumerate(value)]
        for key in SCHEMA_LIST_KEYS:
            value = node.get(key)
            if isinstance(value, list):
                node[key] = [self.walk(sub, child_path(path, key, f"[{i}]")) for i, sub in enumerate(value)]
        return self.transform(node, path)

    def transform(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        """1 つのノードを変える (子はもう変換済み)。既定はそのまま返す。"""
        return node


def inline_refs(schema: dict[str, Any], transformer: SchemaTransformer) -> dict[str, Any]:
    """``#/...`` への ``$ref`` をすべて展開し、``$defs`` / ``definitions`` を消す。

    Raises:
        ToolDefinitionError: 再帰する ``$ref``、または解決できない ``$ref`` があるとき。
    """

    def resolve(pointer: str) -> Any:
        """JSON ポインタ ``#/a/b`` の指す値。"""
        if not pointer.startswith("#"):
            raise ToolDefinitionError(f"tool '{transformer.tool_name}': external $ref '{pointer}' is not supported")
        target: Any = schema
        for raw in [p for p in pointer[1:].split("/") if p]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ToolDefinitionError(f"tool '{transformer.tool_name}': $ref '{pointer}' does not resolve")
            target = target[part]
        return target

    def expand(node: Any, stack: tuple[str, ...]) -> Any:
        """``node`` の中の ``$ref`` を再帰的に置き換える。"""
        if isinstance(node, list):
            return [expand(v, stack) for v in node]
        if not isinstance(node, dict):
            return node
        ref = node.get("$ref")
        if isinstance(ref, str):
            if ref in stack:
                raise ToolDefinitionError(
                    f"tool '{transformer.tool_name}' ({transformer.provider}): recursive $ref '{ref}' cannot be "
                    "inlined for the OpenAPI 'parameters' form; use providers.gemini.schema_mode=json_schema"
                )
            target = expand(copy.deepcopy(resolve(ref)), (*stack, ref))
            siblings = {k: expand(v, stack) for k, v in node.items() if k != "$ref"}
            return {**target, **siblings} if isinstance(target, dict) else target
        return {k: (v if k in ("enum", "const", "default", "examples") else expand(v, stack)) for k, v in node.items()}

    out = expand({k: v for k, v in schema.items() if k not in ("$defs", "definitions")}, ())
    for key in ("$defs", "definitions"):
        if key in schema:
            transformer.warn("inlined every $ref and dropped", key, "")
    return out
