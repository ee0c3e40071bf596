"""プロバイダごとのスキーマ変換器 (1 プロファイルに 1 クラス)。選ぶのは ``tool_schemas.PROFILES`` の表。

どの変換器も、落とした・書き換えたキーワードごとに警告を 1 つ出す (黙って落とすものは無い)。
引数の検証はいつも元のスキーマに対して行うので、ここで緩めた制約も実行前には守られる。
"""

from __future__ import annotations

import copy
from typing import Any

from llm_router.core.schema_walker import (
    SchemaTransformer,
    ToolDefinitionError,
    child_path,
    inline_refs,
    is_object_schema,
    show_path,
)


class PassThrough(SchemaTransformer):
    """そのまま通す (OpenAI 非 strict と Anthropic は JSON Schema をそのまま受け取る。プロバイダ名は作るときに渡す)。"""


# ---------------------------------------------------------------- OpenAI strict


class StrictImpossible(Exception):
    """strict モードに合わせられないスキーマ (strict を切って元のスキーマを送る)。"""


class OpenAIStrict(SchemaTransformer):
    """OpenAI の strict モード (Structured Outputs) 向け。

    https://platform.openai.com/docs/guides/structured-outputs の「Supported schemas」に従う:
    すべてのプロパティを ``required`` に入れ、元々任意だったものは ``null`` も許す型にし、
    どの object にも ``additionalProperties: false`` を付ける。文字列長などの未対応キーワードは
    落とす。自由な辞書 (``additionalProperties`` がスキーマ) や ``allOf`` / ``not`` は strict で
    表せないので :class:`StrictImpossible` を投げる。
    """

    provider = "openai"
    UNSUPPORTED = (
        "minLength",
        "maxLength",
        "patternProperties",
        "unevaluatedProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "unevaluatedItems",
        "contains",
        "minContains",
        "maxContains",
        "uniqueItems",
        "default",
    )
    IMPOSSIBLE = ("allOf", "not", "if", "then", "else", "dependentRequired", "dependentSchemas")
    # 同じ文書の「Supported properties」にある文字列の format (これ以外は説明文へ移す)
    STRING_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"})

    def transform(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        """1 ノードを strict 向けにする。"""
        for keyword in self.IMPOSSIBLE:
            if keyword in node:
                raise StrictImpossible(f"'{keyword}' at {show_path(path)}")
        for keyword in self.UNSUPPORTED:
            self.drop(node, keyword, path)
        one_of_to_any_of(self, node, path)
        move_format(self, node, path, self.STRING_FORMATS)
        if is_object_schema(node):
            self._close_object(node, path)
        return node

    def _close_object(self, node: dict[str, Any], path: str) -> None:
        """object を閉じ (追加プロパティ不可)、任意のプロパティを必須 + null 可にする。"""
        extra = node.get("additionalProperties", False)
        if extra is not False:
            raise StrictImpossible(f"free-form object ('additionalProperties') at {show_path(path)}")
        node["additionalProperties"] = False
        properties = node.setdefault("properties", {})
        required = list(node.get("required", []))
        for name, sub in properties.items():
            if name not in required:
                properties[name] = make_nullable(sub)
                required.append(name)
                self.warn("made optional property required and nullable:", name, child_path(path, "properties", name))
        node["required"] = required


def make_nullable(schema: Any) -> dict[str, Any]:
    """``schema`` に ``null`` も許す JSON Schema を返す (型のリストに ``null`` を足すか ``anyOf`` で包む)。"""
    if not isinstance(schema, dict):
        return {"anyOf": [schema, {"type": "null"}]}
    if allows_null(schema):
        return schema
    out = dict(schema)
    kind = out.get("type")
    if isinstance(kind, str) and "$ref" not in out and "anyOf" not in out:
        out["type"] = [kind, "null"] if kind != "null" else "null"
    elif isinstance(kind, list):
        out["type"] = kind if "null" in kind else [*kind, "null"]
    else:
        return {"anyOf": [schema, {"type": "null"}]}
    if isinstance(out.get("enum"), list) and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def allows_null(schema: dict[str, Any]) -> bool:
    """``schema`` 自身がすでに ``null`` を名指すか (型のリスト、``anyOf`` の null の枝)。検証の判定は :func:`accepts_null`。"""
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    variants = schema.get("anyOf")
    return isinstance(variants, list) and any(_is_null_schema(v) for v in variants)


def accepts_null(schema: dict[str, Any]) -> bool:
    """検証で ``null`` が通るか (型に null、``nullable``、enum に null、null を通す枝、制約なし)。

    :func:`allows_null` (スキーマ自身が型か ``anyOf`` で null を名指すか。変換で null を足すかの判定) より広い:
    こちらは「省略の代わりに来た ``null`` を捨ててよいか」(``drop_null_optionals``) の判定に使う。
    """
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind) or schema.get("nullable") is True:
        return True
    if isinstance(schema.get("enum"), list):
        return None in schema["enum"]
    variants = [*(schema.get("anyOf") or []), *(schema.get("oneOf") or [])]
    if variants:
        return any(isinstance(v, dict) and accepts_null(v) for v in variants)
    return kind is None and "const" not in schema and "$ref" not in schema


def one_of_to_any_of(transformer: SchemaTransformer, node: dict[str, Any], path: str) -> None:
    """``oneOf`` を ``anyOf`` に書き換える (警告つき。引数は元のスキーマで検証するので排他性は守られる)。"""
    if "oneOf" in node:
        node["anyOf"] = node.pop("oneOf") + node.pop("anyOf", [])
        transformer.warn("rewrote as 'anyOf':", "oneOf", path)


# ---------------------------------------------------------------- Gemini (parametersJsonSchema)


class GeminiJsonSchema(SchemaTransformer):
    """Gemini の ``parametersJsonSchema`` 向け (``docs/providers.md`` の Gemini の節にある数少ない手直し)。"""

    provider = "gemini"
    STRIPPED = ("$schema", "title", "examples", "discriminator", "exclusiveMinimum", "exclusiveMaximum")
    # Gemini の構造化出力の文書が挙げる文字列の format (これ以外は説明文へ移す)
    STRING_FORMATS = frozenset({"date-time", "date", "time"})

    def transform(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        """1 ノードを Gemini の JSON Schema 向けにする。"""
        for keyword in self.STRIPPED:
            self.drop(node, keyword, path)
        const_to_enum(self, node, path)
        move_format(self, node, path, self.STRING_FORMATS)
        return node


def move_format(transformer: SchemaTransformer, node: dict[str, Any], path: str, supported: frozenset[str]) -> None:
    """``supported`` に無い文字列の format を説明文へ移す (モデルにはヒントとして残る。警告つき)。"""
    fmt = node.get("format")
    if fmt is None or not _has_type(node, "string") or fmt in supported:
        return
    del node["format"]
    append_description(node, f"format: {fmt}")
    transformer.warn("moved into description:", "format", path, str(fmt))


def const_to_enum(transformer: SchemaTransformer, node: dict[str, Any], path: str) -> None:
    """``const`` を値 1 つの ``enum`` に書き換える (警告つき)。"""
    if "const" in node:
        node["enum"] = [node.pop("const")]
        transformer.warn("rewrote as one-value enum:", "const", path)


def append_description(node: dict[str, Any], note: str) -> None:
    """説明文の末尾に ``(note)`` を足す。"""
    text = node.get("description")
    node["description"] = f"{text} ({note})" if text else f"({note})"


def _has_type(node: dict[str, Any], kind: str) -> bool:
    """``type`` が ``kind`` か、``kind`` を含むリストか (大文字の Gemini 型名も同じとみなす)。"""
    value = node.get("type")
    if isinstance(value, list):
        return kind in [v.lower() for v in value if isinstance(v, str)]
    return isinstance(value, str) and value.lower() == kind


# ---------------------------------------------------------------- Gemini (OpenAPI parameters)


class GeminiOpenAPI(SchemaTransformer):
    """Gemini の旧来の ``parameters`` (OpenAPI 3.0 のサブセット) 向け。

    https://ai.google.dev/api/caching#Schema の Schema に無いものは落とす。先に ``$ref`` を
    展開し (再帰するものは拒否)、``["T", "null"]`` と ``anyOf [X, null]`` を ``X`` + ``nullable``、
    ``const`` を ``enum``、``oneOf`` を ``anyOf`` にする。型は Gemini の大文字の列挙名で送る。
    """

    provider = "gemini"
    ALLOWED = frozenset(
        {
            "type",
            "format",
            "description",
            "nullable",
            "enum",
            "items",
            "properties",
            "required",
            "minItems",
            "maxItems",
            "minimum",
            "maximum",
            "minLength",
            "maxLength",
            "pattern",
            "minProperties",
            "maxProperties",
            "anyOf",
            "propertyOrdering",
        }
    )
    STRING_FORMATS = frozenset({"enum", "date-time"})

    def run(self, schema: dict[str, Any]) -> dict[str, Any]:
        """``$ref`` を展開してから歩く。"""
        inlined = inline_refs(copy.deepcopy(schema), self)
        return self.walk(inlined, "")

    def transform(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        """1 ノードを OpenAPI サブセットにする。"""
        const_to_enum(self, node, path)
        one_of_to_any_of(self, node, path)
        node = self._fold_null_union(node, path)
        self._type_list(node, path)
        self._enum(node, path)
        move_format(self, node, path, self.STRING_FORMATS)
        for keyword in [k for k in node if k not in self.ALLOWED]:
            self.drop(node, keyword, path)
        if isinstance(node.get("type"), str):
            node["type"] = node["type"].upper()
        return node

    def _fold_null_union(self, node: dict[str, Any], path: str) -> dict[str, Any]:
        """``anyOf [X, {type: null}]`` を ``X`` + ``nullable: true`` にする。"""
        variants = node.get("anyOf")
        if not isinstance(variants, list):
            return node
        rest = [v for v in variants if not _is_null_schema(v)]
        if len(rest) == len(variants):
            return node
        self.warn("rewrote null variant as 'nullable':", "anyOf", path)
        outer = {k: v for k, v in node.items() if k != "anyOf"}
        if len(rest) == 1 and isinstance(rest[0], dict):
            merged = {**rest[0], **outer}
        else:
            merged = {**outer, "anyOf": rest}
        merged["nullable"] = True
        return merged

    def _type_list(self, node: dict[str, Any], path: str) -> None:
        """``type`` のリスト: ``null`` は ``nullable`` に、残りが複数なら ``anyOf`` に。"""
        kinds = node.get("type")
        if not isinstance(kinds, list):
            return
        if "null" in kinds:
            node["nullable"] = True
        rest = [k for k in kinds if k != "null"]
        if len(rest) == 1:
            node["type"] = rest[0]
            self.warn("rewrote type list as single type + 'nullable':", "type", path)
        else:
            del node["type"]
            node["anyOf"] = [{"type": k.upper()} for k in rest]
            self.warn("rewrote type list as 'anyOf':", "type", path)

    def _enum(self, node: dict[str, Any], path: str) -> None:
        """Gemini の enum は文字列だけ: それ以外の値の enum は落として説明文に残す。"""
        values = node.get("enum")
        if not isinstance(values, list):
            return
        strings = [v for v in values if isinstance(v, str)]
        if len(strings) == len(values):
            return
        if None in values and len(strings) == len(values) - 1:
            node["enum"] = strings
            node["nullable"] = True
            self.warn("moved null out of 'enum' into 'nullable':", "enum", path)
            return
        del node["enum"]
        append_description(node, "allowed values: " + ", ".join(_json_text(v) for v in values))
        self.warn("dropped", "enum", path, "non-string values; listed in description instead")


def _is_null_schema(schema: Any) -> bool:
    """``{"type": "null"}`` か。"""
    kind = schema.get("type") if isinstance(schema, dict) else None
    return isinstance(kind, str) and kind.lower() == "null" and len(schema) == 1


def _json_text(value: Any) -> str:
    """説明文に書く値の表記。"""
    import json

    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------- Ollama


class Ollama(SchemaTransformer):
    """Ollama 向け: サーバーが読むキーワードだけを残す (他は Ollama が黙って捨てるので、ここで警告して落とす)。

    Ollama の ``api/types.go`` の ``ToolFunctionParameters`` (ルート) と ``ToolProperty`` (各プロパティ)
    の形に従う。``items`` と ``$defs`` は Go 側で ``any`` なのでそのまま届く。
    """

    provider = "ollama"
    ROOT_KEYS = frozenset({"type", "$defs", "items", "required", "properties"})
    PROPERTY_KEYS = frozenset({"anyOf", "type", "items", "description", "enum", "properties", "required"})

    def run(self, schema: dict[str, Any]) -> dict[str, Any]:
        """プロパティは ``$ref`` を持てないので、再帰しない ``$ref`` は先に展開してから歩く。"""
        try:
            trial = SchemaTransformer(self.tool_name, self.provider)
            inlined = inline_refs(copy.deepcopy(schema), trial)
        except ToolDefinitionError:
            # 再帰する $ref は展開できない: $defs を残し、届かない $ref は警告して落とす
            return self.walk(copy.deepcopy(schema), "")
        self.warnings.extend(trial.warnings)
        return self.walk(inlined, "")

    def walk(self, node: Any, path: str) -> Any:
        """ルートだけを ``ROOT_KEYS`` に絞り、プロパティへ降りる。"""
        if not isinstance(node, dict):
            return node
        self._keep(node, self.ROOT_KEYS, path)
        self._walk_properties(node, path)
        return node

    def _property(self, node: Any, path: str) -> Any:
        """1 つのプロパティを ``PROPERTY_KEYS`` に絞り、入れ子の properties / anyOf へ降りる。"""
        if not isinstance(node, dict):
            return node
        const_to_enum(self, node, path)
        one_of_to_any_of(self, node, path)
        self._keep(node, self.PROPERTY_KEYS, path)
        self._walk_properties(node, path)
        if isinstance(node.get("anyOf"), list):
            node["anyOf"] = [
                self._property(v, child_path(path, "anyOf", f"[{i}]")) for i, v in enumerate(node["anyOf"])
            ]
        return node

    def _walk_properties(self, node: dict[str, Any], path: str) -> None:
        """``properties`` の各値を :meth:`_property` で変換する。"""
        properties = node.get("properties")
        if isinstance(properties, dict):
            node["properties"] = {
                name: self._property(sub, child_path(path, "properties", name)) for name, sub in properties.items()
            }

    def _keep(self, node: dict[str, Any], allowed: frozenset[str], path: str) -> None:
        """``allowed`` に無いキーワードを落とす (1 つにつき警告 1 つ)。"""
        for keyword in [k for k in node if k not in allowed]:
            self.drop(node, keyword, path)


__all__ = [
    "GeminiJsonSchema",
    "GeminiOpenAPI",
    "Ollama",
    "OpenAIStrict",
    "PassThrough",
    "StrictImpossible",
    "make_nullable",
]
