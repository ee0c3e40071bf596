"""Gemini クライアント: 要求 (URL、ヘッダ、contents、関数の結果、toolConfig、generationConfig、思考) を偽サーバーが受け取った形で確かめる。"""

import json

import pytest

from llm_router.core.schemas.common import ImagePart, Message, TextPart, ToolCall, ToolChoice
from tests.clients.gemini_helpers import CLOCK, KEY, MODEL, WEATHER, client, request
from tests.fakes.gemini_fake import GeminiFake, function_call_part, sign, text_part, thought_part, validate_request


@pytest.fixture
def fake():
    """台本モードの偽サーバー。"""
    with GeminiFake() as f:
        yield f


def _body(fake, req, **client_overrides):
    """1 回ストリーミングで送り、偽サーバーが受け取った本文を返す。"""
    fake.text("ok")
    list(client(fake, **client_overrides).chat_stream(req))
    return fake.bodies()[-1]


def test_url_header_and_basic_body(fake):
    """URL は /v1beta/models/M:streamGenerateContent?alt=sse、キーは x-goog-api-key だけ、system は systemInstruction。"""
    body = _body(fake, request("やあ", temperature=0.4, max_tokens=99))
    sent = fake.requests[0]
    assert sent.path == f"/v1beta/models/{MODEL}:streamGenerateContent" and sent.query == {"alt": ["sse"]}
    assert sent.headers["x-goog-api-key"] == KEY and KEY not in sent.path
    assert body == {
        "contents": [{"role": "user", "parts": [{"text": "やあ"}]}],
        "systemInstruction": {"parts": [{"text": "あなたは助手です。"}]},
        "generationConfig": {"maxOutputTokens": 99, "temperature": 0.4},
    }
    assert validate_request(body, thinking=False) is None


def test_default_max_output_tokens_from_config(fake):
    """maxOutputTokens の既定値は設定の default_max_tokens。"""
    assert _body(fake, request())["generationConfig"] == {"maxOutputTokens": 2048}


def test_tools_use_parameters_json_schema_by_default(fake):
    """既定 (schema_mode: json_schema) は parametersJsonSchema。引数の無い関数はスキーマを省く。"""
    body = _body(fake, request(tools=[WEATHER, CLOCK]))
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "都市の天気を調べる",
                    "parametersJsonSchema": WEATHER.parameters,
                },
                {"name": "current_time", "description": "現在時刻"},
            ]
        }
    ]


def test_openapi_schema_mode_uses_parameters(fake):
    """schema_mode: openapi では旧来の parameters を使う (parametersJsonSchema とは排他)。"""
    declaration = _body(fake, request(tools=[WEATHER]), schema_mode="openapi")["tools"][0]["functionDeclarations"][0]
    assert "parameters" in declaration and "parametersJsonSchema" not in declaration


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        (ToolChoice("auto"), {"functionCallingConfig": {"mode": "AUTO"}}),
        (ToolChoice("none"), {"functionCallingConfig": {"mode": "NONE"}}),
        (ToolChoice("required"), {"functionCallingConfig": {"mode": "ANY"}}),
        (
            ToolChoice("tool", "get_weather"),
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}},
        ),
        (None, None),
    ],
)
def test_tool_config_table(fake, choice, expected):
    """toolConfig の対応表。"""
    assert _body(fake, request(tools=[WEATHER], tool_choice=choice)).get("toolConfig") == expected


def test_round_trip_without_ids_maps_results_by_position_and_name(fake):
    """ID の無い呼び出し: 2 回目の本文は model の番をそのまま、結果は呼び出しの順に functionResponse (ID なし) で。"""
    received = [
        text_part("調べます。"),
        function_call_part("get_weather", {"city": "東京"}),
        function_call_part("get_weather", {"city": "大阪"}),
    ]
    fake.stream(received, pieces=1)
    c = client(fake)
    first = request("東京と大阪は?", tools=[WEATHER])
    end = list(c.chat_stream(first))[-1]
    tokyo, osaka = end.message.tool_calls
    history = [
        *first.messages,
        end.message,
        # 結果が呼び出しと逆の順に届いても、呼び出しの順に並べ直す
        Message.tool(osaka.id, "get_weather", "雨"),
        Message.tool(tokyo.id, "get_weather", {"weather": "晴れ"}),
        Message.user("ありがとう"),
    ]
    fake.text("どういたしまして")
    list(c.chat_stream(request(messages=history, tools=[WEATHER])))
    body = fake.bodies()[1]
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert body["contents"][1]["parts"] == received
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"output": {"weather": "晴れ"}}}},
        {"functionResponse": {"name": "get_weather", "response": {"output": "雨"}}},
        {"text": "ありがとう"},
    ]
    assert validate_request(body, thinking=False) is None


def test_round_trip_with_ids_sends_them_back_and_errors_as_error(fake):
    """ID のある呼び出し: 結果に同じ ID を付ける。失敗は {"error": 文言}。"""
    fake.stream([function_call_part("get_weather", {"city": "東京"}, "fc_1")])
    c = client(fake)
    first = request("東京?", tools=[WEATHER])
    end = list(c.chat_stream(first))[-1]
    assert end.message.tool_calls[0].id == "fc_1"
    history = [*first.messages, end.message, Message.tool("fc_1", "get_weather", "timeout", is_error=True)]
    body = _body(fake, request(messages=history, tools=[WEATHER]))
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "id": "fc_1", "response": {"error": "timeout"}}}
    ]


def test_history_from_another_provider_becomes_plain_parts(fake):
    """他のプロバイダの assistant は text + functionCall (こちらの ID は送らない) にし、結果は名前で。"""
    other = Message.assistant("見ます", [ToolCall("toolu_x", "get_weather", {"city": "那覇"})])
    history = [Message.user("天気"), other, Message.tool("toolu_x", "get_weather", "曇り")]
    body = _body(fake, request(messages=history, tools=[WEATHER]))
    assert body["contents"][1] == {
        "role": "model",
        "parts": [{"text": "見ます"}, {"functionCall": {"name": "get_weather", "args": {"city": "那覇"}}}],
    }
    assert body["contents"][2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"output": "曇り"}}}
    ]


def test_foreign_calls_get_the_documented_dummy_signature_on_gemini_3(fake):
    """署名を検証する Gemini 3 系 (段階型の思考) へは、他のモデルの関数呼び出しの最初にダミーの署名を付ける。"""
    other = Message.assistant("", [ToolCall("a", "get_weather", {"city": "那覇"}), ToolCall("b", "current_time", {})])
    history = [
        Message.user("天気"),
        other,
        Message.tool("a", "get_weather", "曇り"),
        Message.tool("b", "current_time", "9時"),
    ]
    parts = _body(fake, request(model="gemini-test-3-pro", messages=history, tools=[WEATHER, CLOCK]))["contents"][1][
        "parts"
    ]
    assert parts[0]["thoughtSignature"] == "skip_thought_signature_validator"
    assert "thoughtSignature" not in parts[1]
    parts_25 = _body(fake, request(messages=history, tools=[WEATHER, CLOCK]))["contents"][1]["parts"]
    assert all("thoughtSignature" not in p for p in parts_25)


def test_consecutive_roles_merge_and_images_map(fake):
    """同じ役割の連続は 1 つの番にまとめ、画像は inlineData / fileData にする。"""
    messages = [
        Message.user("一つ目"),
        Message.user(
            [TextPart("二つ目"), ImagePart(data="AAAA", mime_type="image/jpeg"), ImagePart(url="gs://b/x.png")]
        ),
        Message.assistant("答え"),
        Message.assistant(""),
    ]
    body = _body(fake, request(messages=messages))
    assert body["contents"] == [
        {
            "role": "user",
            "parts": [
                {"text": "一つ目"},
                {"text": "二つ目"},
                {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}},
                {"fileData": {"mimeType": "image/png", "fileUri": "gs://b/x.png"}},
            ],
        },
        {"role": "model", "parts": [{"text": "答え"}]},
    ]
    assert "systemInstruction" not in body


def test_thinking_budget_and_level_styles(fake):
    """2.5 系は thinkingBudget (設定の予算)、3 系は thinkingLevel。どちらも includeThoughts。"""
    budget = _body(fake, request(reasoning="medium"))["generationConfig"]["thinkingConfig"]
    assert budget == {"thinkingBudget": 8192, "includeThoughts": True}
    level = _body(fake, request(model="gemini-test-3-pro", reasoning="high"))["generationConfig"]["thinkingConfig"]
    assert level == {"thinkingLevel": "high", "includeThoughts": True}


def test_thinking_off_or_unsupported_sends_no_thinking_config(fake):
    """reasoning=off、または推論できないモデルでは thinkingConfig を送らない。警告は推論できないモデルにだけ。"""
    assert "thinkingConfig" not in _body(fake, request(reasoning="off"))["generationConfig"]
    assert "thinkingConfig" not in _body(fake, request(model="gemini-plain", reasoning="low"))["generationConfig"]
    c = client(fake)
    assert c.reasoning_warning(MODEL, "low") is None and c.reasoning_warning("gemini-plain", "off") is None
    assert "gemini-plain" in c.reasoning_warning("gemini-plain", "low")


def test_thought_signature_round_trip_is_byte_for_byte(fake):
    """思考つきの往復: 2 回目の model の番は、受け取ったパーツ (thoughtSignature つき) と JSON として同一、同じ順。"""
    call = function_call_part("get_weather", {"city": "東京"}, "fc_s")
    call["thoughtSignature"] = sign({"functionCall": call["functionCall"]})
    sent = fake.stream([thought_part("天気を調べよう。"), call, text_part("", None)], pieces=2)
    c = client(fake)
    first = request("東京?", tools=[WEATHER], reasoning="low")
    end = list(c.chat_stream(first))[-1]
    history = [*first.messages, end.message, Message.tool("fc_s", "get_weather", "晴れ")]
    fake.text("晴れです")
    list(c.chat_stream(request(messages=history, tools=[WEATHER], reasoning="low")))
    raw = fake.requests[1].body.decode()
    model_turn = json.loads(raw)["contents"][1]["parts"]
    received = [chunk["candidates"][0]["content"]["parts"][0] for chunk in sent]
    assert json.dumps(model_turn, sort_keys=True, ensure_ascii=False) == json.dumps(
        received, sort_keys=True, ensure_ascii=False
    )
    assert call["thoughtSignature"] in raw
    assert validate_request(json.loads(raw), thinking=True) is None


def test_rule_fake_accepts_a_full_round_trip_with_thinking():
    """規則モードの偽サーバー (署名と結果の数を検証する) を相手に、思考つきの関数の往復が通る。"""
    for with_ids in (False, True):
        with GeminiFake(rule_based=True, api_key=KEY, with_ids=with_ids) as rules:
            c = client(rules)
            first = request("get_weather と current_time をお願い", tools=[WEATHER, CLOCK], reasoning="low")
            end = list(c.chat_stream(first))[-1]
            assert [t.name for t in end.message.tool_calls] == ["get_weather", "current_time"]
            results = [Message.tool(t.id, t.name, f"{t.name} の結果") for t in end.message.tool_calls]
            follow = request(messages=[*first.messages, end.message, *results], tools=[WEATHER, CLOCK], reasoning="low")
            answer = list(c.chat_stream(follow))[-1]
            assert answer.message.content == "ツールの結果: get_weather の結果; current_time の結果"


def test_extra_fields_are_added_to_the_body(fake):
    """ChatRequest.extra は本文にそのまま加わる。"""
    extra = {"safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}
    assert _body(fake, request(extra=extra))["safetySettings"] == extra["safetySettings"]
