"""ツール定義の正規化 (全形式と誤り) と、プロファイルごとのスキーマ変換 (表) のテスト。"""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_router.core.schemas.common import ToolDefinition
from llm_router.core.schemas.errors import ConfigurationError
from llm_router.core.tool_schemas import (
    PROFILES,
    ToolDefinitionError,
    convert_schema,
    normalize_tools,
    schema_for_provider,
)

WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string", "description": "都市名"}},
    "required": ["city"],
}

# ---------------------------------------------------------------- 正規化: 受け付ける形式


@pytest.mark.parametrize(
    ("raw", "source"),
    [
        (
            {"type": "function", "function": {"name": "get_weather", "description": "天気", "parameters": WEATHER}},
            "openai",
        ),
        ({"type": "function", "name": "get_weather", "description": "天気", "parameters": WEATHER}, "openai_flat"),
        ({"name": "get_weather", "description": "天気", "input_schema": WEATHER}, "anthropic"),
        (
            {"functionDeclarations": [{"name": "get_weather", "description": "天気", "parametersJsonSchema": WEATHER}]},
            "gemini",
        ),
        ({"name": "get_weather", "description": "天気", "parameters": WEATHER}, "canonical"),
    ],
)
def test_every_format_normalises_to_the_same_canonical_tool(raw, source):
    """docs/protocol.md 3.1 の全形式が同じ正規形になる。入力は変えない。"""
    before = copy.deepcopy(raw)
    [tool] = normalize_tools([raw])
    assert isinstance(tool, ToolDefinition)
    assert tool.to_dict() == {"name": "get_weather", "description": "天気", "parameters": WEATHER}
    assert tool.source_format == source
    assert raw == before


def test_openai_strict_flag_is_noted():
    """OpenAI 形式の ``strict`` を覚えておく。"""
    [nested, flat, plain] = normalize_tools(
        [
            {"type": "function", "function": {"name": "a", "parameters": WEATHER, "strict": True}},
            {"type": "function", "name": "b", "parameters": WEATHER, "strict": False},
            {"name": "c", "parameters": WEATHER},
        ]
    )
    assert (nested.strict, flat.strict, plain.strict) == (True, False, None)


def test_gemini_entry_with_several_declarations_and_openapi_types():
    """Gemini の 1 エントリに複数の宣言。大文字の型と ``nullable`` は JSON Schema になる。"""
    raw = {
        "functionDeclarations": [
            {
                "name": "find_hotel",
                "description": "ホテルを探す",
                "parameters": {
                    "type": "OBJECT",
                    "properties": {
                        "city": {"type": "STRING"},
                        "stars": {"type": "INTEGER", "nullable": True},
                        "kind": {"type": "STRING", "format": "enum", "enum": ["inn", "hotel"], "nullable": True},
                        "rooms": {
                            "type": "ARRAY",
                            "items": {"type": "OBJECT", "properties": {"beds": {"type": "NUMBER"}}},
                        },
                    },
                    "required": ["city"],
                },
            },
            {"name": "ping"},
        ]
    }
    hotel, ping = normalize_tools([raw])
    assert hotel.parameters == {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "stars": {"type": ["integer", "null"]},
            "kind": {"type": ["string", "null"], "enum": ["inn", "hotel", None]},
            "rooms": {"type": "array", "items": {"type": "object", "properties": {"beds": {"type": "number"}}}},
        },
        "required": ["city"],
    }
    assert ping.to_dict() == {"name": "ping", "description": "", "parameters": {"type": "object", "properties": {}}}


def test_gemini_snake_case_keys_from_sdk_dicts_are_accepted():
    """google-genai の dict (snake_case) も受け付ける。"""
    [tool] = normalize_tools([{"function_declarations": [{"name": "a", "parameters_json_schema": WEATHER}]}])
    assert tool.parameters == WEATHER


def test_missing_parameters_become_an_empty_object_schema_and_missing_type_is_object():
    """``parameters`` が無ければ空の object、``type`` が無ければ object とみなす。"""
    a, b = normalize_tools([{"name": "a"}, {"name": "b", "parameters": {"properties": {"x": {"type": "string"}}}}])
    assert a.parameters == {"type": "object", "properties": {}}
    assert b.parameters == {"type": "object", "properties": {"x": {"type": "string"}}}


def test_already_normalised_tools_pass_again():
    """正規化済みの ToolDefinition をもう一度通しても同じ (同じ検査を受ける)。"""
    first = normalize_tools([{"name": "a", "parameters": WEATHER}])
    assert [t.to_dict() for t in normalize_tools(first)] == [t.to_dict() for t in first]
    with pytest.raises(ToolDefinitionError, match="name must match"):
        normalize_tools([ToolDefinition("bad name")])


def test_order_is_kept_across_formats():
    """複数の形式が混ざっても順序を保つ。"""
    tools = normalize_tools(
        [
            {"name": "c", "input_schema": {"type": "object"}},
            {"functionDeclarations": [{"name": "a"}, {"name": "b"}]},
            {"type": "function", "function": {"name": "d"}},
        ]
    )
    assert [t.name for t in tools] == ["c", "a", "b", "d"]


# ---------------------------------------------------------------- 正規化: 誤り


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([{"type": "function", "function": {"description": "x"}}], "tools[0]: missing 'name'"),
        ([{"name": "ok"}, {"type": "function", "name": ""}], "tools[1]: missing 'name'"),
        (
            [{"functionDeclarations": [{"name": "a"}, {"description": "x"}]}],
            "tools[0].functionDeclarations[1]: missing 'name'",
        ),
        ([{"name": "get weather"}], "tool 'get weather' (tools[0]): name must match ^[a-zA-Z0-9_-]{1,64}$"),
        ([{"name": "x" * 65}], "name must match"),
        ([{"name": "天気"}], "tool '天気' (tools[0]): name must match"),
        ([{"name": 7}], "tool 7 (tools[0]): name must match"),
        (
            [{"name": "a", "parameters": {"type": "string"}}],
            "tool 'a': parameters must be an object schema (type 'object'), got 'string'",
        ),
        ([{"name": "a", "input_schema": ["x"]}], "tool 'a': parameters must be a JSON Schema object, got list"),
        (
            [{"name": "a", "parameters": {"type": "object", "properties": []}}],
            "tool 'a': 'properties' must map names to schemas",
        ),
        ([{"name": "a", "parameters": {"type": "object", "required": "x"}}], "tool 'a': 'required' must be a list"),
        (
            [{"name": "a"}, {"type": "function", "function": {"name": "a"}}],
            "tool 'a' (tools[1]): duplicate name (also tools[0])",
        ),
        (
            [{"functionDeclarations": [{"name": "a"}, {"name": "a"}]}],
            "tool 'a' (tools[0].functionDeclarations[1]): duplicate name",
        ),
        ([{"type": "web_search_20250305", "name": "web_search"}], "tools[0]: unknown tool definition format"),
        ([{"description": "no name at all"}], "tools[0]: unknown tool definition format"),
        (
            [{"name": "a", "description": "d", "parameter": {"type": "object"}}],
            "tool 'a' (tools[0]): unknown field(s) 'parameter'",
        ),
        ([{"name": "a", "input_shema": {"type": "object"}}], "tool 'a' (tools[0]): unknown field(s) 'input_shema'"),
        ([{"name": "a", "inputSchema": {"type": "object"}}], "tool 'a' (tools[0]): unknown field(s) 'inputSchema'"),
        (
            [{"type": "function", "function": {"name": "a", "paramters": {"type": "object"}}}],
            "tool 'a' (tools[0]): unknown field(s) 'paramters'",
        ),
        ([{"type": "function", "name": "a", "parameter": {}}], "tool 'a' (tools[0]): unknown field(s) 'parameter'"),
        (["get_weather"], "tools[0]: a tool definition must be an object"),
        ([{"functionDeclarations": []}], "tools[0]: 'functionDeclarations' must be a non-empty list"),
        ([{"name": "a", "description": 3}], "tool 'a': 'description' must be a string"),
        ([{"type": "function", "function": {"name": "a", "strict": "yes"}}], "tool 'a': 'strict' must be a boolean"),
        ([{"type": "function", "function": "a"}], "tools[0]: 'function' must be an object"),
    ],
)
def test_invalid_definitions_name_the_tool_and_the_problem(raw, message):
    """誤った定義は、ツール名 (無ければ番号) と問題を示す ToolDefinitionError になる。"""
    with pytest.raises(ToolDefinitionError) as info:
        normalize_tools(raw)
    assert message in str(info.value)
    assert isinstance(info.value, ConfigurationError)


def test_absurdly_deep_definitions_are_refused_before_walking():
    """極端に深い定義は、再帰で歩く前に断る (スタックを溢れさせない)。"""
    schema: dict = {"type": "string"}
    for _ in range(2000):
        schema = {"type": "object", "properties": {"x": schema}}
    with pytest.raises(ToolDefinitionError, match=r"tools\[0\]: the definition is nested deeper than 64 levels"):
        normalize_tools([{"name": "deep", "parameters": schema}])
    gemini = {"functionDeclarations": [{"name": "deep", "parameters": schema}]}
    with pytest.raises(ToolDefinitionError, match="nested deeper"):
        normalize_tools([gemini])


def test_tools_must_be_a_list():
    """リストでない ``tools`` は誤り。"""
    with pytest.raises(ToolDefinitionError, match="must be a list"):
        normalize_tools({"name": "a"})  # type: ignore[arg-type]


def test_reserved_names_clash():
    """サーバーツールと同じ名前は拒否できる。"""
    with pytest.raises(ToolDefinitionError, match=r"tool 'calculator' .*clashes with a server tool"):
        normalize_tools([{"name": "calculator"}], reserved_names=["calculator"])


# ---------------------------------------------------------------- プロファイルごとの変換 (表)

NESTED = {
    "type": "object",
    "title": "Booking",
    "properties": {
        "passenger": {
            "type": "object",
            "title": "Passenger",
            "additionalProperties": False,
            "properties": {"name": {"type": "string", "minLength": 1}, "email": {"type": "string", "format": "email"}},
            "required": ["name"],
        },
        "title": {"type": "string", "description": "敬称"},
    },
    "required": ["passenger"],
}
ARRAY_OF_OBJECTS = {
    "type": "object",
    "properties": {
        "legs": {
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {
                "type": "object",
                "properties": {"from": {"type": "string", "pattern": "^[A-Z]{3}$"}, "to": {"type": "string"}},
                "required": ["from", "to"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["legs"],
}
ENUMS = {
    "type": "object",
    "properties": {
        "cabin": {"type": "string", "enum": ["economy", "business"]},
        "stops": {"type": "integer", "enum": [0, 1, 2]},
        "kind": {"const": "oneway"},
    },
}
DEFS = {
    "type": "object",
    "properties": {"home": {"$ref": "#/$defs/Address"}, "work": {"$ref": "#/$defs/Address", "description": "勤務先"}},
    "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
}
NULLABLE = {
    "type": "object",
    "properties": {
        "note": {"type": ["string", "null"]},
        "seat": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "座席"},
        "either": {"type": ["string", "integer"]},
        "choice": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
        "at": {"type": "string", "format": "date-time", "exclusiveMinimum": 0},
    },
}
RECURSIVE = {
    "type": "object",
    "properties": {"tree": {"$ref": "#/$defs/Node"}},
    "$defs": {
        "Node": {
            "type": "object",
            "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}},
            },
        }
    },
}

TRANSFORMS = [
    pytest.param(
        "openai_strict",
        NESTED,
        {
            "type": "object",
            "title": "Booking",
            "properties": {
                "passenger": {
                    "type": "object",
                    "title": "Passenger",
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string"},
                        "email": {"type": ["string", "null"], "format": "email"},
                    },
                    "required": ["name", "email"],
                },
                "title": {"type": ["string", "null"], "description": "敬称"},
            },
            "required": ["passenger", "title"],
            "additionalProperties": False,
        },
        [
            "tool 'book_flight' (openai): dropped 'minLength' at properties.passenger.properties.name",
            "tool 'book_flight' (openai): made optional property required and nullable: 'email' at properties.passenger.properties.email",
            "tool 'book_flight' (openai): made optional property required and nullable: 'title' at properties.title",
        ],
        id="nested-openai_strict",
    ),
    pytest.param(
        "gemini_json_schema",
        NESTED,
        {
            "type": "object",
            "properties": {
                "passenger": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "name": {"type": "string", "minLength": 1},
                        "email": {"type": "string", "description": "(format: email)"},
                    },
                    "required": ["name"],
                },
                "title": {"type": "string", "description": "敬称"},
            },
            "required": ["passenger"],
        },
        [
            "tool 'book_flight' (gemini): moved into description: 'format' at properties.passenger.properties.email (email)",
            "tool 'book_flight' (gemini): dropped 'title' at properties.passenger",
            "tool 'book_flight' (gemini): dropped 'title' at root",
        ],
        id="nested-gemini_json_schema",
    ),
    pytest.param(
        "gemini_openapi",
        NESTED,
        {
            "type": "OBJECT",
            "properties": {
                "passenger": {
                    "type": "OBJECT",
                    "properties": {
                        "name": {"type": "STRING", "minLength": 1},
                        "email": {"type": "STRING", "description": "(format: email)"},
                    },
                    "required": ["name"],
                },
                "title": {"type": "STRING", "description": "敬称"},
            },
            "required": ["passenger"],
        },
        [
            "tool 'book_flight' (gemini): moved into description: 'format' at properties.passenger.properties.email (email)",
            "tool 'book_flight' (gemini): dropped 'title' at properties.passenger",
            "tool 'book_flight' (gemini): dropped 'additionalProperties' at properties.passenger",
            "tool 'book_flight' (gemini): dropped 'title' at root",
        ],
        id="nested-gemini_openapi",
    ),
    pytest.param(
        "ollama",
        NESTED,
        {
            "type": "object",
            "properties": {
                "passenger": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
                    "required": ["name"],
                },
                "title": {"type": "string", "description": "敬称"},
            },
            "required": ["passenger"],
        },
        [
            "tool 'book_flight' (ollama): dropped 'title' at root",
            "tool 'book_flight' (ollama): dropped 'title' at properties.passenger",
            "tool 'book_flight' (ollama): dropped 'additionalProperties' at properties.passenger",
            "tool 'book_flight' (ollama): dropped 'minLength' at properties.passenger.properties.name",
            "tool 'book_flight' (ollama): dropped 'format' at properties.passenger.properties.email",
        ],
        id="nested-ollama",
    ),
    pytest.param(
        "openai_strict",
        ARRAY_OF_OBJECTS,
        {
            "type": "object",
            "properties": {
                "legs": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "properties": {"from": {"type": "string", "pattern": "^[A-Z]{3}$"}, "to": {"type": "string"}},
                        "required": ["from", "to"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["legs"],
            "additionalProperties": False,
        },
        ["tool 'book_flight' (openai): dropped 'uniqueItems' at properties.legs"],
        id="array_of_objects-openai_strict",
    ),
    pytest.param(
        "gemini_json_schema",
        ARRAY_OF_OBJECTS,
        {
            "type": "object",
            "properties": {
                "legs": {
                    "type": "array",
                    "minItems": 1,
                    "uniqueItems": True,
                    "items": {
                        "type": "object",
                        "properties": {"from": {"type": "string", "pattern": "^[A-Z]{3}$"}, "to": {"type": "string"}},
                        "required": ["from", "to"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["legs"],
        },
        [],
        id="array_of_objects-gemini_json_schema",
    ),
    pytest.param(
        "gemini_openapi",
        ARRAY_OF_OBJECTS,
        {
            "type": "OBJECT",
            "properties": {
                "legs": {
                    "type": "ARRAY",
                    "minItems": 1,
                    "items": {
                        "type": "OBJECT",
                        "properties": {"from": {"type": "STRING", "pattern": "^[A-Z]{3}$"}, "to": {"type": "STRING"}},
                        "required": ["from", "to"],
                    },
                }
            },
            "required": ["legs"],
        },
        [
            "tool 'book_flight' (gemini): dropped 'additionalProperties' at properties.legs.items",
            "tool 'book_flight' (gemini): dropped 'uniqueItems' at properties.legs",
        ],
        id="array_of_objects-gemini_openapi",
    ),
    pytest.param(
        "ollama",
        ARRAY_OF_OBJECTS,
        {
            "type": "object",
            "properties": {
                "legs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"from": {"type": "string", "pattern": "^[A-Z]{3}$"}, "to": {"type": "string"}},
                        "required": ["from", "to"],
                        "additionalProperties": False,
                    },
                }
            },
            "required": ["legs"],
        },
        [
            "tool 'book_flight' (ollama): dropped 'minItems' at properties.legs",
            "tool 'book_flight' (ollama): dropped 'uniqueItems' at properties.legs",
        ],
        id="array_of_objects-ollama",
    ),
    pytest.param(
        "openai_strict",
        ENUMS,
        {
            "type": "object",
            "properties": {
                "cabin": {"type": ["string", "null"], "enum": ["economy", "business", None]},
                "stops": {"type": ["integer", "null"], "enum": [0, 1, 2, None]},
                "kind": {"anyOf": [{"const": "oneway"}, {"type": "null"}]},
            },
            "additionalProperties": False,
            "required": ["cabin", "stops", "kind"],
        },
        [
            "tool 'book_flight' (openai): made optional property required and nullable: 'cabin' at properties.cabin",
            "tool 'book_flight' (openai): made optional property required and nullable: 'stops' at properties.stops",
            "tool 'book_flight' (openai): made optional property required and nullable: 'kind' at properties.kind",
        ],
        id="enums-openai_strict",
    ),
    pytest.param(
        "gemini_json_schema",
        ENUMS,
        {
            "type": "object",
            "properties": {
                "cabin": {"type": "string", "enum": ["economy", "business"]},
                "stops": {"type": "integer", "enum": [0, 1, 2]},
                "kind": {"enum": ["oneway"]},
            },
        },
        ["tool 'book_flight' (gemini): rewrote as one-value enum: 'const' at properties.kind"],
        id="enums-gemini_json_schema",
    ),
    pytest.param(
        "gemini_openapi",
        ENUMS,
        {
            "type": "OBJECT",
            "properties": {
                "cabin": {"type": "STRING", "enum": ["economy", "business"]},
                "stops": {"type": "INTEGER", "description": "(allowed values: 0, 1, 2)"},
                "kind": {"enum": ["oneway"]},
            },
        },
        [
            "tool 'book_flight' (gemini): dropped 'enum' at properties.stops (non-string values; listed in description instead)",
            "tool 'book_flight' (gemini): rewrote as one-value enum: 'const' at properties.kind",
        ],
        id="enums-gemini_openapi",
    ),
    pytest.param(
        "ollama",
        ENUMS,
        {
            "type": "object",
            "properties": {
                "cabin": {"type": "string", "enum": ["economy", "business"]},
                "stops": {"type": "integer", "enum": [0, 1, 2]},
                "kind": {"enum": ["oneway"]},
            },
        },
        ["tool 'book_flight' (ollama): rewrote as one-value enum: 'const' at properties.kind"],
        id="enums-ollama",
    ),
    pytest.param(
        "openai_strict",
        DEFS,
        {
            "type": "object",
            "properties": {
                "home": {"anyOf": [{"$ref": "#/$defs/Address"}, {"type": "null"}]},
                "work": {"anyOf": [{"$ref": "#/$defs/Address", "description": "勤務先"}, {"type": "null"}]},
            },
            "$defs": {
                "Address": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "additionalProperties": False,
                }
            },
            "additionalProperties": False,
            "required": ["home", "work"],
        },
        [
            "tool 'book_flight' (openai): made optional property required and nullable: 'home' at properties.home",
            "tool 'book_flight' (openai): made optional property required and nullable: 'work' at properties.work",
        ],
        id="defs-openai_strict",
    ),
    pytest.param(
        "gemini_json_schema",
        DEFS,
        {
            "type": "object",
            "properties": {
                "home": {"$ref": "#/$defs/Address"},
                "work": {"$ref": "#/$defs/Address", "description": "勤務先"},
            },
            "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
        },
        [],
        id="defs-gemini_json_schema",
    ),
    pytest.param(
        "gemini_openapi",
        DEFS,
        {
            "type": "OBJECT",
            "properties": {
                "home": {"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
                "work": {
                    "type": "OBJECT",
                    "properties": {"city": {"type": "STRING"}},
                    "required": ["city"],
                    "description": "勤務先",
                },
            },
        },
        ["tool 'book_flight' (gemini): inlined every $ref and dropped '$defs' at root"],
        id="defs-gemini_openapi",
    ),
    pytest.param(
        "ollama",
        DEFS,
        {
            "type": "object",
            "properties": {
                "home": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "work": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                    "description": "勤務先",
                },
            },
        },
        ["tool 'book_flight' (ollama): inlined every $ref and dropped '$defs' at root"],
        id="defs-ollama",
    ),
    pytest.param(
        "openai_strict",
        NULLABLE,
        {
            "type": "object",
            "properties": {
                "note": {"type": ["string", "null"]},
                "seat": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "座席"},
                "either": {"type": ["string", "integer", "null"]},
                "choice": {"anyOf": [{"anyOf": [{"type": "string"}, {"type": "integer"}]}, {"type": "null"}]},
                "at": {"type": ["string", "null"], "format": "date-time", "exclusiveMinimum": 0},
            },
            "additionalProperties": False,
            "required": ["note", "seat", "either", "choice", "at"],
        },
        [
            "tool 'book_flight' (openai): rewrote as 'anyOf': 'oneOf' at properties.choice",
            "tool 'book_flight' (openai): made optional property required and nullable: 'note' at properties.note",
            "tool 'book_flight' (openai): made optional property required and nullable: 'seat' at properties.seat",
            "tool 'book_flight' (openai): made optional property required and nullable: 'either' at properties.either",
            "tool 'book_flight' (openai): made optional property required and nullable: 'choice' at properties.choice",
            "tool 'book_flight' (openai): made optional property required and nullable: 'at' at properties.at",
        ],
        id="nullable-openai_strict",
    ),
    pytest.param(
        "gemini_json_schema",
        NULLABLE,
        {
            "type": "object",
            "properties": {
                "note": {"type": ["string", "null"]},
                "seat": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "座席"},
                "either": {"type": ["string", "integer"]},
                "choice": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                "at": {"type": "string", "format": "date-time"},
            },
        },
        ["tool 'book_flight' (gemini): dropped 'exclusiveMinimum' at properties.at"],
        id="nullable-gemini_json_schema",
    ),
    pytest.param(
        "gemini_openapi",
        NULLABLE,
        {
            "type": "OBJECT",
            "properties": {
                "note": {"type": "STRING", "nullable": True},
                "seat": {"type": "STRING", "description": "座席", "nullable": True},
                "either": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
                "choice": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
                "at": {"type": "STRING", "format": "date-time"},
            },
        },
        [
            "tool 'book_flight' (gemini): rewrote type list as single type + 'nullable': 'type' at properties.note",
            "tool 'book_flight' (gemini): rewrote null variant as 'nullable': 'anyOf' at properties.seat",
            "tool 'book_flight' (gemini): rewrote type list as 'anyOf': 'type' at properties.either",
            "tool 'book_flight' (gemini): rewrote as 'anyOf': 'oneOf' at properties.choice",
            "tool 'book_flight' (gemini): dropped 'exclusiveMinimum' at properties.at",
        ],
        id="nullable-gemini_openapi",
    ),
    pytest.param(
        "ollama",
        NULLABLE,
        {
            "type": "object",
            "properties": {
                "note": {"type": ["string", "null"]},
                "seat": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "座席"},
                "either": {"type": ["string", "integer"]},
                "choice": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "at": {"type": "string"},
            },
        },
        [
            "tool 'book_flight' (ollama): rewrote as 'anyOf': 'oneOf' at properties.choice",
            "tool 'book_flight' (ollama): dropped 'format' at properties.at",
            "tool 'book_flight' (ollama): dropped 'exclusiveMinimum' at properties.at",
        ],
        id="nullable-ollama",
    ),
]


@pytest.mark.parametrize(("profile", "schema", "expected", "warnings"), TRANSFORMS)
def test_profile_transformations(profile, schema, expected, warnings):
    """入れ子の object、object の配列、enum、$defs、null 可と合併型を、各プロファイルがどう変えるか。

    落とした・書き換えたキーワードはすべて、ツール名・プロバイダ・JSON パスつきの警告になる。
    元のスキーマは変わらない。
    """
    before = copy.deepcopy(schema)
    tool = ToolDefinition("book_flight", "", schema)
    assert schema_for_provider(profile, tool) == (expected, warnings)
    assert schema == before


@pytest.mark.parametrize("profile", ["openai", "anthropic"])
@pytest.mark.parametrize("schema", [NESTED, ARRAY_OF_OBJECTS, ENUMS, DEFS, NULLABLE, RECURSIVE])
def test_openai_and_anthropic_take_json_schema_unchanged(profile, schema):
    """OpenAI (非 strict) と Anthropic は JSON Schema をそのまま受け取る (コピーを返す)。"""
    out, warnings = schema_for_provider(profile, ToolDefinition("t", "", schema))
    assert out == schema and out is not schema and warnings == []


def test_warning_format_names_tool_provider_and_path():
    """警告の形: ``tool '<name>' (<provider>): dropped '<keyword>' at <path>``。"""
    schema = {"type": "object", "properties": {"passenger": {"type": "object", "additionalProperties": False}}}
    _, warnings = schema_for_provider("gemini_openapi", ToolDefinition("book_flight", "", schema))
    assert warnings == ["tool 'book_flight' (gemini): dropped 'additionalProperties' at properties.passenger"]


def test_recursive_refs_are_refused_for_gemini_openapi_with_a_clear_error():
    """OpenAPI 形では再帰する $ref を展開できない: ツール名と代わりの設定を示して拒否する。"""
    with pytest.raises(
        ToolDefinitionError, match=r"tool 'tree_tool' \(gemini\): recursive \$ref '#/\$defs/Node'"
    ) as info:
        schema_for_provider("gemini_openapi", ToolDefinition("tree_tool", "", RECURSIVE))
    assert "schema_mode=json_schema" in str(info.value)


def test_recursive_refs_pass_to_gemini_json_schema_and_openai_strict():
    """parametersJsonSchema と OpenAI strict は再帰する $ref をそのまま受け取る。"""
    out, warnings = schema_for_provider("gemini_json_schema", ToolDefinition("t", "", RECURSIVE))
    assert out == RECURSIVE and warnings == []
    converted = convert_schema("openai_strict", ToolDefinition("t", "", RECURSIVE))
    assert converted.strict is True
    assert converted.schema["$defs"]["Node"]["additionalProperties"] is False


def test_recursive_refs_for_ollama_keep_defs_and_warn():
    """Ollama ではプロパティが $ref を持てない: 再帰して展開できない $ref は警告して落とす。"""
    out, warnings = schema_for_provider("ollama", ToolDefinition("t", "", RECURSIVE))
    assert out["properties"]["tree"] == {}
    assert "$defs" in out
    assert warnings == ["tool 't' (ollama): dropped '$ref' at properties.tree"]


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        (
            {"type": "object", "properties": {"tags": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "free-form object ('additionalProperties') at properties.tags",
        ),
        ({"type": "object", "properties": {"x": {"allOf": [{"type": "string"}]}}}, "'allOf' at properties.x"),
        ({"type": "object", "properties": {"x": {"not": {"type": "string"}}}}, "'not' at properties.x"),
        ({"type": "object", "additionalProperties": True}, "free-form object ('additionalProperties') at root"),
    ],
)
def test_openai_strict_falls_back_when_impossible(schema, reason):
    """strict に合わせられないスキーマは、strict を切って元のまま送り、理由を警告する。"""
    converted = convert_schema("openai_strict", ToolDefinition("t", "", schema))
    assert converted.strict is False
    assert converted.schema == schema
    assert converted.warnings == [f"tool 't' (openai): strict mode disabled: {reason}"]


def test_openai_strict_moves_unsupported_formats_into_the_description():
    """strict が受け付けない文字列 format (uri など) は説明文へ移し、対応するもの (email) は残す。"""
    schema = {
        "type": "object",
        "properties": {"site": {"type": "string", "format": "uri"}, "mail": {"type": "string", "format": "email"}},
        "required": ["site", "mail"],
    }
    out, warnings = schema_for_provider("openai_strict", ToolDefinition("t", "", schema))
    assert out["properties"] == {
        "site": {"type": "string", "description": "(format: uri)"},
        "mail": {"type": "string", "format": "email"},
    }
    assert warnings == ["tool 't' (openai): moved into description: 'format' at properties.site (uri)"]


def test_openai_strict_result_is_strict():
    """strict に合わせられたら ``strict`` は真、非 strict のプロファイルでは偽。"""
    assert convert_schema("openai_strict", ToolDefinition("t", "", WEATHER)).strict is True
    assert convert_schema("openai", ToolDefinition("t", "", WEATHER)).strict is False


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("$schema", "https://json-schema.org/draft/2020-12/schema"),
        ("title", "T"),
        ("examples", [1]),
        ("discriminator", {"propertyName": "k"}),
    ],
)
def test_gemini_json_schema_strips_its_keywords(keyword, value):
    """parametersJsonSchema からは docs/providers.md の挙げるキーワードを落とす (1 つにつき警告 1 つ)。"""
    schema = {"type": "object", "properties": {"x": {"type": "integer", keyword: value}}}
    out, warnings = schema_for_provider("gemini_json_schema", ToolDefinition("t", "", schema))
    assert out == {"type": "object", "properties": {"x": {"type": "integer"}}}
    assert warnings == [f"tool 't' (gemini): dropped '{keyword}' at properties.x"]


@pytest.mark.parametrize(
    "keyword", ["$schema", "title", "default", "additionalProperties", "multipleOf", "prefixItems"]
)
def test_gemini_openapi_drops_what_the_schema_object_lacks(keyword):
    """OpenAPI 形の Schema に無いキーワードは落とし、警告する。"""
    schema = {"type": "object", "properties": {"x": {"type": "array", keyword: False}}}
    out, warnings = schema_for_provider("gemini_openapi", ToolDefinition("t", "", schema))
    assert out == {"type": "OBJECT", "properties": {"x": {"type": "ARRAY"}}}
    assert warnings == [f"tool 't' (gemini): dropped '{keyword}' at properties.x"]


def test_gemini_openapi_enum_with_null_becomes_nullable():
    """文字列と null の enum は、文字列の enum + nullable にする。"""
    schema = {"type": "object", "properties": {"x": {"type": ["string", "null"], "enum": ["a", None]}}}
    out, _ = schema_for_provider("gemini_openapi", ToolDefinition("t", "", schema))
    assert out["properties"]["x"] == {"type": "STRING", "enum": ["a"], "nullable": True}


def test_normalised_gemini_openapi_round_trips_to_the_openapi_form():
    """Gemini の OpenAPI 形で来た定義は、OpenAPI 形に戻すと元と同じ意味になる。"""
    raw = {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING", "nullable": True}, "n": {"type": "INTEGER"}},
        "required": ["n"],
    }
    [tool] = normalize_tools([{"functionDeclarations": [{"name": "a", "parameters": raw}]}])
    out, _ = schema_for_provider("gemini_openapi", tool)
    assert out == raw


def test_property_names_that_look_like_keywords_are_kept():
    """プロパティ名 ``title`` / ``default`` はキーワードではないので落とさない。"""
    schema = {"type": "object", "properties": {"title": {"type": "string"}, "default": {"type": "boolean"}}}
    for profile in PROFILES:
        out, _ = schema_for_provider(profile, ToolDefinition("t", "", schema))
        assert set(out["properties"]) == {"title", "default"}, profile


def test_unknown_profile_is_a_configuration_error():
    """未知のプロファイル名は、既知のものを挙げる設定の誤り。"""
    with pytest.raises(ConfigurationError, match=r"unknown tool schema profile 'mistral'.*ollama"):
        schema_for_provider("mistral", ToolDefinition("t"))


def test_every_profile_is_listed():
    """契約にある 6 つのプロファイルがすべて表にある。"""
    assert set(PROFILES) == {"openai", "openai_strict", "anthropic", "gemini_json_schema", "gemini_openapi", "ollama"}


# ---------------------------------------------------------------- strict の null を「省略」に戻す


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"name": "A", "note": None}, {"name": "A"}),
        ({"name": "A", "maybe": None}, {"name": "A", "maybe": None}),
        ({"name": None}, {"name": None}),
        ({"name": "A", "legs": [{"to": "HND", "via": None}]}, {"name": "A", "legs": [{"to": "HND"}]}),
        ({"name": "A", "home": {"city": "Kyoto", "zip": None}}, {"name": "A", "home": {"city": "Kyoto"}}),
        ({"name": "A", "free": None}, {"name": "A", "free": None}),
    ],
)
def test_drop_null_optionals(arguments, expected):
    """strict のモデルが省略の代わりに返す null を、null を許さない任意のプロパティからだけ取り除く。"""
    from llm_router.core.tool_schemas import drop_null_optionals

    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "note": {"type": "string"},
            "maybe": {"type": ["string", "null"]},
            "free": {},
            "legs": {
                "type": "array",
                "items": {"type": "object", "properties": {"to": {"type": "string"}, "via": {"type": "string"}}},
            },
            "home": {"$ref": "#/$defs/Address"},
        },
        "required": ["name"],
        "$defs": {"Address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string"}}}},
    }
    before = copy.deepcopy(arguments)
    assert drop_null_optionals(schema, arguments) == expected
    assert arguments == before


# ---------------------------------------------------------------- 公式 SDK による確認


@pytest.mark.parametrize("schema", [NESTED, ARRAY_OF_OBJECTS, ENUMS, DEFS, NULLABLE])
def test_gemini_openapi_output_is_a_valid_google_genai_schema(schema):
    """OpenAPI 形の出力は google-genai の ``types.Schema`` (未知のフィールドを拒否する) にそのまま通り、往復で変わらない。"""
    genai_types = pytest.importorskip("google.genai.types")
    out, _ = schema_for_provider("gemini_openapi", ToolDefinition("t", "", schema))
    parsed = genai_types.Schema.model_validate(out)
    assert parsed.model_dump(exclude_none=True, mode="json", by_alias=True) == out


def test_google_genai_schema_refuses_unknown_keywords():
    """上の確認が意味を持つこと: SDK の Schema は知らないキーワードを拒否する。"""
    genai_types = pytest.importorskip("google.genai.types")
    with pytest.raises(ValueError, match=r"exclusiveMinimum|exclusive_minimum|extra"):
        genai_types.Schema.model_validate({"type": "INTEGER", "exclusiveMinimum": 0})


# ---------------------------------------------------------------- 性質 (hypothesis): どんなスキーマでも壊れない


_LEAF_TYPES = st.sampled_from(["string", "integer", "number", "boolean", "null"])
_KEYWORDS = st.fixed_dictionaries(
    {},
    optional={
        "title": st.text(max_size=5),
        "description": st.text(max_size=5),
        "default": st.none() | st.integers(),
        "format": st.sampled_from(["email", "date-time", "uri", "int32"]),
        "minimum": st.integers(),
        "exclusiveMaximum": st.integers(),
        "minLength": st.integers(0, 5),
        "pattern": st.just("^a"),
        "enum": st.lists(st.none() | st.integers() | st.text(max_size=3), min_size=1, max_size=3),
        "const": st.text(max_size=3),
    },
)


def _node(children):
    """部分スキーマを作る戦略 (子の戦略を受け取る)。"""
    obj = st.builds(
        lambda props, req, extra, kw: {
            "type": "object",
            "properties": props,
            **({"required": sorted(props)[:req]} if req else {}),
            **extra,
            **kw,
        },
        st.dictionaries(st.sampled_from(["a", "b", "title", "default"]), children, max_size=3),
        st.integers(0, 2),
        st.sampled_from([{}, {"additionalProperties": False}, {"additionalProperties": {"type": "string"}}]),
        _KEYWORDS,
    )
    array = st.builds(lambda items, kw: {"type": "array", "items": items, **kw}, children, _KEYWORDS)
    union = st.builds(lambda vs: {"anyOf": vs}, st.lists(children, min_size=1, max_size=3))
    one_of = st.builds(lambda vs: {"oneOf": vs}, st.lists(children, min_size=1, max_size=2))
    typelist = st.builds(lambda t: {"type": [t, "null"]}, _LEAF_TYPES)
    return obj | array | union | one_of | typelist


_SCHEMAS = st.recursive(
    st.builds(lambda t, kw: {"type": t, **kw}, _LEAF_TYPES, _KEYWORDS) | st.just({"$ref": "#/$defs/D"}),
    _node,
    max_leaves=12,
).map(lambda prop: {"type": "object", "properties": {"p": prop}, "$defs": {"D": {"type": "string"}}})


@settings(max_examples=150, deadline=None)
@given(_SCHEMAS, st.sampled_from(sorted(PROFILES)))
def test_any_schema_converts_without_mutation_and_gemini_openapi_stays_valid(schema, profile):
    """どんなスキーマも、元を変えずに変換でき、警告はツール名を含む文字列。OpenAPI 形は SDK の Schema に通る。"""
    import json

    before = copy.deepcopy(schema)
    out, warnings = schema_for_provider(profile, ToolDefinition("prop_tool", "", schema))
    assert schema == before
    json.dumps(out)
    assert all(isinstance(w, str) and w.startswith("tool 'prop_tool' (") for w in warnings)
    checks = {
        "gemini_openapi": _check_gemini_openapi,
        "ollama": lambda o: set(o) <= {"type", "$defs", "items", "required", "properties"},
        "openai_strict": lambda o: _check_strict(convert_schema(profile, ToolDefinition("t", "", schema))),
    }
    assert checks.get(profile, lambda o: True)(out)


def _objects(node):
    """スキーマの中の部分スキーマをすべて列挙する (プロパティ名の辞書や enum などの値そのものは除く)。"""
    if isinstance(node, list):
        for value in node:
            yield from _objects(value)
        return
    if not isinstance(node, dict):
        return
    yield node
    for key, value in node.items():
        if key in ("properties", "$defs", "definitions", "patternProperties") and isinstance(value, dict):
            yield from _objects(list(value.values()))
        elif key not in ("enum", "const", "default", "examples", "required", "propertyOrdering"):
            yield from _objects(value)


def _check_gemini_openapi(out):
    """OpenAPI 形: SDK の Schema に通り、Developer API が拒む additionalProperties と $ref を含まない。"""
    genai_types = pytest.importorskip("google.genai.types")
    genai_types.Schema.model_validate(out)
    return not any("additionalProperties" in d or "$ref" in d for d in _objects(out))


def _check_strict(converted):
    """strict が付くなら、どの object も閉じていて、すべてのプロパティが required にある。"""
    if not converted.strict:
        return any("strict mode disabled" in w for w in converted.warnings)
    for node in _objects(converted.schema):
        if node.get("type") == "object" or (isinstance(node.get("type"), list) and "object" in node["type"]):
            if node.get("additionalProperties") is not False:
                return False
            if set(node.get("required", [])) != set(node.get("properties", {})):
                return False
        if "oneOf" in node or "default" in node:
            return False
    return True


@pytest.mark.parametrize(
    ("schema", "keyword", "where"),
    [
        (
            {"properties": {"x": {"type": "string", "pattern": "(a)\\1"}}},
            "'pattern'",
            "parameters.properties.x.pattern",
        ),
        (
            {"properties": {"x": {"type": "array", "items": {"type": "string", "pattern": "a(?=b)"}}}},
            "'pattern'",
            "parameters.properties.x.items.pattern",
        ),
        ({"patternProperties": {"(?<=a)b": {"type": "string"}}}, "'patternProperties'", "parameters.patternProperties"),
    ],
)
def test_patterns_re2_cannot_compile_are_refused_naming_tool_and_keyword(schema, keyword, where):
    """RE2 が受け付けない pattern (後方参照、先読み、後読み) は正規化で断る。ツール名・キーワード・場所を挙げる。"""
    with pytest.raises(ToolDefinitionError) as info:
        normalize_tools([{"name": "hostile_tool", "parameters": {"type": "object", **schema}}])
    message = str(info.value)
    assert "hostile_tool" in message and keyword in message and where in message and "RE2" in message


def test_values_named_pattern_inside_data_keywords_are_not_patterns():
    """``enum`` や ``default`` の中の "pattern" はデータなので調べない。プロパティ名 "pattern" も受け付ける。"""
    tools = normalize_tools(
        [
            {
                "name": "fine",
                "parameters": {
                    "type": "object",
                    "properties": {"pattern": {"type": "string", "pattern": "^[a-z]+$"}},
                    "default": {"pattern": "(a)\\1"},
                },
            }
        ]
    )
    assert tools[0].parameters["properties"]["pattern"]["pattern"] == "^[a-z]+$"
