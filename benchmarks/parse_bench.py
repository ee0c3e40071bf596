"""ストリームの解析のベンチマーク: 同じ SSE のバイト列を、llm_router のクライアントと公式 SDK に読ませる。

``uv run python benchmarks/parse_bench.py [--quick] [--json PATH]``

ネットワークは使わない。バイト列はループバックの偽サーバー (``tests/fakes``) と同じ関数で作る
(公式 SDK がそれを正しく読めることは ``tests/fakes/test_*_fake_sdk.py`` で確かめてある)。

比べる 3 つの段:
1. SSE の復号だけ: ``SSEDecoder.feed`` 対 SDK の ``client._make_sse_decoder().iter_bytes``。
2. 型つきのチャンクまで: llm_router の ``chat_stream`` (SSE → JSON → 共通のチャンク → ``StreamEnd``。
   組み立ては常に含む) 対 SDK の ``Stream`` (SSE → JSON → SDK のモデル。組み立てなし)。
3. 組み立てまで: 同じ ``chat_stream`` 対 SDK のストリームの助け (OpenAI ``ChatCompletionStream``、
   Anthropic ``MessageStream``: 全文・ツール呼び出しの引数を組み立てる)。

バイト列の区切りは 2 通り: 1 フレームずつ (生のストリーミングで 1 トークンずつ届くとき) と 64 KiB ずつ。
llm_router 側は ``request`` だけを差し替えたクライアント (応答の ``raw.read1`` が区切りを 1 つずつ返す)、
SDK 側は同じ区切りを返す反復子を本文にした ``httpx2.Response`` を使う。各組み合わせの中央値を比べる。
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import openai
from _common import command_line, machine, report, table
from anthropic.lib.streaming import MessageStream
from anthropic.types import RawMessageStreamEvent
from openai.lib.streaming.chat import ChatCompletionStream
from openai.types.chat import ChatCompletionChunk

from llm_router.config.settings import load_settings
from llm_router.core.clients.anthropic_client import AnthropicClient
from llm_router.core.clients.openai_client import OpenAIClient
from llm_router.core.clients.stream_readers import SSEDecoder
from llm_router.core.schemas.common import ChatRequest, Message, StreamEnd
from tests.fakes.anthropic_fake import message_events, text_block, tool_use_block
from tests.fakes.openai_fake import text_response, tool_call_response
from tests.fakes.server import RecordedRequest

BULK = 65536


# ---------------------------------------------------------------- バイト列


def _openai_request() -> RecordedRequest:
    """ストリーミングの Chat Completions の要求 (include_usage つき)。"""
    body = {"model": "gpt-4.1-mini", "stream": True, "stream_options": {"include_usage": True}, "messages": []}
    return RecordedRequest("POST", "/v1/chat/completions", {}, {}, json.dumps(body).encode())


def openai_text_frames(deltas: int) -> list[bytes]:
    """OpenAI: ``deltas`` 個の本文の差分 (1 つ 3 文字)。"""
    return text_response(_openai_request(), "あいう" * deltas, chunk_size=3).frames


def openai_tool_frames(arg_chunks: int) -> list[bytes]:
    """OpenAI: 2 つの並列のツール呼び出し。引数は合わせて約 ``arg_chunks`` 個の断片で、交互に届く。"""
    args = {"query": "東京 天気 " * (arg_chunks * 3 // 2 // 14 + 1), "limit": 10}
    return tool_call_response(_openai_request(), [("search", args), ("lookup", args)], arg_chunk_size=6).frames


def anthropic_text_frames(deltas: int) -> list[bytes]:
    """Anthropic: ``deltas`` 個の ``text_delta``。"""
    return message_events([text_block("あいう" * deltas)], pieces=deltas)


def anthropic_tool_frames(arg_chunks: int) -> list[bytes]:
    """Anthropic: 1 つのツール呼び出しの ``input_json_delta`` が約 ``arg_chunks`` 個。"""
    args = {"query": "東京 天気 " * (arg_chunks // 2), "limit": 10}
    return message_events([tool_use_block("search", args)], pieces=arg_chunks)


def bulk(frames: list[bytes]) -> list[bytes]:
    """フレームをつなげて 64 KiB ずつに区切り直す。"""
    data = b"".join(frames)
    return [data[i : i + BULK] for i in range(0, len(data), BULK)]


# ---------------------------------------------------------------- llm_router 側


class _PieceReader:
    """``read1`` が区切りを 1 つずつ返す、応答の ``raw`` の代わり。"""

    def __init__(self, pieces: tuple[bytes, ...]) -> None:
        """区切りの列を受け取る。"""
        self._pieces = iter(pieces)

    def read1(self, size: int = -1) -> bytes:
        """次の区切り (終わりなら空)。"""
        return next(self._pieces, b"")

    def close(self) -> None:
        """何もしない。"""


def _replay_response(pieces: tuple[bytes, ...]) -> Any:
    """区切りを返す ``requests.Response``。"""
    import requests

    response = requests.Response()
    response.status_code = 200
    response.raw = _PieceReader(pieces)
    return response


class ReplayOpenAI(OpenAIClient):
    """HTTP の送信だけを差し替え、記録したバイト列を返す OpenAI クライアント。"""

    pieces: tuple[bytes, ...] = ()

    def request(self, *args: Any, **kwargs: Any) -> Any:
        """送らずに、記録したバイト列の応答を返す。"""
        return _replay_response(self.pieces)


class ReplayAnthropic(AnthropicClient):
    """HTTP の送信だけを差し替え、記録したバイト列を返す Anthropic クライアント。"""

    pieces: tuple[bytes, ...] = ()

    def request(self, *args: Any, **kwargs: Any) -> Any:
        """送らずに、記録したバイト列の応答を返す。"""
        return _replay_response(self.pieces)


def ours_decode(pieces: list[bytes]) -> int:
    """SSE の復号だけ。イベント数を返す。"""
    decoder = SSEDecoder()
    n = 0
    for piece in pieces:
        n += len(decoder.feed(piece))
    return n + len(decoder.flush())


def ours_stream(client: Any, pieces: list[bytes]) -> int:
    """``chat_stream`` を最後まで読む。チャンク数を返す (最後が StreamEnd であることも確かめる)。"""
    client.pieces = tuple(pieces)
    request = ChatRequest(model="bench-model", messages=[Message.user("x")])
    chunks = list(client.chat_stream(request))
    assert isinstance(chunks[-1], StreamEnd)
    return len(chunks)


# ---------------------------------------------------------------- SDK 側


def _httpx_response(pieces: list[bytes], url: str) -> httpx2.Response:
    """区切りを返す反復子を本文にした応答 (SDK はこれを ``iter_bytes`` で読む)。"""
    return httpx2.Response(
        200,
        headers={"content-type": "text/event-stream"},
        content=iter(pieces),
        request=httpx2.Request("POST", url),
    )


def sdk_decode(client: Any, pieces: list[bytes]) -> int:
    """SDK の SSE 復号だけ。"""
    return sum(1 for _ in client._make_sse_decoder().iter_bytes(iter(pieces)))


def sdk_openai_stream(client: openai.OpenAI, pieces: list[bytes]) -> int:
    """OpenAI SDK の ``Stream[ChatCompletionChunk]``。"""
    response = _httpx_response(pieces, "http://127.0.0.1/v1/chat/completions")
    return sum(1 for _ in openai.Stream(cast_to=ChatCompletionChunk, response=response, client=client))


def sdk_openai_accumulate(client: openai.OpenAI, pieces: list[bytes]) -> int:
    """OpenAI SDK の ``ChatCompletionStream`` (全文とツール呼び出しを組み立てる)。"""
    response = _httpx_response(pieces, "http://127.0.0.1/v1/chat/completions")
    raw = openai.Stream(cast_to=ChatCompletionChunk, response=response, client=client)
    stream = ChatCompletionStream(raw_stream=raw, response_format=openai.omit, input_tools=openai.omit)
    n = sum(1 for _ in stream)
    stream.get_final_completion()
    return n


def sdk_anthropic_stream(client: anthropic.Anthropic, pieces: list[bytes]) -> int:
    """Anthropic SDK の ``Stream[RawMessageStreamEvent]``。"""
    response = _httpx_response(pieces, "http://127.0.0.1/v1/messages")
    return sum(1 for _ in anthropic.Stream(cast_to=RawMessageStreamEvent, response=response, client=client))


def sdk_anthropic_accumulate(client: anthropic.Anthropic, pieces: list[bytes]) -> int:
    """Anthropic SDK の ``MessageStream`` (ブロックとツールの入力を組み立てる)。"""
    response = _httpx_response(pieces, "http://127.0.0.1/v1/messages")
    raw = anthropic.Stream(cast_to=RawMessageStreamEvent, response=response, client=client)
    stream = MessageStream(raw, output_format=anthropic.NOT_GIVEN)
    n = sum(1 for _ in stream)
    stream.get_final_message()
    return n


# ---------------------------------------------------------------- 計測


def timed(func: Callable[[], int], repeats: int) -> float:
    """``func`` を ``repeats`` 回呼び、1 回の秒数の中央値を返す (最初の 1 回は暖機で数えない)。"""
    func()
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        func()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def scenarios(size: int) -> Iterator[tuple[str, str, list[bytes]]]:
    """(プロバイダ, 名前, フレーム) の組。"""
    yield "openai", f"OpenAI テキスト {size:,} 差分", openai_text_frames(size)
    yield "openai", f"OpenAI ツール 2 並列 ~{size // 2:,} 断片", openai_tool_frames(size // 2)
    yield "anthropic", f"Anthropic テキスト {size:,} 差分", anthropic_text_frames(size)
    yield "anthropic", f"Anthropic ツール ~{size // 2:,} 断片", anthropic_tool_frames(size // 2)


def main() -> None:
    """引数を読み、計測して Markdown の表を出す。"""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="小さな本文で短く")
    parser.add_argument("--json", help="結果を JSON でも保存するパス")
    args = parser.parse_args()
    size, repeats = (1000, 5) if args.quick else (5000, 9)
    info = machine()
    config = load_settings([], env_file=None, environ={}).config.providers
    ours_clients = {
        "openai": ReplayOpenAI(config.openai, "sk-bench"),
        "anthropic": ReplayAnthropic(config.anthropic, "k"),
    }
    sdk_clients = {
        "openai": openai.OpenAI(api_key="sk-bench", base_url="http://127.0.0.1:9/v1", max_retries=0),
        "anthropic": anthropic.Anthropic(api_key="k", base_url="http://127.0.0.1:9", max_retries=0),
    }
    sdk_stream = {"openai": sdk_openai_stream, "anthropic": sdk_anthropic_stream}
    sdk_accumulate = {"openai": sdk_openai_accumulate, "anthropic": sdk_anthropic_accumulate}
    rows = []
    results = []
    for provider, name, frames in scenarios(size):
        ours, sdk = ours_clients[provider], sdk_clients[provider]
        for split_name, pieces in (("1 フレームずつ", frames), ("64 KiB ずつ", bulk(frames))):
            megabytes = sum(len(p) for p in pieces) / 1e6
            t_ours_decode = timed(lambda p=pieces: ours_decode(p), repeats)
            t_sdk_decode = timed(lambda p=pieces, c=sdk: sdk_decode(c, p), repeats)
            t_ours = timed(lambda p=pieces, c=ours: ours_stream(c, p), repeats)
            t_sdk_stream = timed(lambda p=pieces, c=sdk, f=sdk_stream[provider]: f(c, p), repeats)
            t_sdk_acc = timed(lambda p=pieces, c=sdk, f=sdk_accumulate[provider]: f(c, p), repeats)
            results.append(
                {
                    "scenario": name,
                    "split": split_name,
                    "frames": len(frames),
                    "megabytes": megabytes,
                    "ours_decode_s": t_ours_decode,
                    "sdk_decode_s": t_sdk_decode,
                    "ours_stream_s": t_ours,
                    "sdk_stream_s": t_sdk_stream,
                    "sdk_accumulate_s": t_sdk_acc,
                }
            )
            rows.append(
                (
                    name,
                    split_name,
                    len(frames) / t_ours / 1000,
                    t_sdk_decode / t_ours_decode,
                    t_sdk_stream / t_ours,
                    t_sdk_acc / t_ours,
                )
            )
    body = table(
        [
            "本文",
            "区切り",
            "llm_router 千フレーム/秒",
            "SDK/ours: SSE 復号",
            "SDK Stream / ours chat_stream",
            "SDK 組み立て / ours chat_stream",
        ],
        rows,
    )
    body += "\n\n比は「SDK の時間 / llm_router の時間」(1 より大きければ llm_router が速い)。"
    command = command_line()
    versions = {"openai": openai.__version__, "anthropic": anthropic.__version__, "httpx2": httpx2.__version__}
    body += f" SDK: openai {versions['openai']}, anthropic {versions['anthropic']} (httpx2 {versions['httpx2']})。"
    report(
        "ストリームの解析 (SDK との比較)", command, info, body, {"versions": versions, "results": results}, args.json
    )


if __name__ == "__main__":
    main()
