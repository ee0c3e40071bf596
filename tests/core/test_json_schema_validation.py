"""validate_arguments のテスト (表): 妥当な値は違反なし、違反は JSON パスつきの説明になる。"""

from __future__ import annotations

import pytest

from llm_router.core.json_schema_validation import json_equal, pattern_problem, validate_arguments

FLIGHT = {
    "type": "object",
    "properties": {
        "passengers": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"name": {"type": "string", "minLength": 1}, "age": {"type": "integer", "minimum": 0}},
                "required": ["name"],
                "additionalProperties": False,
            },
        },
        "cabin": {"enum": ["economy", "business"]},
        "seat": {"$ref": "#/$defs/Seat"},
        "legacy": {"$ref": "#/definitions/Legacy"},
    },
    "required": ["passengers"],
    "$defs": {"Seat": {"type": "string", "pattern": "^[0-9]{1,2}[A-F]$"}},
    "definitions": {"Legacy": {"type": "boolean"}},
}

# (スキーマ, 値) で違反が無いもの
VALID = [
    ({"type": "string"}, "x"),
    ({"type": "integer"}, 3),
    ({"type": "integer"}, 3.0),
    ({"type": "number"}, 3),
    ({"type": "number"}, 2.5),
    ({"type": "boolean"}, False),
    ({"type": "null"}, None),
    ({"type": "INTEGER"}, 2),
    ({"type": ["string", "null"]}, None),
    ({"type": "string", "nullable": True}, None),
    ({"type": "array", "items": {"type": "integer"}}, [1, 2]),
    ({"type": "object"}, {"anything": 1}),
    ({"enum": [1, "a", None]}, None),
    ({"enum": [1, 2]}, 1.0),
    ({"const": {"a": [1, 2]}}, {"a": [1, 2]}),
    ({"minimum": 1, "maximum": 3}, 3),
    ({"exclusiveMinimum": 0}, 0.001),
    ({"minimum": 0, "exclusiveMinimum": True}, 1),
    ({"multipleOf": 0.1}, 0.3),
    ({"multipleOf": 3}, 9),
    ({"minLength": 2, "maxLength": 3}, "日本"),
    ({"pattern": "b+"}, "abbbc"),
    ({"format": "email"}, "not an email"),
    ({"prefixItems": [{"type": "string"}, {"type": "integer"}], "items": False}, ["a", 1]),
    ({"items": [{"type": "string"}], "additionalItems": {"type": "integer"}}, ["a", 1, 2]),
    ({"uniqueItems": True}, [1, True, "1"]),
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 4),
    ({"oneOf": [{"type": "string"}, {"type": "integer"}]}, "s"),
    ({"allOf": [{"minimum": 1}, {"maximum": 5}]}, 2),
    ({"not": {"type": "string"}}, 1),
    ({"if": {"minimum": 10}, "then": {"multipleOf": 10}, "else": {"maximum": 5}}, 20),
    ({"additionalProperties": {"type": "integer"}}, {"a": 1, "b": 2}),
    ({"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": False}, {"x-a": "v"}),
    ({"minProperties": 1, "maxProperties": 2}, {"a": 1}),
    (True, {"a": 1}),
    ({}, [1, "two"]),
    (FLIGHT, {"passengers": [{"name": "Aoi", "age": 30}], "cabin": "economy", "seat": "12C", "legacy": True}),
]


@pytest.mark.parametrize(("schema", "value"), VALID)
def test_valid_values_have_no_errors(schema, value):
    """妥当な値には違反が無い。"""
    assert validate_arguments(schema, value) == []


# (スキーマ, 値, 期待する 1 つ目の違反の一部)
INVALID = [
    ({"type": "string"}, 1, "arguments: expected string, got integer"),
    ({"type": "integer"}, 1.5, "expected integer, got number"),
    ({"type": "integer"}, True, "expected integer, got boolean"),
    ({"type": "number"}, False, "expected number, got boolean"),
    ({"type": "boolean"}, 0, "expected boolean, got integer"),
    ({"type": ["string", "null"]}, 3, "expected string or null, got integer"),
    ({"type": "string"}, None, "expected string, got null"),
    ({"type": "object"}, [], "expected object, got array"),
    ({"enum": [1, 2]}, True, "True is not one of [1, 2]"),
    ({"enum": ["a", "b"]}, "c", "'c' is not one of ['a', 'b']"),
    ({"const": "x"}, "y", "must be 'x'"),
    ({"minimum": 1}, 0, "less than the minimum 1"),
    ({"maximum": 1}, 2, "greater than the maximum 1"),
    ({"exclusiveMinimum": 0}, 0, "must be greater than 0"),
    ({"exclusiveMaximum": 10}, 10, "must be less than 10"),
    ({"maximum": 10, "exclusiveMaximum": True}, 10, "must be less than 10"),
    ({"multipleOf": 0.1}, 0.35, "not a multiple of 0.1"),
    ({"minLength": 3}, "ab", "shorter than 3 characters"),
    ({"maxLength": 1}, "日本", "longer than 1 characters"),
    ({"pattern": "^[a-z]+$"}, "ABC", "does not match the pattern"),
    ({"minItems": 2}, [1], "fewer than 2 items"),
    ({"maxItems": 1}, [1, 2], "more than 1 items"),
    ({"uniqueItems": True}, [{"a": 1}, {"a": 1}], "arguments[1]: duplicate item"),
    ({"prefixItems": [{"type": "string"}], "items": False}, ["a", "b"], "at most 1 items are allowed"),
    ({"items": {"type": "integer"}}, [1, "x"], "arguments[1]: expected integer, got string"),
    ({"anyOf": [{"type": "string"}, {"type": "integer"}]}, 1.5, "does not match any of the allowed schemas"),
    ({"oneOf": [{"type": "number"}, {"type": "integer"}]}, 1, "matched 2"),
    ({"oneOf": [{"type": "string"}]}, 1, "matched 0"),
    ({"allOf": [{"minimum": 1}, {"maximum": 5}]}, 7, "greater than the maximum 5"),
    ({"not": {"type": "string"}}, "s", "must not match"),
    ({"if": {"minimum": 10}, "then": {"multipleOf": 10}}, 15, "not a multiple of 10"),
    ({"required": ["a"]}, {}, "arguments: missing required property 'a'"),
    ({"additionalProperties": False, "properties": {"a": {}}}, {"a": 1, "b": 2}, "unexpected property 'b'"),
    ({"additionalProperties": {"type": "integer"}}, {"a": "x"}, "arguments.a: expected integer"),
    ({"maxProperties": 1}, {"a": 1, "b": 2}, "more than 1 properties"),
    ({"$ref": "#/$defs/Missing"}, 1, "does not resolve"),
    ({"$ref": "http://example.com/s.json"}, 1, "unsupported $ref"),
    (False, 1, "no value is allowed"),
    ({"pattern": "("}, "x", "is not a regular expression RE2 accepts"),
]


@pytest.mark.parametrize(("schema", "value", "expected"), INVALID)
def test_invalid_values_are_explained(schema, value, expected):
    """違反は JSON パスで始まる説明になる。"""
    errors = validate_arguments(schema, value)
    assert errors, f"{value!r} should not pass {schema!r}"
    assert expected in errors[0]
    assert errors[0].startswith("arguments")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, "arguments: missing required property 'passengers'"),
        ({"passengers": []}, "arguments.passengers: fewer than 1 items"),
        ({"passengers": [{"name": 1}]}, "arguments.passengers[0].name: expected string, got integer"),
        ({"passengers": [{"name": "A", "age": -1}]}, "arguments.passengers[0].age: -1 is less than the minimum 0"),
        ({"passengers": [{}]}, "arguments.passengers[0]: missing required property 'name'"),
        ({"passengers": [{"name": "A", "x": 1}]}, "arguments.passengers[0]: unexpected property 'x'"),
        ({"passengers": [{"name": "A"}], "seat": "99Z"}, "arguments.seat: does not match the pattern"),
        ({"passengers": [{"name": "A"}], "legacy": "yes"}, "arguments.legacy: expected boolean, got string"),
        ({"passengers": [{"name": "A"}], "cabin": "first"}, "arguments.cabin: 'first' is not one of"),
    ],
)
def test_nested_errors_name_the_json_path(value, expected):
    """入れ子の違反は ``arguments.passengers[0].name`` のようなパスを持つ。"""
    assert any(expected in error for error in validate_arguments(FLIGHT, value))


def test_every_violation_is_reported():
    """複数の違反はすべて報告される。"""
    errors = validate_arguments(FLIGHT, {"passengers": [{"name": 1}, {"age": "x"}], "cabin": "first"})
    assert len(errors) == 4


@pytest.mark.parametrize("pattern", ["^(a|a)*$", "^(a+)+$", "^(a*)*$", "^(\\w+\\s?)*$"])
def test_catastrophic_patterns_are_matched_in_linear_time(pattern):
    """バックトラックで指数時間になる pattern も RE2 で照合する (照合して不一致を報告し、すぐ返る)。"""
    hostile = "a" * 40 + "!"
    errors = validate_arguments({"type": "string", "pattern": pattern}, hostile)
    assert errors == [f"arguments: does not match the pattern '{pattern}'"]
    # 一致する値は一致として扱う (照合を省いているのではない)
    assert validate_arguments({"type": "string", "pattern": pattern}, "a" * 40) == []


def test_pattern_properties_use_the_same_engine():
    """``patternProperties`` のキーの照合も RE2 (破滅的な形でも一致・不一致を正しく出す)。"""
    schema = {"type": "object", "patternProperties": {"^(a|a)*$": {"type": "integer"}}, "additionalProperties": False}
    assert validate_arguments(schema, {"a" * 40: 1}) == []
    assert validate_arguments(schema, {"a" * 40 + "b": 1}) == ["arguments: unexpected property '" + "a" * 40 + "b'"]
    assert validate_arguments(schema, {"aaa": "x"}) == ["arguments.aaa: expected integer, got string"]


@pytest.mark.parametrize("pattern", ["(a)\\1", "a(?=b)", "(?<!x)y", "x" * 1001, "("])
def test_patterns_re2_refuses_are_reported_not_skipped(pattern):
    """RE2 が受け付けない pattern は黙って飛ばさず、スキーマの誤りとして報告する。"""
    errors = validate_arguments({"type": "string", "pattern": pattern}, "a")
    assert len(errors) == 1 and errors[0].startswith("arguments: the schema's pattern")
    assert pattern_problem(pattern) is not None


def test_recursive_ref_validates_recursive_data():
    """再帰する ``$ref`` (木構造) も検証できる。"""
    tree = {
        "$ref": "#/$defs/Node",
        "$defs": {
            "Node": {
                "type": "object",
                "properties": {"value": {"type": "integer"}, "children": {"type": "array", "items": {"$ref": "#"}}},
            }
        },
    }
    assert validate_arguments(tree, {"value": 1, "children": [{"value": 2, "children": []}]}) == []
    assert validate_arguments(tree, {"children": [{"value": "x"}]}) == [
        "arguments.children[0].value: expected integer, got string"
    ]


def test_a_ref_loop_without_data_stops():
    """データを消費しない ``$ref`` の循環は止まり、違反として報告される。"""
    errors = validate_arguments({"$ref": "#/$defs/A", "$defs": {"A": {"$ref": "#/$defs/A"}}}, 1)
    assert errors and "too deep" in errors[0]


def test_anyof_error_lists_each_branch_reason():
    """anyOf の違反は各枝の理由を含む (モデルが直しやすいように)。"""
    errors = validate_arguments({"anyOf": [{"type": "string"}, {"type": "integer", "minimum": 5}]}, 1)
    assert "expected string" in errors[0] and "less than the minimum 5" in errors[0]


@pytest.mark.parametrize(
    ("a", "b", "equal"),
    [(1, 1.0, True), (1, True, False), (0, False, False), ({"a": [1]}, {"a": [1.0]}, True), ("1", 1, False)],
)
def test_json_equality(a, b, equal):
    """JSON の等しさ: 真偽値は数ではない。"""
    assert json_equal(a, b) is equal
