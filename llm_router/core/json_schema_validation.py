"""ツール引数を JSON Schema で検証する小さな検証器 (新しい依存を足さないための手書き)。

プロバイダに送ったスキーマは緩められていることがある (Ollama はほとんどのキーワードを捨てる、
Gemini の OpenAPI 形は制約を落とす) ので、実行前の検証はいつも元のスキーマに対して行う。

対応するキーワード (JSON Schema 2020-12 の検証語彙の実用的な部分集合):
``type`` (型のリスト、integer と number の区別、真偽値は数ではない)、``enum``、``const``、
``minimum`` / ``maximum`` / ``exclusiveMinimum`` / ``exclusiveMaximum`` (draft 4 の真偽値形も)、
``multipleOf``、``minLength`` / ``maxLength``、``pattern``、``properties``、``required``、
``additionalProperties`` (真偽値かスキーマ)、``patternProperties``、``minProperties`` /
``maxProperties``、``items`` / ``prefixItems`` (draft 4 のリスト形の ``items`` と ``additionalItems`` も)、
``minItems`` / ``maxItems`` / ``uniqueItems``、``anyOf`` / ``oneOf`` / ``allOf`` / ``not``、
``if`` / ``then`` / ``else``、``#/$defs/...`` と ``#/definitions/...`` への ``$ref``、OpenAPI の ``nullable``。
``format`` は (JSON Schema の既定どおり) 注釈として扱い、検証しない。

``pattern`` と ``patternProperties`` は RE2 (``google-re2``、線形時間で照合する) で照合する。スキーマは
クライアントが書けるので、Python の ``re`` のようなバックトラックする照合器では ``^(a|a)*$`` のような
pattern ひとつで eventlet のハブ (サーバー全体) が止まる。RE2 が受け付けない構文 (後方参照、先読み・
後読み) の pattern は :func:`pattern_problem` が理由を返し、ツール定義の正規化 (``start``) で断る。
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any

import re2

from llm_router.core.schemas.errors import RequestCancelled

if TYPE_CHECKING:
    from llm_router.core.cancel import CancelToken

# 再帰する $ref がデータを消費せずに回り続けるのを止める深さ
MAX_DEPTH = 64
# pattern の長さの上限 (RE2 の照合は線形時間だが、コンパイルの記憶量は pattern の大きさに比例する)
MAX_PATTERN_LENGTH = 1000


def validate_arguments(schema: dict[str, Any] | bool, arguments: Any) -> list[str]:
    """``arguments`` を ``schema`` で検証し、違反の説明のリストを返す (空なら妥当)。

    各説明は JSON パスで始まる (例 ``arguments.passengers[0].name: expected string, got integer``)。
    """
    validator = _Validator(schema)
    validator.check(schema, arguments, "arguments", 0)
    return validator.errors


def check_tool_call(
    name: str,
    schema: dict[str, Any],
    arguments: Any,
    cancel: CancelToken | None,
    validated: bool,
    error: type[Exception],
) -> None:
    """ツールを呼ぶ直前の確かめ: 引数を元のスキーマで検証し、取り消されていれば断る。

    組み込みの登録簿 (``tools/registry.py``) と MCP のツール (``llm_router/mcp/tools.py``) が同じ規則で使う。
    ``validated=True`` は呼び出し側 (エージェントの ``Toolbox``) が同じスキーマで検証済みという印で、
    検証をもう一度はしない。

    Raises:
        error: 引数がスキーマに合わないとき (``error`` は呼ぶ側の失敗の型)。
        RequestCancelled: 呼ぶ前に取り消されていたとき。
    """
    problems = [] if validated else validate_arguments(schema, arguments)
    if problems:
        raise error(f"invalid arguments for tool '{name}': {'; '.join(problems)}")
    if cancel is not None and cancel.cancelled:
        raise RequestCancelled(f"tool '{name}' was cancelled before it started")


def json_type(value: Any, *, integers: bool = True) -> str:
    """値の JSON の型名 (``bool`` は ``boolean``、整数値の float は ``number``、``bytes`` は ``binary``)。

    ``integers=True`` (既定) は JSON Schema の呼び方で、``int`` を ``integer`` と呼ぶ (引数の検証のメッセージ)。
    ``integers=False`` は JSON そのものの呼び方で、整数も ``number`` と呼ぶ (プロトコルのペイロードの誤りのメッセージ)。
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if integers else "number"
    if isinstance(value, float):
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


def is_type(value: Any, kind: str) -> bool:
    """``value`` が JSON Schema の型 ``kind`` に当てはまるか (1.0 は integer でもある。Gemini の大文字の型名も可)。"""
    kind = kind.lower()
    actual = json_type(value)
    if kind == "number":
        return actual in ("integer", "number")
    if kind == "integer":
        return actual == "integer" or (actual == "number" and math.isfinite(value) and float(value).is_integer())
    return actual == kind


def json_equal(a: Any, b: Any) -> bool:
    """JSON としての等しさ (``True`` と ``1`` は違う、``1`` と ``1.0`` は同じ)。"""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if is_type(a, "number") and is_type(b, "number"):
        return a == b
    return type(a) is type(b) and a == b


def _show(value: Any) -> str:
    """メッセージに出す値の短い表記。"""
    text = repr(value) if not isinstance(value, str) else f"'{value}'"
    return text if len(text) <= 60 else text[:57] + "..."


class _Validator:
    """1 回の検証の状態 (ルートのスキーマと、見つけた違反)。"""

    def __init__(self, root: Any) -> None:
        """``$ref`` の解決に使うルートのスキーマを受け取る。"""
        self.root = root
        self.errors: list[str] = []

    def check(self, schema: Any, value: Any, path: str, depth: int) -> None:
        """``value`` を ``schema`` で検証し、違反を ``errors`` に足す。"""
        if schema is True or schema is None:
            return
        if schema is False:
            self.errors.append(f"{path}: no value is allowed here")
            return
        if not isinstance(schema, dict):
            return
        if depth > MAX_DEPTH:
            self.errors.append(f"{path}: schema nesting too deep (recursive $ref?)")
            return
        if value is None and schema.get("nullable") is True:
            return
        if "$ref" in schema:
            self._ref(schema["$ref"], value, path, depth)
        if not self._type(schema, value, path):
            return  # 型が違えば、型ごとの制約の違反は重ねて出さない
        self._values(schema, value, path)
        self._combinators(schema, value, path, depth)
        if isinstance(value, int | float) and not isinstance(value, bool):
            self._number(schema, value, path)
        elif isinstance(value, str):
            self._string(schema, value, path)
        elif isinstance(value, list):
            self._array(schema, value, path, depth)
        elif isinstance(value, dict):
            self._object(schema, value, path, depth)

    def errors_for(self, schema: Any, value: Any, path: str, depth: int) -> list[str]:
        """``value`` を ``schema`` で検証した違反 (自分の ``errors`` には足さない)。"""
        sub = _Validator(self.root)
        sub.check(schema, value, path, depth)
        return sub.errors

    def is_valid(self, schema: Any, value: Any, path: str, depth: int) -> bool:
        """``value`` が ``schema`` に当てはまるか (違反は記録しない)。"""
        return not self.errors_for(schema, value, path, depth)

    def _ref(self, ref: Any, value: Any, path: str, depth: int) -> None:
        """``#/$defs/...`` などのローカルな ``$ref`` を解決して検証する。"""
        target: Any = self.root
        if not isinstance(ref, str) or not ref.startswith("#"):
            self.errors.append(f"{path}: unsupported $ref {_show(ref)}")
            return
        for raw in [p for p in ref[1:].split("/") if p]:
            part = raw.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                self.errors.append(f"{path}: $ref {_show(ref)} does not resolve")
                return
            target = target[part]
        self.check(target, value, path, depth + 1)

    def _type(self, schema: dict[str, Any], value: Any, path: str) -> bool:
        """``type`` (文字列か、型のリスト)。``nullable`` なら null も許す。"""
        kind = schema.get("type")
        if kind is None:
            return True
        kinds = kind if isinstance(kind, list) else [kind]
        if any(isinstance(k, str) and is_type(value, k) for k in kinds):
            return True
        expected = " or ".join(str(k) for k in kinds)
        self.errors.append(f"{path}: expected {expected}, got {json_type(value)}")
        return False

    def _values(self, schema: dict[str, Any], value: Any, path: str) -> None:
        """``enum`` と ``const``。"""
        if isinstance(schema.get("enum"), list) and not any(json_equal(value, v) for v in schema["enum"]):
            allowed = ", ".join(_show(v) for v in schema["enum"])
            self.errors.append(f"{path}: {_show(value)} is not one of [{allowed}]")
        if "const" in schema and not json_equal(value, schema["const"]):
            self.errors.append(f"{path}: must be {_show(schema['const'])}")

    def _combinators(self, schema: dict[str, Any], value: Any, path: str, depth: int) -> None:
        """組み合わせのキーワード: ``anyOf`` / ``oneOf`` / ``allOf`` / ``not`` / ``if``-``then``-``else``。"""
        for sub in schema.get("allOf") or []:
            self.check(sub, value, path, depth + 1)
        if isinstance(schema.get("anyOf"), list):
            reasons = []
            for sub in schema["anyOf"]:
                found = self.errors_for(sub, value, path, depth + 1)
                if not found:
                    break
                reasons.append(found[0])
            else:
                self.errors.append(f"{path}: does not match any of the allowed schemas (anyOf: {'; '.join(reasons)})")
        if isinstance(schema.get("oneOf"), list):
            matches = sum(self.is_valid(s, value, path, depth + 1) for s in schema["oneOf"])
            if matches != 1:
                self.errors.append(f"{path}: must match exactly one schema (oneOf), matched {matches}")
        if "not" in schema and self.is_valid(schema["not"], value, path, depth + 1):
            self.errors.append(f"{path}: must not match the schema under 'not'")
        if "if" in schema:
            branch = "then" if self.is_valid(schema["if"], value, path, depth + 1) else "else"
            if branch in schema:
                self.check(schema[branch], value, path, depth + 1)

    def _number(self, schema: dict[str, Any], value: float, path: str) -> None:
        """数の範囲と ``multipleOf``。"""
        low, high = schema.get("minimum"), schema.get("maximum")
        ex_low, ex_high = schema.get("exclusiveMinimum"), schema.get("exclusiveMaximum")
        if ex_low is True:  # draft 4: exclusiveMinimum は minimum を排他的にする真偽値
            low, ex_low = None, low
        if ex_high is True:
            high, ex_high = None, high
        if _is_number(low) and value < low:
            self.errors.append(f"{path}: {_show(value)} is less than the minimum {low}")
        if _is_number(high) and value > high:
            self.errors.append(f"{path}: {_show(value)} is greater than the maximum {high}")
        if _is_number(ex_low) and value <= ex_low:
            self.errors.append(f"{path}: {_show(value)} must be greater than {ex_low}")
        if _is_number(ex_high) and value >= ex_high:
            self.errors.append(f"{path}: {_show(value)} must be less than {ex_high}")
        step = schema.get("multipleOf")
        if _is_number(step) and step > 0 and not _is_multiple(value, step):
            self.errors.append(f"{path}: {_show(value)} is not a multiple of {step}")

    def _string(self, schema: dict[str, Any], value: str, path: str) -> None:
        """文字列の長さ (コードポイント数) と ``pattern`` (部分一致、JSON Schema どおり)。"""
        if isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
            self.errors.append(f"{path}: shorter than {schema['minLength']} characters")
        if isinstance(schema.get("maxLength"), int) and len(value) > schema["maxLength"]:
            self.errors.append(f"{path}: longer than {schema['maxLength']} characters")
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            compiled = compile_pattern(pattern)
            if isinstance(compiled, str):
                self.errors.append(f"{path}: the schema's pattern {_show(pattern)} {compiled}")
            elif compiled.search(value) is None:
                self.errors.append(f"{path}: does not match the pattern {_show(pattern)}")

    def _array(self, schema: dict[str, Any], value: list[Any], path: str, depth: int) -> None:
        """``prefixItems`` / ``items`` / 長さ / ``uniqueItems``。"""
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        rest_schema = items
        if isinstance(items, list):  # draft 4 のタプル形
            prefix, rest_schema = items, schema.get("additionalItems", True)
        prefix = prefix if isinstance(prefix, list) else []
        for i, item in enumerate(value):
            sub = prefix[i] if i < len(prefix) else rest_schema
            if sub is False and i >= len(prefix):
                self.errors.append(f"{path}: at most {len(prefix)} items are allowed")
                break
            self.check(sub, item, f"{path}[{i}]", depth + 1)
        if isinstance(schema.get("minItems"), int) and len(value) < schema["minItems"]:
            self.errors.append(f"{path}: fewer than {schema['minItems']} items")
        if isinstance(schema.get("maxItems"), int) and len(value) > schema["maxItems"]:
            self.errors.append(f"{path}: more than {schema['maxItems']} items")
        if schema.get("uniqueItems") is True:
            for i, item in enumerate(value):
                if any(json_equal(item, other) for other in value[:i]):
                    self.errors.append(f"{path}[{i}]: duplicate item {_show(item)}")
                    break

    def _object(self, schema: dict[str, Any], value: dict[str, Any], path: str, depth: int) -> None:
        """``required`` / ``properties`` / ``patternProperties`` / ``additionalProperties`` / 個数。"""
        for name in schema.get("required") or []:
            if name not in value:
                self.errors.append(f"{path}: missing required property '{name}'")
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        patterns = schema.get("patternProperties") if isinstance(schema.get("patternProperties"), dict) else {}
        extra = schema.get("additionalProperties", True)
        for name, item in value.items():
            where = f"{path}.{name}"
            matched = name in properties
            if matched:
                self.check(properties[name], item, where, depth + 1)
            for pattern, sub in patterns.items():
                if _safe_search(pattern, name):
                    matched = True
                    self.check(sub, item, where, depth + 1)
            if matched:
                continue
            if extra is False:
                self.errors.append(f"{path}: unexpected property '{name}'")
            else:
                self.check(extra, item, where, depth + 1)
        if isinstance(schema.get("minProperties"), int) and len(value) < schema["minProperties"]:
            self.errors.append(f"{path}: fewer than {schema['minProperties']} properties")
        if isinstance(schema.get("maxProperties"), int) and len(value) > schema["maxProperties"]:
            self.errors.append(f"{path}: more than {schema['maxProperties']} properties")


def _is_number(value: Any) -> bool:
    """スキーマの数値キーワードとして使える数か (真偽値は除く)。"""
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_multiple(value: float, step: float) -> bool:
    """``value`` が ``step`` の倍数か (小数は丸め誤差を許す: 0.3 は 0.1 の倍数)。"""
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0
    quotient = value / step
    if not math.isfinite(quotient):
        return False
    return math.isclose(quotient, round(quotient), rel_tol=1e-9, abs_tol=1e-9)


def _re2_options() -> re2.Options:
    """RE2 のコンパイルの設定 (不正な pattern を標準エラーへ書かせない: 理由は例外で受け取る)。"""
    options = re2.Options()
    options.log_errors = False
    return options


_OPTIONS = _re2_options()


@functools.lru_cache(maxsize=256)
def compile_pattern(pattern: str) -> Any:
    """スキーマの pattern を RE2 でコンパイルする (同じ pattern は使い回す)。

    Returns:
        コンパイルした正規表現。RE2 が受け付けない、または長すぎるなら理由の文 (``str``)。
    """
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"is longer than {MAX_PATTERN_LENGTH} characters"
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else ""
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        return f"is not a regular expression RE2 accepts ({reason or 'invalid'})"
    except (TypeError, ValueError) as exc:
        return f"is not a regular expression RE2 accepts ({exc})"


def pattern_problem(pattern: Any) -> str | None:
    """pattern を照合に使えない理由 (使えれば ``None``)。ツール定義の検査が使う。"""
    if not isinstance(pattern, str):
        return "must be a string"
    compiled = compile_pattern(pattern)
    return compiled if isinstance(compiled, str) else None


def _safe_search(pattern: str, text: str) -> bool:
    """正規表現の部分一致 (使えない正規表現は一致しないとみなす: 定義の検査で先に断られている)。"""
    compiled = compile_pattern(pattern)
    return not isinstance(compiled, str) and compiled.search(text) is not None


__all__ = ["compile_pattern", "is_type", "json_equal", "json_type", "pattern_problem", "validate_arguments"]
