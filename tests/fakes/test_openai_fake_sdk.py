"""偽の OpenAI が本物の形を話すことを、公式 SDK (openai-python) に解析させて確かめる。

SDK はテストの中だけで使う独立した本物のクライアント (製品コードは SDK を使わない)。
"""

import json

import openai
import pytest

from tests.fakes.openai_fake import OpenAIFake, embedding_vector, usage_body

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "天気",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "add",
            "description": "足し算",
            "parameters": {"type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}},
        },
    },
]
MESSAGES = [{"role": "user", "content": "こんにちは"}]


@pytest.fixture(scope="module")
def server():
    """モジュールで共有する偽の OpenAI。"""
    with OpenAIFake() as f:
        yield f


@pytest.fixture
def fake(server):
    """テストごとに台本と記録を空にした偽の OpenAI。"""
    server.reset()
    yield server


@pytest.fixture
def sdk(fake):
    """偽サーバーに向けた公式 SDK (再試行なし)。"""
    client = openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0)
    yield client
    client.close()


def test_sdk_parses_a_streamed_text_with_usage(fake, sdk):
    """SDK がテキストの差分と最後の使用量チャンクを解析する。"""
    fake.add_text_turn("こんにちは、世界", chunk_size=3, usage=usage_body(12, 5, 2))
    stream = sdk.chat.completions.create(
        model="gpt-4.1-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "こんにちは、世界"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.prompt_tokens == 12
    assert chunks[-1].usage.completion_tokens_details.reasoning_tokens == 2
    assert all(c.object == "chat.completion.chunk" for c in chunks)


def test_sdk_stream_helper_assembles_interleaved_parallel_tool_calls(fake, sdk):
    """SDK 自身の組み立て器 (``chat.completions.stream``) が交互に届く並列の呼び出しを組み立てる。"""
    fake.add_tool_call_turn([("get_weather", {"city": "東京"}), ("add", {"a": 1, "b": 2})], arg_chunk_size=3)
    with sdk.chat.completions.stream(model="gpt-4.1-mini", messages=MESSAGES, tools=TOOLS) as stream:
        completion = stream.get_final_completion()
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [c.function.name for c in calls] == ["get_weather", "add"]
    assert json.loads(calls[0].function.arguments) == {"city": "東京"}
    assert json.loads(calls[1].function.arguments) == {"a": 1, "b": 2}
    assert all(c.id.startswith("call_") and c.type == "function" for c in calls)


def test_sdk_sees_interleaved_deltas_by_index(fake, sdk):
    """生のチャンクでは index ごとの差分が交互に届き、最初の差分だけが id と name を持つ。"""
    fake.add_tool_call_turn([("get_weather", {"city": "大阪"}), ("add", {"a": 3, "b": 4})], arg_chunk_size=4)
    deltas = [
        d
        for c in sdk.chat.completions.create(model="m", messages=MESSAGES, tools=TOOLS, stream=True)
        if c.choices
        for d in (c.choices[0].delta.tool_calls or [])
    ]
    assert [d.index for d in deltas[:4]] == [0, 1, 0, 1]
    assert deltas[0].id and deltas[0].function.name == "get_weather" and deltas[0].function.arguments == ""
    assert deltas[2].id is None and deltas[2].function.name is None


def test_sdk_parses_a_non_streaming_completion(fake, sdk):
    """非ストリーミングの ``chat.completion`` (テキストとツール呼び出し)。"""
    fake.add_tool_call_turn([("add", {"a": 1, "b": 2})], text="計算します")
    completion = sdk.chat.completions.create(model="gpt-4.1-mini", messages=MESSAGES, tools=TOOLS)
    message = completion.choices[0].message
    assert message.content == "計算します" and message.tool_calls[0].function.name == "add"
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, openai.BadRequestError),
        (401, openai.AuthenticationError),
        (403, openai.PermissionDeniedError),
        (404, openai.NotFoundError),
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
    ],
)
def test_sdk_raises_its_error_classes_with_status_and_body(fake, sdk, status, cls):
    """エラー応答を SDK が自分のエラー型にし、status・message・code を読む。"""
    fake.add_error(status, f"fake says {status}", code="some_code")
    with pytest.raises(cls) as info:
        sdk.chat.completions.create(model="m", messages=MESSAGES)
    assert info.value.status_code == status
    assert info.value.code == "some_code" and "fake says" in info.value.message


def test_sdk_honours_retry_after_ms_from_the_fake(fake):
    """SDK が偽の 429 の ``retry-after-ms`` に従って再試行し、2 回目で成功する。"""
    fake.add_error(429, "Rate limit reached", code="rate_limit_exceeded", headers={"retry-after-ms": "10"})
    fake.add_text_turn("ok")
    with openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=1) as client:
        completion = client.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.choices[0].message.content == "ok" and len(fake.requests) == 2


def test_sdk_raises_api_error_for_an_error_frame_inside_the_stream(fake, sdk):
    """HTTP 200 の後の ``data: {"error": ...}`` を SDK が APIError にする。"""
    fake.add_stream_error("The server had an error while processing your request.", after_text="途中")
    with pytest.raises(openai.APIError, match="The server had an error"):
        list(sdk.chat.completions.create(model="m", messages=MESSAGES, stream=True))


def test_sdk_decodes_embeddings_in_base64_and_float(fake, sdk):
    """SDK の既定 (base64) でも float でも、同じベクトルを得る。"""
    default = sdk.embeddings.create(model="text-embedding-3-small", input=["りんご", "みかん"])
    as_float = sdk.embeddings.create(model="text-embedding-3-small", input=["りんご"], encoding_format="float")
    assert fake.requests[0].json()["encoding_format"] == "base64"
    assert [d.index for d in default.data] == [0, 1]
    assert default.data[1].embedding == pytest.approx(embedding_vector("みかん", 8), rel=1e-6)
    assert as_float.data[0].embedding == pytest.approx(embedding_vector("りんご", 8))
    assert default.usage.prompt_tokens > 0


def test_sdk_against_rule_mode(fake):
    """規則モード: ツール名を含む発話はそのツールの呼び出し、ツールの結果の後はそれを引用するテキスト。"""
    fake.rules = True
    try:
        with openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0) as client:
            first = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": 'get_weather {"city": "京都"}'}], tools=TOOLS
            )
            call = first.choices[0].message.tool_calls[0]
            assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "京都"}
            follow = [
                {"role": "user", "content": "get_weather"},
                first.choices[0].message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": "晴れ"},
            ]
            second = client.chat.completions.create(model="m", messages=follow, tools=TOOLS)
            assert "晴れ" in second.choices[0].message.content
            plain = client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
            assert "こんにちは" in "".join(c.choices[0].delta.content or "" for c in plain if c.choices)
    finally:
        fake.rules = False


@pytest.mark.parametrize(
    ("marker", "cls"),
    [
        ("[fail:500]", openai.InternalServerError),
        ("[fail:429]", openai.RateLimitError),
        ("[stream-error]", openai.APIError),
    ],
)
def test_rule_mode_markers_give_errors_the_sdk_recognises(fake, marker, cls):
    """規則モードの印 ``[fail:NNN]`` / ``[stream-error]`` は SDK が認めるエラーになる。"""
    fake.rules = True
    try:
        with openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0) as client:
            with pytest.raises(cls):
                list(
                    client.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": marker}], stream=True
                    )
                )
    finally:
        fake.rules = False


def test_rule_mode_stall_marker_holds_the_stream_open_until_the_client_leaves(fake):
    """``[stall]`` は数フレーム後に止まり、クライアントが閉じると偽サーバーが切断を記録する。"""
    fake.rules = True
    try:
        with openai.OpenAI(base_url=fake.base_url, api_key="sk-test", max_retries=0) as client:
            stream = client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "[stall]"}], stream=True
            )
            first = next(iter(stream))
            assert first.object == "chat.completion.chunk"
            stream.close()
        assert fake.server.client_disconnected.wait(5)
    finally:
        fake.rules = False
