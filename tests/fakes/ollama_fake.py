"""Ollama (``/api/chat``、``/api/embed``) の偽サーバー (ループバック、本物の HTTP と NDJSON)。

:class:`tests.fakes.server.FakeServer` の上に、Ollama と同じ形の応答を作る。形は公式 SDK
(ollama-python) に解析させて確かめてある (``tests/fakes/test_ollama_fake_sdk.py``)。

台本モード (クライアントのテスト用)::

    with OllamaFake() as fake:
        fake.add_text_turn("こんにちは", chunk_size=2, thinking="考え中")   # thinking は先に流れる
        fake.add_tool_call_turn([("get_weather", {"city": "東京"})])       # 丸ごと 1 行で届く
        fake.add_tool_call_turn([...], with_ids=False)                     # v0.12.10 より前 (id なし)
        fake.add_error(404, 'model "llama9" not found, try pulling it first')
        fake.add_stream_error("an error was encountered while running the model", after_text="途中")
        fake.add_text_turn("長い文", stall_after=2)    # キャンセル用 / break_after=2 でストリーム破損
        config.base_url = fake.base_url               # ``http://127.0.0.1:PORT`` (``/api`` は付けない)

各ターンはリクエストの ``stream`` (省略時は真: Ollama の既定) に合わせて NDJSON か 1 つの JSON で応答する。

規則モード (``OllamaFake(rules=True)``) は :mod:`tests.fakes.openai_fake` と同じ規則で答える:
最後がツールの結果ならそれを引用し、ツール名を含む発話ならそのツールを呼び、ほかはテキストを返す。
``[slow]`` / ``[stall]`` / ``[break]`` / ``[stream-error]`` / ``[fail:NNN]`` の印も同じ。リクエストに
``think`` があれば、テキストの前に ``message.thinking`` を流す。
``/api/embed`` は決定的なベクトルを、``GET /api/tags`` はモデル一覧を返す。
単独で動かすには ``uv run python -m tests.fakes.ollama_fake`` (規則モードで起動し、URL を表示する)。
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.fakes.openai_fake import embedding_vector, json_object_in, sample_value, split_text, text_of
from tests.fakes.server import FakeServer, JSONResponse, RecordedRequest, Scripted, StreamResponse, ndjson_frame

Turn = Callable[[RecordedRequest], Scripted]
_ids = itertools.count(1)
NDJSON = "application/x-ndjson"


def _created_at() -> str:
    """Ollama の ``created_at`` (RFC 3339、ナノ秒まで)。"""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def _line(model: str, message: dict[str, Any], done: bool = False, **extra: Any) -> dict[str, Any]:
    """ストリームの 1 行 (``message`` は role つき)。"""
    return {
        "model": model,
        "created_at": _created_at(),
        "message": {"role": "assistant", **message},
        "done": done,
        **extra,
    }


def _done_line(model: str, reason: str, prompt: int, completion: int, message: dict[str, Any] | None = None) -> dict:
    """最後の行: ``done: true``、``done_reason``、各種の所要時間とトークン数。"""
    return _line(
        model,
        message or {"content": ""},
        True,
        done_reason=reason,
        total_duration=512_000_000,
        load_duration=12_000_000,
        prompt_eval_count=prompt,
        prompt_eval_duration=40_000_000,
        eval_count=completion,
        eval_duration=400_000_000,
    )


def _is_stream(body: dict[str, Any]) -> bool:
    """``stream`` が省略されたら真 (Ollama の既定)。"""
    return body.get("stream", True) is not False


def _tool_calls(calls: list[tuple[str, dict[str, Any]]], with_ids: bool) -> list[dict[str, Any]]:
    """Ollama 形式のツール呼び出し (引数はオブジェクト、v0.12.10 以降は id と index つき)。"""
    out = []
    for index, (name, arguments) in enumerate(calls):
        call: dict[str, Any] = {"function": {"name": name, "arguments": arguments}}
        if with_ids:
            call["id"] = f"call_{next(_ids):08x}"
            call["function"]["index"] = index
        out.append(call)
    return out


def text_response(
    request: RecordedRequest,
    text: str,
    *,
    chunk_size: int = 4,
    thinking: str = "",
    done_reason: str = "stop",
    usage: tuple[int, int] | None = None,
    **stream_options: Any,
) -> Scripted:
    """テキストの応答 (``thinking`` があれば先に ``message.thinking`` の断片を流す)。"""
    body = request.json() or {}
    model = body.get("model", "llama-fake")
    pieces = split_text(text, chunk_size)
    prompt, completion = usage or (17, len(pieces) + len(split_text(thinking, chunk_size)))
    if not _is_stream(body):
        message = {"content": text, **({"thinking": thinking} if thinking else {})}
        return JSONResponse(_done_line(model, done_reason, prompt, completion, message))
    lines = [_line(model, {"content": "", "thinking": p}) for p in split_text(thinking, chunk_size)]
    lines += [_line(model, {"content": p}) for p in pieces]
    lines.append(_done_line(model, done_reason, prompt, completion))
    return StreamResponse([ndjson_frame(x) for x in lines], content_type=NDJSON, **stream_options)


def tool_call_response(
    request: RecordedRequest,
    calls: list[tuple[str, dict[str, Any]]],
    *,
    text: str = "",
    thinking: str = "",
    with_ids: bool = True,
    **stream_options: Any,
) -> Scripted:
    """ツール呼び出しの応答。呼び出しは 1 行に丸ごと入る (Ollama は引数を断片で流さない)。"""
    body = request.json() or {}
    model = body.get("model", "llama-fake")
    tool_calls = _tool_calls(calls, with_ids)
    if not _is_stream(body):
        message = {"content": text, "tool_calls": tool_calls, **({"thinking": thinking} if thinking else {})}
        return JSONResponse(_done_line(model, "stop", 31, 12, message))
    lines = [_line(model, {"content": "", "thinking": p}) for p in split_text(thinking, 4)]
    lines += [_line(model, {"content": p}) for p in split_text(text, 4)]
    lines.append(_line(model, {"content": "", "tool_calls": tool_calls}))
    lines.append(_done_line(model, "stop", 31, 12))
    return StreamResponse([ndjson_frame(x) for x in lines], content_type=NDJSON, **stream_options)


def embed_response(request: RecordedRequest, dimension: int = 8) -> Scripted:
    """``/api/embed`` の応答 ``{"model", "embeddings": [[...]], ...}``。"""
    body = request.json() or {}
    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    dimension = int(body.get("dimensions") or dimension)
    return JSONResponse(
        {
            "model": body.get("model", "embed-fake"),
            "embeddings": [embedding_vector(str(t), dimension) for t in texts],
            "total_duration": 14_000_000,
            "load_duration": 1_000_000,
            "prompt_eval_count": sum(len(str(t).split()) or 1 for t in texts),
        }
    )


class OllamaFake:
    """Ollama の偽サーバー: 台本 (ターンのキュー) と、任意で規則による応答。"""

    def __init__(self, *, rules: bool = False, embedding_dimension: int = 8) -> None:
        """ループバックの空きポートで起動する。"""
        self.rules = rules
        self.embedding_dimension = embedding_dimension
        self._chat: deque[Turn] = deque()
        self._embed: deque[Turn] = deque()
        self.server = FakeServer(handler=self._dispatch)

    @property
    def base_url(self) -> str:
        """クライアントの ``base_url`` (``/api`` は付けない)。"""
        return self.server.base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        """受け取ったリクエストすべて。"""
        return self.server.requests

    def chat_requests(self) -> list[dict[str, Any]]:
        """``/api/chat`` に届いた本文の一覧。"""
        return [r.json() for r in self.requests if r.path == "/api/chat"]

    def reset(self) -> None:
        """台本、記録、切断の印を消す (1 つのサーバーを複数のテストで使い回すとき)。"""
        self._chat.clear()
        self._embed.clear()
        with self.server._lock:
            self.server._queue.clear()
            self.server.requests.clear()
        self.server.client_disconnected.clear()
        self.server.stream_started.clear()
        self.server.disconnected_at = None

    def close(self) -> None:
        """サーバーを止める。"""
        self.server.close()

    def __enter__(self) -> OllamaFake:
        """``with`` で使う。"""
        return self

    def __exit__(self, *exc: object) -> None:
        """``with`` を抜けたら止める。"""
        self.close()

    # ------------------------------------------------------------ 台本

    def add_turn(self, turn: Turn, endpoint: str = "chat") -> None:
        """任意のターンを積む。"""
        (self._embed if endpoint == "embed" else self._chat).append(turn)

    def add_text_turn(self, text: str, chunk_size: int = 4, **kwargs: Any) -> None:
        """テキストの応答を積む (``thinking`` / ``delay_s`` / ``stall_after`` / ``break_after`` なども渡せる)。"""
        self.add_turn(lambda r: text_response(r, text, chunk_size=chunk_size, **kwargs))

    def add_tool_call_turn(self, calls: list[tuple[str, dict[str, Any]]], **kwargs: Any) -> None:
        """ツール呼び出しの応答を積む (``with_ids=False`` で id なしの古い形)。"""
        self.add_turn(lambda r: tool_call_response(r, calls, **kwargs))

    def add_error(
        self, status: int, message: str, *, headers: dict[str, str] | None = None, endpoint: str = "chat"
    ) -> None:
        """``{"error": "<文言>"}`` のエラー応答を積む。"""
        response = JSONResponse({"error": message}, status, dict(headers or {}))
        self.add_turn(lambda r: response, endpoint)

    def add_stream_error(self, message: str, *, after_text: str = "") -> None:
        """HTTP 200 のストリームの途中に ``{"error": ...}`` の行を送って終わる応答を積む。"""

        def turn(request: RecordedRequest) -> Scripted:
            """テキストの後に error 行。"""
            model = (request.json() or {}).get("model", "llama-fake")
            lines = [ndjson_frame(_line(model, {"content": p})) for p in split_text(after_text, 4)]
            lines.append(ndjson_frame({"error": message}))
            return StreamResponse(lines, content_type=NDJSON)

        self.add_turn(turn)

    # ------------------------------------------------------------ 振り分け

    def _dispatch(self, request: RecordedRequest) -> Scripted:
        """パスで振り分け、台本が空なら規則か既定の応答を返す。"""
        if request.path == "/api/embed":
            return self._embed.popleft()(request) if self._embed else embed_response(request, self.embedding_dimension)
        if request.path == "/api/tags":
            return JSONResponse({"models": [{"name": "llama3.2:latest", "model": "llama3.2:latest", "size": 1}]})
        if request.path == "/api/chat":
            if self._chat:
                return self._chat.popleft()(request)
            if self.rules:
                return rule_response(request)
        return JSONResponse({"error": f"fake Ollama has no script for {request.path}"}, 404)


def rule_response(request: RecordedRequest) -> Scripted:
    """規則モードの応答 (モジュールの docstring を参照)。"""
    body = request.json() or {}
    messages = body.get("messages") or []
    thinking = "ユーザーの意図を考えています。" if body.get("think") else ""
    trailing = []
    for message in reversed(messages):
        if message.get("role") != "tool":
            break
        trailing.insert(0, text_of(message.get("content")))
    if trailing:
        return text_response(request, "ツールの結果: " + " / ".join(trailing), thinking=thinking)
    user = next((text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    marked = _marked_response(request, user)
    if marked is not None:
        return marked
    tools = [t.get("function") or {} for t in body.get("tools") or []]
    named = sorted((user.find(t["name"]), t) for t in tools if t.get("name") and t["name"] in user)
    if named:
        given = json_object_in(user) if len(named) == 1 else None
        calls = [(t["name"], given or sample_value(t.get("parameters") or {})) for _, t in named]
        return tool_call_response(request, calls, thinking=thinking)
    return text_response(request, f"了解しました: {user}", thinking=thinking)


def _marked_response(request: RecordedRequest, user: str) -> Scripted | None:
    """発話中の印に応じた応答。印が無ければ ``None``。"""
    failure = re.search(r"\[fail:(\d{3})\]", user)
    if failure:
        return JSONResponse({"error": f"fake failure {failure.group(1)}"}, int(failure.group(1)))
    long_text = "これはゆっくり流れる長い応答です。" * 20
    if "[slow]" in user:
        return text_response(request, long_text, delay_s=0.05)
    if "[stall]" in user:
        return text_response(request, long_text, stall_after=3)
    if "[break]" in user:
        return text_response(request, long_text, break_after=3)
    if "[stream-error]" in user:
        model = (request.json() or {}).get("model", "llama-fake")
        lines = [ndjson_frame(_line(model, {"content": "途中"})), ndjson_frame({"error": "fake stream error"})]
        return StreamResponse(lines, content_type=NDJSON)
    return None


def main() -> None:
    """規則モードの偽サーバーを単独で動かす (手で試すとき: ``uv run python -m tests.fakes.ollama_fake``)。"""
    import threading

    with OllamaFake(rules=True) as fake:
        print(f"fake Ollama (rules) at {fake.base_url}: providers.ollama.base_url={fake.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
