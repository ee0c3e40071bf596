"""OpenAI Chat Completions / Embeddings の偽サーバー (ループバック、本物の HTTP と SSE)。

:class:`tests.fakes.server.FakeServer` の上に、OpenAI と同じ形の応答を作る。形は公式 SDK
(openai-python) に解析させて確かめてある (``tests/fakes/test_openai_fake_sdk.py``)。

台本モード (クライアントのテスト用)::

    with OpenAIFake() as fake:
        fake.add_text_turn("こんにちは", chunk_size=2)
        fake.add_tool_call_turn([("get_weather", {"city": "東京"}), ("add", {"a": 1, "b": 2})])
        fake.add_error(429, "Rate limit reached", code="rate_limit_exceeded", headers={"retry-after": "1"})
        fake.add_stream_error("The server had an error", after_text="途中")
        fake.add_text_turn("長い文", stall_after=2)      # 2 フレーム後に止まる (キャンセル用)
        fake.add_text_turn("長い文", break_after=2)      # 2 フレーム後に切れる (ストリーム破損)
        config.base_url = fake.base_url                  # ``http://127.0.0.1:PORT/v1``
        fake.requests[-1].json()                         # 受け取った本文

各ターンはリクエストの ``stream`` に合わせて SSE か JSON (``chat.completion``) で応答する。
``stream_options.include_usage`` が真なら、``choices: []`` と ``usage`` だけの最後のチャンクを足す。
並列のツール呼び出しは既定で ``index`` ごとの差分を交互に送る (``interleave=False`` で順番に)。

規則モード (他の部品のエンドツーエンドテスト用: ``OpenAIFake(rules=True)``)。台本が空のとき:

- 最後のメッセージがツールの結果 → その結果を引用するテキスト (``ツールの結果: ...``) を返す。
- リクエストにツールがあり、最後のユーザー発話がツール名を含む → そのツールを呼ぶ (複数なら並列)。
  引数は発話中の JSON オブジェクト (ツールが 1 つのとき)、無ければスキーマから作った見本の値。
- それ以外 → ``了解しました: <発話>`` をストリームで返す。
- 発話中の印: ``[slow]`` (フレームごとに 0.05 秒待つ長い応答)、``[stall]`` (数フレーム後に止まる)、
  ``[break]`` (途中で切れる)、``[stream-error]`` (ストリーム内の error フレーム)、
  ``[fail:429]`` など (その HTTP ステータスのエラー応答)。

実際のサーバープロセスを向けるには ``providers.openai.base_url=<fake.base_url>`` を渡す。
``/v1/embeddings`` は決定的なベクトル (``encoding_format`` が base64 なら base64) を返し、
``GET /v1/models`` はモデル一覧を返す。
単独で動かすには ``uv run python -m tests.fakes.openai_fake`` (規則モードで起動し、URL を表示する)。
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from tests.fakes.server import FakeServer, JSONResponse, RecordedRequest, Scripted, StreamResponse, sse_frame

Turn = Callable[[RecordedRequest], Scripted]
_ids = itertools.count(1)


def _new_id(prefix: str) -> str:
    """OpenAI 風の ID を作る。"""
    return f"{prefix}{next(_ids):024d}"


def error_body(message: str, type: str = "invalid_request_error", code: str | None = None, param: Any = None) -> dict:
    """OpenAI のエラー本文 ``{"error": {"message", "type", "param", "code"}}``。"""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def split_text(text: str, size: int) -> list[str]:
    """テキストを ``size`` 文字ずつに分ける (空なら空のリスト)。"""
    size = max(1, size)
    return [text[i : i + size] for i in range(0, len(text), size)]


def usage_body(prompt: int, completion: int, reasoning: int = 0) -> dict[str, Any]:
    """``usage`` オブジェクト (``completion_tokens_details.reasoning_tokens`` つき)。"""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


class _ChunkWriter:
    """1 つの応答の ``chat.completion.chunk`` を作る (id・created・model を共有する)。"""

    def __init__(self, model: str, include_usage: bool) -> None:
        """応答 ID を決める。"""
        self.id = _new_id("chatcmpl-")
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        """``choices[0].delta`` を持つチャンク。include_usage のときは ``usage: null`` も付く。"""
        out: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
        }
        if self.include_usage:
            out["usage"] = None
        return out

    def usage_chunk(self, usage: dict[str, Any]) -> dict[str, Any]:
        """最後の使用量チャンク (``choices`` は空)。"""
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": usage,
        }


def _is_stream(body: dict[str, Any]) -> bool:
    """リクエストがストリーミングなら真。"""
    return bool(body.get("stream"))


def _include_usage(body: dict[str, Any]) -> bool:
    """``stream_options.include_usage`` が真なら真。"""
    return bool((body.get("stream_options") or {}).get("include_usage"))


def _sse(chunks: list[dict[str, Any]], done: bool = True) -> list[bytes]:
    """チャンクを SSE のフレームにし、``data: [DONE]`` で終える。"""
    frames = [sse_frame(c) for c in chunks]
    if done:
        frames.append(sse_frame("[DONE]"))
    return frames


def _completion(model: str, message: dict[str, Any], finish_reason: str, usage: dict[str, Any]) -> dict[str, Any]:
    """非ストリーミングの ``chat.completion`` 本文。"""
    return {
        "id": _new_id("chatcmpl-"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": usage,
    }


def text_response(
    request: RecordedRequest,
    text: str,
    *,
    chunk_size: int = 4,
    finish_reason: str = "stop",
    usage: dict[str, Any] | None = None,
    reasoning_tokens: int = 0,
    **stream_options: Any,
) -> Scripted:
    """テキストだけの応答 (ストリームなら ``chunk_size`` 文字ずつ)。"""
    body = request.json() or {}
    model = body.get("model", "gpt-fake")
    pieces = split_text(text, chunk_size)
    usage = usage or usage_body(11, len(pieces) + reasoning_tokens, reasoning_tokens)
    if not _is_stream(body):
        message = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        return JSONResponse(_completion(model, message, finish_reason, usage))
    w = _ChunkWriter(model, _include_usage(body))
    chunks = [w.chunk({"role": "assistant", "content": "", "refusal": None})]
    chunks += [w.chunk({"content": piece}) for piece in pieces]
    chunks.append(w.chunk({}, finish_reason))
    if w.include_usage:
        chunks.append(w.usage_chunk(usage))
    return StreamResponse(_sse(chunks), **stream_options)


def tool_call_response(
    request: RecordedRequest,
    calls: list[tuple[str, dict[str, Any] | str]],
    *,
    text: str = "",
    arg_chunk_size: int = 6,
    interleave: bool = True,
    usage: dict[str, Any] | None = None,
    **stream_options: Any,
) -> Scripted:
    """ツール呼び出しの応答。引数は JSON 文字列の断片として ``index`` ごとに流す。"""
    body = request.json() or {}
    model = body.get("model", "gpt-fake")
    specs = [
        (_new_id("call_"), name, args if isinstance(args, str) else json.dumps(args, ensure_ascii=False))
        for name, args in calls
    ]
    usage = usage or usage_body(23, 9 * len(specs))
    if not _is_stream(body):
        tool_calls = [{"id": i, "type": "function", "function": {"name": n, "arguments": a}} for i, n, a in specs]
        message = {"role": "assistant", "content": text or None, "refusal": None, "tool_calls": tool_calls}
        return JSONResponse(_completion(model, message, "tool_calls", usage))
    w = _ChunkWriter(model, _include_usage(body))
    chunks = [w.chunk({"role": "assistant", "content": None if not text else "", "refusal": None})]
    chunks += [w.chunk({"content": piece}) for piece in split_text(text, 4)]
    per_call = [_tool_call_deltas(i, spec, arg_chunk_size) for i, spec in enumerate(specs)]
    if interleave:
        ordered = [d for group in itertools.zip_longest(*per_call) for d in group if d is not None]
    else:
        ordered = [d for deltas in per_call for d in deltas]
    chunks += [w.chunk({"tool_calls": [d]}) for d in ordered]
    chunks.append(w.chunk({}, "tool_calls"))
    if w.include_usage:
        chunks.append(w.usage_chunk(usage))
    return StreamResponse(_sse(chunks), **stream_options)


def _tool_call_deltas(index: int, spec: tuple[str, str, str], size: int) -> list[dict[str, Any]]:
    """1 つの呼び出しの差分: 最初に id と name (arguments は空)、その後は引数の断片だけ。"""
    call_id, name, arguments = spec
    first = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
    return [first] + [{"index": index, "function": {"arguments": piece}} for piece in split_text(arguments, size)]


def embedding_vector(text: str, dimension: int) -> list[float]:
    """テキストから決定的に作る単位ベクトル (SHA-256 を種にする)。"""
    raw = b""
    counter = 0
    while len(raw) < dimension * 4:
        raw += hashlib.sha256(f"{counter}:{text}".encode()).digest()
        counter += 1
    values = [(b - 127.5) / 127.5 for b in raw[:dimension]]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


def embeddings_response(request: RecordedRequest, dimension: int = 8, reverse: bool = False) -> Scripted:
    """``/embeddings`` の応答。``encoding_format`` が base64 なら little-endian float32 の base64 で返す。"""
    body = request.json() or {}
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    dimension = int(body.get("dimensions") or dimension)
    data = []
    for index, text in enumerate(texts):
        vector = embedding_vector(str(text), dimension)
        if body.get("encoding_format") == "base64":
            encoded: Any = base64.b64encode(struct.pack(f"<{dimension}f", *vector)).decode()
        else:
            encoded = vector
        data.append({"object": "embedding", "index": index, "embedding": encoded})
    if reverse:
        data.reverse()
    tokens = sum(len(str(t).split()) or 1 for t in texts)
    return JSONResponse(
        {
            "object": "list",
            "data": data,
            "model": body.get("model", "text-embedding-fake"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


class OpenAIFake:
    """OpenAI の偽サーバー: 台本 (ターンのキュー) と、任意で規則による応答。"""

    def __init__(self, *, rules: bool = False, embedding_dimension: int = 8, reverse_embeddings: bool = False) -> None:
        """ループバックの空きポートで起動する。``rules`` が真なら台本が空のとき規則で答える。"""
        self.rules = rules
        self.embedding_dimension = embedding_dimension
        self.reverse_embeddings = reverse_embeddings
        self._chat: deque[Turn] = deque()
        self._embeddings: deque[Turn] = deque()
        self.server = FakeServer(handler=self._dispatch)

    # ------------------------------------------------------------ 基本

    @property
    def base_url(self) -> str:
        """クライアントの ``base_url`` (``/v1`` つき)。"""
        return self.server.base_url + "/v1"

    @property
    def requests(self) -> list[RecordedRequest]:
        """受け取ったリクエストすべて。"""
        return self.server.requests

    def chat_requests(self) -> list[dict[str, Any]]:
        """``/chat/completions`` に届いた本文 (JSON) の一覧。"""
        return [r.json() for r in self.requests if r.path.endswith("/chat/completions")]

    def reset(self) -> None:
        """台本、記録したリクエスト、切断の印を消す (1 つのサーバーを複数のテストで使い回すとき)。"""
        self._chat.clear()
        self._embeddings.clear()
        with self.server._lock:
            self.server._queue.clear()
            self.server.requests.clear()
        self.server.client_disconnected.clear()
        self.server.stream_started.clear()
        self.server.disconnected_at = None

    def close(self) -> None:
        """サーバーを止める。"""
        self.server.close()

    def __enter__(self) -> OpenAIFake:
        """``with`` で使う。"""
        return self

    def __exit__(self, *exc: object) -> None:
        """``with`` を抜けたら止める。"""
        self.close()

    # ------------------------------------------------------------ 台本

    def add_turn(self, turn: Turn, endpoint: str = "chat") -> None:
        """任意のターン (リクエストを受けて応答を返す関数) を積む。"""
        (self._embeddings if endpoint == "embeddings" else self._chat).append(turn)

    def add_text_turn(self, text: str, chunk_size: int = 4, **kwargs: Any) -> None:
        """テキストの応答を積む (``delay_s`` / ``stall_after`` / ``break_after`` / ``usage`` なども渡せる)。"""
        self.add_turn(lambda r: text_response(r, text, chunk_size=chunk_size, **kwargs))

    def add_tool_call_turn(self, calls: list[tuple[str, dict[str, Any] | str]], **kwargs: Any) -> None:
        """ツール呼び出しの応答を積む (``[(name, 引数), ...]``、複数なら並列)。"""
        self.add_turn(lambda r: tool_call_response(r, calls, **kwargs))

    def add_error(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        endpoint: str = "chat",
    ) -> None:
        """HTTP エラー応答を積む (本文は OpenAI の形、ヘッダは ``retry-after`` などをそのまま)。"""
        kind = type or _default_error_type(status)
        all_headers = {**(_RATE_LIMIT_HEADERS if status == 429 else {}), **(headers or {})}
        response = JSONResponse(error_body(message, kind, code, param), status, all_headers)
        self.add_turn(lambda r: response, endpoint)

    def add_stream_error(self, message: str, *, after_text: str = "", type: str = "server_error") -> None:
        """HTTP 200 の後、ストリーム内に ``data: {"error": ...}`` を送って終わる応答を積む。"""

        def turn(request: RecordedRequest) -> Scripted:
            """テキストの後に error フレーム。"""
            body = request.json() or {}
            w = _ChunkWriter(body.get("model", "gpt-fake"), _include_usage(body))
            chunks = [w.chunk({"role": "assistant", "content": ""})]
            chunks += [w.chunk({"content": p}) for p in split_text(after_text, 4)]
            chunks.append(error_body(message, type))
            return StreamResponse(_sse(chunks, done=False))

        self.add_turn(turn)

    def add_embeddings(self, dimension: int | None = None, reverse: bool = False) -> None:
        """埋め込みの応答を 1 回分積む (``reverse`` なら ``data`` を逆順に返す)。"""
        dim = dimension or self.embedding_dimension
        self.add_turn(lambda r: embeddings_response(r, dim, reverse), "embeddings")

    # ------------------------------------------------------------ 振り分け

    def _dispatch(self, request: RecordedRequest) -> Scripted:
        """パスで振り分け、台本が空なら規則か既定の応答を返す。"""
        if request.path.endswith("/embeddings"):
            if self._embeddings:
                return self._embeddings.popleft()(request)
            return embeddings_response(request, self.embedding_dimension, self.reverse_embeddings)
        if request.path.endswith("/models"):
            return JSONResponse({"object": "list", "data": [{"id": "gpt-fake", "object": "model", "owned_by": "fake"}]})
        if self._chat:
            return self._chat.popleft()(request)
        if self.rules:
            return rule_response(request)
        return JSONResponse(error_body(f"fake OpenAI has no script for {request.path}", "server_error"), 500)


# 本物の 429 が持つレート制限のヘッダ (値は見本)
_RATE_LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-limit-tokens": "200000",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-tokens": "1s",
}


def _default_error_type(status: int) -> str:
    """ステータスに対応する OpenAI のエラー type。"""
    return {401: "invalid_request_error", 429: "requests", 404: "invalid_request_error"}.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )


# ---------------------------------------------------------------- 規則モード


def text_of(content: Any) -> str:
    """``content`` (文字列かパーツのリスト) のテキスト。"""
    if isinstance(content, str):
        return content
    return "".join(p.get("text", "") for p in content or [] if isinstance(p, dict))


def sample_value(schema: dict[str, Any]) -> Any:
    """JSON Schema に合う見本の値 (規則モードの引数用)。"""
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        props = schema.get("properties") or {}
        names = schema.get("required") or list(props)
        return {name: sample_value(props.get(name) or {}) for name in names}
    return {"integer": 1, "number": 1, "boolean": True, "array": [], "null": None}.get(kind, "テスト")


def json_object_in(text: str) -> dict[str, Any] | None:
    """発話中の最初の ``{`` から最後の ``}`` までが JSON オブジェクトならそれを返す。"""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        value = json.loads(text[start : end + 1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def rule_response(request: RecordedRequest) -> Scripted:
    """規則モードの応答 (モジュールの docstring を参照)。"""
    body = request.json() or {}
    messages = body.get("messages") or []
    trailing = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        trailing.insert(0, text_of(message.get("content")))
    if trailing:
        return text_response(request, "ツールの結果: " + " / ".join(trailing))
    user = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    marked = _marked_response(request, user)
    if marked is not None:
        return marked
    tools = [t.get("function") or {} for t in body.get("tools") or []]
    named = sorted((user.find(t["name"]), t) for t in tools if t.get("name") and t["name"] in user)
    if named and body.get("tool_choice") != "none":
        given = json_object_in(user) if len(named) == 1 else None
        calls = [(t["name"], given or sample_value(t.get("parameters") or {})) for _, t in named]
        return tool_call_response(request, calls)
    return text_response(request, f"了解しました: {user}")


def _marked_response(request: RecordedRequest, user: str) -> Scripted | None:
    """発話中の印 (``[slow]`` など) に応じた応答。印が無ければ ``None``。"""
    failure = re.search(r"\[fail:(\d{3})\]", user)
    if failure:
        status = int(failure.group(1))
        headers = {"retry-after": "0"} if status == 429 else {}
        return JSONResponse(error_body(f"fake failure {status}", _default_error_type(status)), status, headers)
    long_text = "これはゆっくり流れる長い応答です。" * 20
    if "[slow]" in user:
        return text_response(request, long_text, delay_s=0.05)
    if "[stall]" in user:
        return text_response(request, long_text, stall_after=3)
    if "[break]" in user:
        return text_response(request, long_text, break_after=3)
    if "[stream-error]" in user:
        body = request.json() or {}
        w = _ChunkWriter(body.get("model", "gpt-fake"), False)
        chunks = [w.chunk({"role": "assistant", "content": "途中"}), error_body("fake stream error", "server_error")]
        return StreamResponse(_sse(chunks, done=False))
    return None


def main() -> None:
    """規則モードの偽サーバーを単独で動かす (手で試すとき: ``uv run python -m tests.fakes.openai_fake``)。"""
    import threading

    with OpenAIFake(rules=True) as fake:
        print(f"fake OpenAI (rules) at {fake.base_url}: providers.openai.base_url={fake.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
