"""Anthropic Messages API の偽サーバー (ループバック、本物の SSE と ``event:`` 名、本物のステータスとエラー本文)。

2 つの使い方がある:
- 台本: ``fake.stream(blocks)`` / ``fake.message(blocks)`` / ``fake.error(...)`` で次の応答を積む。
- 規則 (``AnthropicFake(rule_based=True)``): 他の人のエンドツーエンドのテストが本物のサーバーを
  ``providers.anthropic.base_url=<fake.base_url>`` で向けられるように、要求を検証し
  (交互の役割、tool_use への tool_result、思考の署名など、本物の API が 400 にするもの)、
  最後のメッセージにツール結果があればそれを引用して答え、ユーザーの文が提示されたツール名を含めば
  それを呼び、そうでなければテキストを流す。思考が要求されていれば署名つきの thinking ブロックを先に出す。

イベントの並びは Anthropic "Streaming Messages" の文書の例に従う
(message_start → content_block_start → ping → content_block_delta … → content_block_stop → message_delta → message_stop)。
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from typing import Any

from tests.fakes.server import FakeServer, JSONResponse, RecordedRequest, Scripted, StreamResponse, sse_frame

DEFAULT_MODEL = "claude-fake-1"
TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ids = itertools.count(1)


# ---------------------------------------------------------------- 部品


def sign(thinking: str) -> str:
    """思考の文に対する決定的な偽の署名 (規則モードで、送り返された署名が改変されていないかを確かめる)。"""
    return "sig_" + hashlib.sha256(thinking.encode()).hexdigest()[:48]


def split(text: str, pieces: int) -> list[str]:
    """文字列をおよそ ``pieces`` 個の断片に分ける (空文字なら空のリスト)。"""
    if not text:
        return []
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def text_block(text: str) -> dict[str, Any]:
    """テキストのブロック。"""
    return {"type": "text", "text": text}


def tool_use_block(name: str, arguments: dict[str, Any], call_id: str | None = None) -> dict[str, Any]:
    """ツール呼び出しのブロック。"""
    return {"type": "tool_use", "id": call_id or f"toolu_{next(_ids):024d}", "name": name, "input": arguments}


def thinking_block(thinking: str, signature: str | None = None) -> dict[str, Any]:
    """署名つきの思考ブロック。"""
    return {"type": "thinking", "thinking": thinking, "signature": signature or sign(thinking)}


def redacted_block(data: str = "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIw") -> dict[str, Any]:
    """伏せられた思考のブロック。"""
    return {"type": "redacted_thinking", "data": data}


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """Anthropic のエラー本文。"""
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _stop_reason(blocks: list[dict[str, Any]], stop_reason: str | None) -> str:
    """既定の終了理由 (tool_use があれば ``tool_use``)。"""
    if stop_reason:
        return stop_reason
    return "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"


def _output_tokens(blocks: list[dict[str, Any]]) -> int:
    """出力トークン数の目安 (文字数から)。"""
    return max(1, sum(len(json.dumps(b, ensure_ascii=False)) for b in blocks) // 4)


def _block_events(index: int, block: dict[str, Any], pieces: int) -> list[tuple[str, dict[str, Any]]]:
    """1 ブロック分のイベント (start / delta … / stop)。"""
    kind = block["type"]
    deltas: list[dict[str, Any]] = []
    if kind == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": p} for p in split(block["text"], pieces)]
    elif kind == "thinking":
        start = {"type": "thinking", "thinking": ""}
        deltas = [{"type": "thinking_delta", "thinking": p} for p in split(block["thinking"], pieces)]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif kind == "tool_use":
        start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
        # 本物の API と同じく最初の断片は空文字
        raw = json.dumps(block["input"], ensure_ascii=False) if block["input"] else ""
        deltas = [{"type": "input_json_delta", "partial_json": p} for p in ["", *split(raw, pieces)]]
    else:
        start = dict(block)
    events = [("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})]
    events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
    events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    return events


def message_events(
    blocks: list[dict[str, Any]],
    *,
    model: str = DEFAULT_MODEL,
    stop_reason: str | None = None,
    input_tokens: int = 25,
    output_tokens: int | None = None,
    pieces: int = 3,
    ping: bool = True,
) -> list[bytes]:
    """ブロックの列を、ストリーミング応答の SSE フレームの列にする。"""
    message = {
        "id": f"msg_{next(_ids):024d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
    }
    events: list[tuple[str, dict[str, Any]]] = [("message_start", {"type": "message_start", "message": message})]
    for index, block in enumerate(blocks):
        block_events = _block_events(index, block, pieces)
        events.append(block_events[0])
        if ping and index == 0:
            events.append(("ping", {"type": "ping"}))
        events.extend(block_events[1:])
    usage = {"output_tokens": output_tokens if output_tokens is not None else _output_tokens(blocks)}
    delta = {"stop_reason": _stop_reason(blocks, stop_reason), "stop_sequence": None}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return [sse_frame(data, event=name) for name, data in events]


def message_json(
    blocks: list[dict[str, Any]],
    *,
    model: str = DEFAULT_MODEL,
    stop_reason: str | None = None,
    input_tokens: int = 25,
    output_tokens: int | None = None,
) -> dict[str, Any]:
    """非ストリーミング応答の本文。"""
    return {
        "id": f"msg_{next(_ids):024d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": _stop_reason(blocks, stop_reason),
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens if output_tokens is not None else _output_tokens(blocks),
        },
    }


def example_arguments(schema: dict[str, Any]) -> Any:
    """JSON Schema を満たす簡単な値 (規則モードのツール呼び出しの引数)。"""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    kind = str(kind).lower() if kind else ("object" if "properties" in schema else "string")
    if kind == "object":
        props = schema.get("properties") or {}
        names = schema.get("required") or list(props)
        return {name: example_arguments(props.get(name) or {}) for name in names}
    examples = {"string": "東京", "integer": 2, "number": 3, "boolean": True, "array": [], "null": None}
    return examples.get(kind, "東京")


def example_object(schema: dict[str, Any] | None) -> dict[str, Any]:
    """ツールの引数の例 (常にオブジェクト。スキーマが無い・空なら ``{}``)。"""
    value = example_arguments(schema) if schema else {}
    return value if isinstance(value, dict) else {}


def latest_user_text(content: Any) -> str:
    """user メッセージの内容からテキストを取り出す。"""
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if isinstance(b, dict) and b.get("type") == "text")


# ---------------------------------------------------------------- 要求の検証 (本物の API が 400 にするもの)


def validate_request(body: Any) -> str | None:
    """Messages API の要求を検証し、問題があれば本物に似せた文言を返す。"""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("max_tokens"), int):
        return "max_tokens: Field required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for tool in body.get("tools") or []:
        if not TOOL_NAME.match(str(tool.get("name", ""))):
            return f"tools: tool name '{tool.get('name')}' must match ^[a-zA-Z0-9_-]{{1,64}}$"
        if not isinstance(tool.get("input_schema"), dict):
            return f"tools.{tool.get('name')}.input_schema: Field required"
    problem = _validate_thinking_params(body)
    if problem:
        return problem
    return _validate_messages(messages, thinking=bool(body.get("thinking")))


def _validate_thinking_params(body: dict[str, Any]) -> str | None:
    """``thinking`` の予算と、併用できない ``temperature``。"""
    thinking = body.get("thinking")
    if not thinking:
        return None
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens")
        if not isinstance(budget, int) or budget < 1024:
            return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        if budget >= body["max_tokens"]:
            return "`max_tokens` must be greater than `thinking.budget_tokens`"
    if "temperature" in body and body["temperature"] != 1:
        return "`temperature` may only be set to 1 when thinking is enabled"
    return None


def _validate_messages(messages: list[dict[str, Any]], *, thinking: bool) -> str | None:
    """役割の交互、tool_use と tool_result の対応、思考ブロックの署名と位置。"""
    previous_role = None
    pending: set[str] = set()
    for i, message in enumerate(messages):
        role = message.get("role")
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if role == previous_role:
            return "messages: roles must alternate between 'user' and 'assistant'"
        if i == 0 and role != "user":
            return "messages: first message must use the 'user' role"
        content = message.get("content")
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        problem = _check_blocks(i, role, blocks, pending)
        if problem:
            return problem
        if role == "assistant":
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
        previous_role = role
    if thinking:
        return _check_last_tool_turn(messages)
    return None


def _check_blocks(i: int, role: str, blocks: list[dict[str, Any]], pending: set[str]) -> str | None:
    """1 メッセージのブロックを確かめる。"""
    for block in blocks:
        kind = block.get("type")
        if kind == "text" and not block.get("text"):
            return f"messages.{i}: text content blocks must be non-empty"
        if kind == "thinking" and block.get("signature") != sign(block.get("thinking", "")):
            return f"messages.{i}: Invalid `signature` in `thinking` block"
    if role == "user":
        results = [b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"]
        if pending and set(results) != pending:
            return (
                f"messages.{i}: `tool_use` ids were found without `tool_result` blocks immediately after: "
                + ", ".join(sorted(pending - set(results)))
            )
        first_other = next((k for k, b in enumerate(blocks) if b.get("type") != "tool_result"), len(blocks))
        if any(b.get("type") == "tool_result" for b in blocks[first_other:]):
            return f"messages.{i}: tool_result blocks must come before any other content"
        if not pending and results:
            return f"messages.{i}: unexpected `tool_use_id` found in `tool_result` blocks"
    return None


def _check_last_tool_turn(messages: list[dict[str, Any]]) -> str | None:
    """思考が有効なとき、ツールを呼んだ最後の assistant の番は思考ブロックで始まらなければならない。"""
    for i in range(len(messages) - 1, -1, -1):
        message = messages[i]
        if message.get("role") != "assistant":
            continue
        blocks = message.get("content") if isinstance(message.get("content"), list) else []
        if any(b.get("type") == "tool_use" for b in blocks):
            first = blocks[0].get("type")
            if first not in ("thinking", "redacted_thinking"):
                return (
                    f"messages.{i}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{first}`. "
                    "When `thinking` is enabled, a final `assistant` message must start with a thinking block."
                )
        return None
    return None


# ---------------------------------------------------------------- 偽サーバー


class AnthropicFake:
    """Anthropic の偽サーバー。``base_url`` は ``providers.anthropic.base_url`` にそのまま使える (/v1 なし)。"""

    def __init__(self, *, rule_based: bool = False, api_key: str | None = None) -> None:
        """起動する。``rule_based`` なら台本が空のとき規則で答える。``api_key`` を与えればそれ以外を 401 にする。"""
        self.server = FakeServer(self.respond if rule_based else None)
        self.api_key = api_key
        # 規則モードのストリームの調整: フレーム間の待ち、テキストの分割数、この数のフレームの後で止まる (キャンセルの試験用)
        self.delay_s = 0.0
        self.pieces = 3
        self.stall_after: int | None = None
        self.not_found_models = {"claude-3-opus-20240229"}

    # -- 基本
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``。"""
        return self.server.base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        """受け取った要求。"""
        return self.server.requests

    def bodies(self) -> list[Any]:
        """受け取った要求の本文 (JSON)。"""
        return [r.json() for r in self.server.requests]

    def close(self) -> None:
        """止める。"""
        self.server.close()

    def __enter__(self) -> AnthropicFake:
        """``with`` で使う。"""
        return self

    def __exit__(self, *exc: object) -> None:
        """``with`` を抜けたら止める。"""
        self.close()

    # -- 台本
    def stream(
        self,
        blocks: list[dict[str, Any]],
        *,
        error: tuple[str, str] | None = None,
        error_after: int | None = None,
        headers: dict[str, str] | None = None,
        delay_s: float = 0.0,
        break_after: int | None = None,
        stall_after: int | None = None,
        **options: Any,
    ) -> list[bytes]:
        """ストリーミング応答を積む。``error`` (種別, 文言) は ``error_after`` 個のフレームの後に error イベントを出す。"""
        frames = message_events(blocks, **options)
        if error is not None:
            cut = len(frames) if error_after is None else error_after
            frames = [*frames[:cut], sse_frame(error_body(*error), event="error")]
        self.server.enqueue(
            StreamResponse(
                frames,
                headers={"request-id": f"req_{next(_ids)}", **(headers or {})},
                delay_s=delay_s,
                break_after=break_after,
                stall_after=stall_after,
            )
        )
        return frames

    def text(self, text: str, **options: Any) -> list[bytes]:
        """テキストだけのストリーミング応答を積む。"""
        return self.stream([text_block(text)], **options)

    def message(self, blocks: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        """非ストリーミング応答を積む。"""
        body = message_json(blocks, **options)
        self.server.enqueue(JSONResponse(body))
        return body

    def error(self, status: int, error_type: str, message: str, headers: dict[str, str] | None = None) -> None:
        """エラー応答を積む (例: 529 overloaded_error、429 rate_limit_error + retry-after)。"""
        self.server.enqueue(JSONResponse(error_body(error_type, message), status, headers or {}))

    # -- 規則
    def respond(self, request: RecordedRequest) -> Scripted:
        """規則モードの応答: 検証してから、最後のメッセージに応じて答える。"""
        if request.path != "/v1/messages":
            return JSONResponse(error_body("not_found_error", f"Not found: {request.path}"), 404)
        if not self._authorised(request):
            return JSONResponse(error_body("authentication_error", "invalid x-api-key"), 401)
        if not request.headers.get("anthropic-version"):
            return JSONResponse(error_body("invalid_request_error", "anthropic-version: header is required"), 400)
        body = request.json()
        problem = validate_request(body)
        if problem:
            return JSONResponse(error_body("invalid_request_error", problem), 400)
        if body["model"] in self.not_found_models:
            return JSONResponse(error_body("not_found_error", f"model: {body['model']}"), 404)
        blocks = self.answer_blocks(body)
        if body.get("stream"):
            frames = message_events(blocks, model=body["model"], pieces=self.pieces)
            return StreamResponse(frames, delay_s=self.delay_s, stall_after=self.stall_after)
        return JSONResponse(message_json(blocks, model=body["model"]))

    def _authorised(self, request: RecordedRequest) -> bool:
        """``x-api-key`` (docs/providers.md の形) か ``authorization: Bearer`` (公式 SDK 2.x が送る形) を認める。"""
        bearer = request.headers.get("authorization", "")
        key = request.headers.get("x-api-key") or (bearer[7:] if bearer.startswith("Bearer ") else "")
        return bool(key) and (self.api_key is None or key == self.api_key)

    def answer_blocks(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """規則: ツール結果があれば引用して答え、ツール名が書かれていれば呼び、それ以外はテキスト。"""
        last = body["messages"][-1]
        content = last.get("content")
        blocks: list[dict[str, Any]] = []
        if body.get("thinking"):
            blocks.append(thinking_block("ユーザーの依頼を検討しています。"))
        results = [b for b in content if b.get("type") == "tool_result"] if isinstance(content, list) else []
        if results:
            quoted = "; ".join(_result_text(b) for b in results)
            return [*blocks, text_block(f"ツールの結果: {quoted}")]
        text = latest_user_text(content)
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        named = [t for t in tools if t["name"] in text]
        if choice.get("type") == "tool":
            named = [t for t in tools if t["name"] == choice.get("name")]
        elif choice.get("type") == "any" and not named:
            named = tools[:1]
        if named and choice.get("type") != "none":
            return blocks + [tool_use_block(t["name"], example_object(t.get("input_schema"))) for t in named]
        return [*blocks, text_block(f"こんにちは。「{text}」への回答です。")]


def _result_text(block: dict[str, Any]) -> str:
    """``tool_result`` の内容を文字列にする。"""
    content = block.get("content")
    if isinstance(content, list):
        return " ".join(b.get("text", "") for b in content if isinstance(b, dict))
    return str(content)
