"""Gemini の偽サーバーが本物のプロトコルを話すことを、公式 SDK (google-genai) を向けて確かめる。

SDK は製品コードでは使わない (テストの中の独立した本物のクライアントとしてだけ使う)。
"""

import base64

import pytest
from google import genai
from google.genai import errors, types

from tests.fakes.gemini_fake import (
    GeminiFake,
    api_key_invalid_body,
    camel_case,
    error_body,
    function_call_part,
    rate_limited_body,
    text_part,
    thought_part,
)

KEY = "AIza-test-key"
MODEL = "gemini-test-2"
WEATHER = types.FunctionDeclaration(
    name="get_weather",
    description="天気を調べる",
    parameters_json_schema={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


@pytest.fixture
def fake():
    """台本モードの偽サーバー。"""
    with GeminiFake() as f:
        yield f


@pytest.fixture
def client(fake):
    """偽サーバーに向けた公式 SDK (テストの間は参照を保つ: 捨てると SDK が接続を閉じる)。"""
    return _sdk(fake)


def _sdk(fake, key=KEY):
    """偽サーバーに向けた公式 SDK。"""
    return genai.Client(api_key=key, http_options=types.HttpOptions(base_url=fake.base_url, api_version="v1beta"))


def _tools_config(**kwargs):
    """関数宣言つきの設定 (自動の関数呼び出しはしない)。"""
    return types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER])],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        **kwargs,
    )


def test_sdk_streams_text_chunks_and_usage(fake, client):
    """SDK の generate_content_stream がチャンクごとのテキストと累計の使用量と終了理由を読む。"""
    fake.text("東京は晴れです。", pieces=3, prompt_tokens=9)
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="天気は?"))
    assert "".join(c.text for c in chunks) == "東京は晴れです。" and len(chunks) == 3
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.prompt_token_count == 9
    request = fake.requests[0]
    assert request.path == f"/v1beta/models/{MODEL}:streamGenerateContent" and request.query == {"alt": ["sse"]}
    assert request.headers["x-goog-api-key"] == KEY


def test_sdk_reads_whole_function_calls_with_and_without_ids(fake, client):
    """関数呼び出しは一度に届く: ID のあるものと無いものを SDK が読む。"""
    fake.stream(
        [
            function_call_part("get_weather", {"city": "東京"}, "fc_1"),
            function_call_part("get_weather", {"city": "大阪"}),
        ]
    )
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="天気", config=_tools_config()))
    calls = [call for c in chunks for call in (c.function_calls or [])]
    assert [(c.id, c.name, c.args) for c in calls] == [
        ("fc_1", "get_weather", {"city": "東京"}),
        (None, "get_weather", {"city": "大阪"}),
    ]


def test_sdk_reads_thought_parts_and_signatures(fake, client):
    """思考の要約 (thought: true) と thoughtSignature (base64 → bytes) を SDK が読む。"""
    signature = base64.b64encode(b"opaque-signature").decode()
    fake.stream(
        [thought_part("考え中"), function_call_part("get_weather", {"city": "京都"}, signature=signature)], pieces=1
    )
    config = _tools_config(thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024))
    chunks = list(client.models.generate_content_stream(model=MODEL, contents="天気", config=config))
    parts = [p for c in chunks for p in c.candidates[0].content.parts]
    assert parts[0].thought is True and parts[0].text == "考え中"
    assert parts[1].function_call.name == "get_weather" and parts[1].thought_signature == b"opaque-signature"
    assert chunks[-1].usage_metadata.thoughts_token_count > 0
    # SDK 3.x は thinkingConfig の中身を snake_case で送る (本物の API は proto3 JSON としてどちらも受け付ける)
    sent = camel_case(fake.bodies()[0])["generationConfig"]["thinkingConfig"]
    assert sent == {"includeThoughts": True, "thinkingBudget": 1024}


def test_sdk_parses_non_streaming_response(fake, client):
    """非ストリーミング (generateContent) の応答を SDK が読む。"""
    fake.message([text_part("はい、"), text_part("どうぞ")])
    response = client.models.generate_content(model=MODEL, contents="やあ")
    assert response.text == "はい、どうぞ"
    assert fake.requests[0].path == f"/v1beta/models/{MODEL}:generateContent"


@pytest.mark.parametrize(
    ("body", "code", "sdk_error"),
    [
        (api_key_invalid_body(), 400, errors.ClientError),
        (error_body(404, "NOT_FOUND", "models/gemini-1.5-pro is not found"), 404, errors.ClientError),
        (rate_limited_body("34s"), 429, errors.ClientError),
        (error_body(503, "UNAVAILABLE", "The model is overloaded."), 503, errors.ServerError),
    ],
)
def test_sdk_maps_error_bodies(fake, client, body, code, sdk_error):
    """エラー本文とステータスを SDK が対応する例外にし、status と details を読む。"""
    fake.raw(body, code)
    with pytest.raises(sdk_error) as info:
        client.models.generate_content(model=MODEL, contents="x")
    assert info.value.code == code and info.value.status == body["error"]["status"]
    assert info.value.details["error"]["message"] == body["error"]["message"]


def test_sdk_raises_on_error_chunk_mid_stream(fake, client):
    """ストリームの途中の {"error": ...} チャンクで SDK が例外を投げる。"""
    fake.stream([text_part("途中まで書いた")], error=error_body(500, "INTERNAL", "boom"), error_after=1)
    with pytest.raises(errors.APIError, match="boom"):
        list(client.models.generate_content_stream(model=MODEL, contents="x"))


def test_sdk_embeds_through_batch_embed_contents(fake, client):
    """SDK の embed_content は batchEmbedContents を呼び、偽サーバーの応答を順に読む。"""
    fake.embeddings([[0.1, 0.2], [0.3, 0.4]])
    result = client.models.embed_content(
        model="gemini-embedding-001",
        contents=["一つ目", "二つ目"],
        config=types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT"),
    )
    assert [e.values for e in result.embeddings] == [[0.1, 0.2], [0.3, 0.4]]
    request = fake.requests[0]
    assert request.path == "/v1beta/models/gemini-embedding-001:batchEmbedContents"
    items = request.json()["requests"]
    assert [i["model"] for i in items] == ["models/gemini-embedding-001"] * 2
    assert {i.get("taskType") for i in items} == {"RETRIEVAL_DOCUMENT"}


def test_rules_round_trip_with_thought_signatures_through_the_sdk():
    """規則モード: 関数名を書けば呼ばれ、署名つきのパーツごと結果を返せば、結果を引用して答える。"""
    with GeminiFake(rule_based=True, api_key=KEY, with_ids=True) as rules:
        client = _sdk(rules)
        config = _tools_config(thinking_config=types.ThinkingConfig(include_thoughts=True, thinking_budget=1024))
        user = types.Content(role="user", parts=[types.Part(text="get_weather で東京")])
        first = client.models.generate_content(model=MODEL, contents=[user], config=config)
        call = first.function_calls[0]
        assert call.args == {"city": "東京"} and call.id
        reply = types.Part(
            function_response=types.FunctionResponse(id=call.id, name=call.name, response={"output": "晴れ"})
        )
        history = [user, first.candidates[0].content, types.Content(role="user", parts=[reply])]
        second = client.models.generate_content(model=MODEL, contents=history, config=config)
        assert second.text == "ツールの結果: 晴れ"
        # 署名を落とした model の番は、本物の Gemini 3 と同じく 400
        stripped = types.Content(
            role="model", parts=[p for p in first.candidates[0].content.parts if p.function_call is not None]
        )
        stripped.parts[0].thought_signature = None
        with pytest.raises(errors.ClientError, match="thought_signature"):
            client.models.generate_content(
                model=MODEL, contents=[user, stripped, types.Content(role="user", parts=[reply])], config=config
            )


def test_rules_bad_key_and_retired_model():
    """規則モード: 違うキーは API_KEY_INVALID の 400、提供終了のモデルは 404。"""
    with GeminiFake(rule_based=True, api_key=KEY) as rules:
        client, bad = _sdk(rules), _sdk(rules, key="wrong")
        with pytest.raises(errors.ClientError) as info:
            bad.models.generate_content(model=MODEL, contents="x")
        assert info.value.code == 400 and info.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        with pytest.raises(errors.ClientError) as info:
            client.models.generate_content(model="gemini-1.5-pro", contents="x")
        assert info.value.code == 404


def test_rules_honour_forced_function_calling():
    """規則モード: mode ANY + allowedFunctionNames なら、文に名前が無くてもその関数を呼ぶ。"""
    with GeminiFake(rule_based=True) as rules:
        client = _sdk(rules)
        other = types.FunctionDeclaration(name="current_time", description="時刻")
        config = types.GenerateContentConfig(
            tools=[types.Tool(function_declarations=[WEATHER, other])],
            tool_config=types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(mode="ANY", allowed_function_names=["current_time"])
            ),
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        response = client.models.generate_content(model=MODEL, contents="何か", config=config)
        assert [c.name for c in response.function_calls] == ["current_time"]
