"""Gemini API (REST v1beta) の偽サーバー: ``:streamGenerateContent?alt=sse``、``:generateContent``、
``:batchEmbedContents`` を、本物の SSE、本物のステータスとエラー本文 (``google.rpc`` の details つき) で話す。

2 つの使い方がある:
- 台本: ``fake.stream(parts)`` / ``fake.message(parts)`` / ``fake.error(...)`` / ``fake.embeddings(...)`` で次の応答を積む。
- 規則 (``GeminiFake(rule_based=True)``): 他の人のエンドツーエンドのテストが本物のサーバーを
  ``providers.gemini.base_url=<fake.base_url>`` で向けられるように、要求を検証し (関数の結果の数と ID、
  思考の署名が変えられていないこと、``parameters`` と ``parametersJsonSchema`` の排他など)、
  最後の番に関数の結果があればそれを引用して答え、ユーザーの文が宣言された関数名を含めばそれを呼び、
  そうでなければテキストを流す。``includeThoughts`` なら思考の要約を先に出し、署名を付ける。

チャンクの形は https://ai.google.dev/api/generate-content の ``GenerateContentResponse`` に従う
(各チャンクは新しいパーツだけを持ち、``usageMetadata`` は累計、最後のチャンクに ``finishReason``)。
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
from typing import Any

from tests.fakes.anthropic_fake import example_object, split
from tests.fakes.server import FakeServer, JSONResponse, RecordedRequest, Scripted, StreamResponse, sse_frame

DEFAULT_MODEL_VERSION = "gemini-fake-1"
PATH = re.compile(r"^/(?P<version>v1beta|v1)/models/(?P<model>[^:/]+):(?P<method>[A-Za-z]+)$")
_ids = itertools.count(1)


# ---------------------------------------------------------------- 部品


def sign(value: Any) -> str:
    """パーツの中身に対する決定的な偽の署名 (base64: SDK はこれを bytes として読む)。"""
    digest = hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).digest()
    return base64.b64encode(digest[:24]).decode()


def text_part(text: str, signature: str | None = None) -> dict[str, Any]:
    """テキストのパーツ。"""
    part: dict[str, Any] = {"text": text}
    if signature:
        part["thoughtSignature"] = signature
    return part


def thought_part(text: str) -> dict[str, Any]:
    """思考の要約のパーツ。"""
    return {"text": text, "thought": True}


def function_call_part(
    name: str, args: dict[str, Any], call_id: str | None = None, signature: str | None = None
) -> dict[str, Any]:
    """関数呼び出しのパーツ (``call_id`` は新しいモデルだけが付ける)。"""
    call: dict[str, Any] = {"name": name, "args": args}
    if call_id:
        call["id"] = call_id
    part: dict[str, Any] = {"functionCall": call}
    if signature:
        part["thoughtSignature"] = signature
    return part


def error_body(code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Google の API のエラー本文。"""
    error: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details is not None:
        error["details"] = details
    return {"error": error}


def api_key_invalid_body() -> dict[str, Any]:
    """キーが正しくないときの 400 (``details[].reason: API_KEY_INVALID``)。"""
    return error_body(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
                "metadata": {"service": "generativelanguage.googleapis.com"},
            }
        ],
    )


def rate_limited_body(retry_delay: str = "34s") -> dict[str, Any]:
    """429 RESOURCE_EXHAUSTED (``google.rpc.RetryInfo`` の ``retryDelay`` つき)。"""
    return error_body(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
        [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay},
        ],
    )


def _usage(prompt: int, candidates: int, thoughts: int) -> dict[str, Any]:
    """``usageMetadata`` (totalTokenCount は思考の分も含む)。"""
    usage = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates + thoughts,
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _pieces_of(part: dict[str, Any], pieces: int) -> list[dict[str, Any]]:
    """テキストのパーツはいくつかのチャンクに分ける (署名は最後の断片に)。関数呼び出しは一度に。"""
    if "text" not in part or len(part["text"]) <= 1:
        return [part]
    texts = split(part["text"], pieces)
    out = [{**part, "text": t} for t in texts]
    for piece in out[:-1]:
        piece.pop("thoughtSignature", None)
    signature = part.get("thoughtSignature")
    unsigned = {k: v for k, v in part.items() if k != "thoughtSignature"}
    if signature is not None and signature == sign(unsigned):
        # 偽サーバー自身の署名なら、実際に送る最後の断片の中身に対して署名し直す (送り返されたときに検証できるように)
        last = {k: v for k, v in out[-1].items() if k != "thoughtSignature"}
        out[-1]["thoughtSignature"] = sign(last)
    return out


def response_chunks(
    parts: list[dict[str, Any]],
    *,
    finish_reason: str = "STOP",
    prompt_tokens: int = 10,
    pieces: int = 3,
    model_version: str = DEFAULT_MODEL_VERSION,
) -> list[dict[str, Any]]:
    """パーツの列を、ストリームのチャンク (応答オブジェクト) の列にする。"""
    response_id = f"resp{next(_ids)}"
    chunks: list[dict[str, Any]] = []
    candidates = thoughts = 0
    split_parts = [piece for part in parts for piece in _pieces_of(part, pieces)] or [{"text": ""}]
    for i, part in enumerate(split_parts):
        tokens = max(1, len(json.dumps(part, ensure_ascii=False)) // 4)
        if part.get("thought"):
            thoughts += tokens
        else:
            candidates += tokens
        candidate: dict[str, Any] = {"content": {"parts": [part], "role": "model"}, "index": 0}
        if i == len(split_parts) - 1:
            candidate["finishReason"] = finish_reason
        chunks.append(
            {
                "candidates": [candidate],
                "usageMetadata": _usage(prompt_tokens, candidates, thoughts),
                "modelVersion": model_version,
                "responseId": response_id,
            }
        )
    return chunks


def response_json(parts: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
    """非ストリーミング応答 (すべてのパーツを 1 つの候補に)。"""
    chunks = response_chunks(parts, pieces=1, **options)
    merged = chunks[-1]
    merged["candidates"][0]["content"]["parts"] = [c["candidates"][0]["content"]["parts"][0] for c in chunks]
    if not parts:
        merged["candidates"][0]["content"]["parts"] = []
    return merged


def hash_vector(text: str, dimension: int = 8) -> list[float]:
    """文字列から決定的なベクトル (規則モードの埋め込み)。"""
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 4) for i in range(dimension)]


# ---------------------------------------------------------------- 要求の検証

# 中身が利用者のデータ (引数、結果、スキーマ) なので、キー名を変えずにそのまま残すフィールド
_OPAQUE = {"args", "response", "parameters", "parametersJsonSchema", "responseSchema", "responseJsonSchema"}


def camel_case(value: Any) -> Any:
    """snake_case のフィールド名を camelCase にそろえる (proto3 の JSON はどちらも受け付ける)。

    公式 SDK (google-genai 3.x) は一部を snake_case で送る (``parameters_json_schema``、``thinking_config`` の中身)。
    """
    if isinstance(value, list):
        return [camel_case(v) for v in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        head, *rest = key.split("_")
        name = head + "".join(word[:1].upper() + word[1:] for word in rest)
        out[name] = item if name in _OPAQUE else camel_case(item)
    return out


def validate_request(body: Any, *, thinking: bool) -> str | None:
    """``GenerateContentRequest`` を検証し、本物が 400 にするものは文言を返す。"""
    if not isinstance(body, dict) or not isinstance(body.get("contents"), list) or not body["contents"]:
        return "* GenerateContentRequest.contents: contents is not specified"
    for tool in body.get("tools") or []:
        for decl in tool.get("functionDeclarations") or []:
            if "parameters" in decl and "parametersJsonSchema" in decl:
                return f"function_declarations[{decl.get('name')}]: parameters and parameters_json_schema are mutually exclusive"
    previous: dict[str, Any] | None = None
    for i, content in enumerate(body["contents"]):
        if content.get("role") not in ("user", "model"):
            return f"* GenerateContentRequest.contents[{i}].role: Please use a valid role: user, model."
        problem = _check_signatures(i, content) or _check_responses(i, previous, content)
        if problem:
            return problem
        previous = content
    if thinking:
        return _check_current_turn_signature(body["contents"])
    return None


def _check_signatures(i: int, content: dict[str, Any]) -> str | None:
    """model の番の署名は、偽サーバーが出したとおり (中身と一致) でなければならない。"""
    for part in content.get("parts") or []:
        signature = part.get("thoughtSignature")
        if signature is None:
            continue
        body = {k: v for k, v in part.items() if k != "thoughtSignature"}
        if _signature_bytes(signature) != _signature_bytes(sign(body)):
            return f"contents[{i}]: Corrupted thought signature."
    return None


def _signature_bytes(signature: str) -> bytes | None:
    """署名を bytes にする。proto3 の JSON の bytes は標準と URL-safe の base64 のどちらでもよい (SDK は後者で送り返す)。"""
    text = str(signature).replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return None


def _check_responses(i: int, previous: dict[str, Any] | None, content: dict[str, Any]) -> str | None:
    """関数呼び出しの直後の user の番は、呼び出しと同じ数の結果 (ID があれば同じ ID) を持つ。"""
    if previous is None or previous.get("role") != "model":
        return None
    calls = [p["functionCall"] for p in previous.get("parts") or [] if "functionCall" in p]
    if not calls:
        return None
    responses = [p["functionResponse"] for p in content.get("parts") or [] if "functionResponse" in p]
    if content.get("role") != "user" or len(responses) != len(calls):
        return (
            "Please ensure that the number of function response parts is equal to the number of function call "
            "parts of the function call turn."
        )
    for call, response in zip(calls, responses, strict=True):
        if call.get("id") and response.get("id") != call["id"]:
            return f"contents[{i}]: function response id {response.get('id')!r} does not match call id {call['id']!r}"
        if response.get("name") != call.get("name") or not isinstance(response.get("response"), dict):
            return f"contents[{i}]: function response for {call.get('name')!r} is missing or out of order"
    return None


def _check_current_turn_signature(contents: list[dict[str, Any]]) -> str | None:
    """思考が有効なとき、いまの番の関数呼び出しの最初のパーツは署名を持たなければならない (Gemini 3 の規則)。"""
    for content in reversed(contents):
        if content.get("role") != "model":
            continue
        calls = [p for p in content.get("parts") or [] if "functionCall" in p]
        if calls and "thoughtSignature" not in calls[0]:
            return "Function call is missing a thought_signature in functionCall parts."
        return None
    return None


# ---------------------------------------------------------------- 偽サーバー


class GeminiFake:
    """Gemini の偽サーバー。``base_url`` は ``providers.gemini.base_url`` にそのまま使える (API バージョンなし)。"""

    def __init__(self, *, rule_based: bool = False, api_key: str | None = None, with_ids: bool = False) -> None:
        """起動する。``with_ids`` なら規則モードの関数呼び出しに ``id`` を付ける (新しいモデルの振る舞い)。"""
        self.server = FakeServer(self.respond if rule_based else None)
        self.api_key = api_key
        self.with_ids = with_ids
        # 規則モードのストリームの調整: フレーム間の待ち、テキストの分割数、この数のフレームの後で止まる (キャンセルの試験用)
        self.delay_s = 0.0
        self.pieces = 3
        self.stall_after: int | None = None
        self.not_found_models = {"gemini-1.5-pro", "gemini-1.5-flash"}

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

    def __enter__(self) -> GeminiFake:
        """``with`` で使う。"""
        return self

    def __exit__(self, *exc: object) -> None:
        """``with`` を抜けたら止める。"""
        self.close()

    # -- 台本
    def stream(
        self,
        parts: list[dict[str, Any]],
        *,
        error: dict[str, Any] | None = None,
        error_after: int | None = None,
        delay_s: float = 0.0,
        break_after: int | None = None,
        stall_after: int | None = None,
        **options: Any,
    ) -> list[dict[str, Any]]:
        """SSE のストリーミング応答を積み、送るチャンクを返す。``error`` は ``error_after`` 個の後の error チャンク。"""
        chunks = response_chunks(parts, **options)
        frames = [sse_frame(c) for c in chunks]
        if error is not None:
            cut = len(frames) if error_after is None else error_after
            frames = [*frames[:cut], sse_frame(error)]
        self.server.enqueue(StreamResponse(frames, delay_s=delay_s, break_after=break_after, stall_after=stall_after))
        return chunks

    def text(self, text: str, **options: Any) -> list[dict[str, Any]]:
        """テキストだけのストリーミング応答を積む。"""
        return self.stream([text_part(text)], **options)

    def message(self, parts: list[dict[str, Any]], **options: Any) -> dict[str, Any]:
        """非ストリーミング応答を積む。"""
        body = response_json(parts, **options)
        self.server.enqueue(JSONResponse(body))
        return body

    def raw(self, body: Any, status: int = 200, headers: dict[str, str] | None = None) -> None:
        """任意の JSON 応答を積む (プロンプトが止められた応答など)。"""
        self.server.enqueue(JSONResponse(body, status, headers or {}))

    def error(self, code: int, status: str, message: str, details: list[dict[str, Any]] | None = None) -> None:
        """エラー応答を積む。"""
        self.server.enqueue(JSONResponse(error_body(code, status, message, details), code))

    def embeddings(self, vectors: list[list[float]]) -> None:
        """``:batchEmbedContents`` の応答を積む。"""
        self.server.enqueue(JSONResponse({"embeddings": [{"values": v} for v in vectors]}))

    # -- 規則
    def respond(self, request: RecordedRequest) -> Scripted:
        """規則モードの応答。"""
        match = PATH.match(request.path)
        if match is None:
            return JSONResponse(error_body(404, "NOT_FOUND", f"Method not found: {request.path}"), 404)
        key = request.headers.get("x-goog-api-key")
        if not key:
            return JSONResponse(error_body(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers."), 403)
        if self.api_key and key != self.api_key:
            return JSONResponse(api_key_invalid_body(), 400)
        model, method = match["model"], match["method"]
        if model in self.not_found_models:
            message = (
                f"models/{model} is not found for API version {match['version']}, or is not supported for {method}."
            )
            return JSONResponse(error_body(404, "NOT_FOUND", message), 404)
        body = camel_case(request.json())
        if method == "batchEmbedContents":
            return self._embed(body)
        thinking = bool(((body.get("generationConfig") or {}).get("thinkingConfig") or {}).get("includeThoughts"))
        problem = validate_request(body, thinking=thinking)
        if problem:
            return JSONResponse(error_body(400, "INVALID_ARGUMENT", problem), 400)
        parts = self.answer_parts(body, thinking)
        if method == "streamGenerateContent":
            frames = [sse_frame(c) for c in response_chunks(parts, pieces=self.pieces, model_version=model)]
            return StreamResponse(frames, delay_s=self.delay_s, stall_after=self.stall_after)
        return JSONResponse(response_json(parts, model_version=model))

    def _embed(self, body: dict[str, Any]) -> Scripted:
        """``batchEmbedContents``: 入力ごとに決定的なベクトル。"""
        out = []
        for item in body.get("requests") or []:
            text = " ".join(p.get("text", "") for p in item["content"]["parts"])
            out.append(
                {"values": hash_vector(text + (item.get("taskType") or ""), item.get("outputDimensionality") or 8)}
            )
        return JSONResponse({"embeddings": out})

    def answer_parts(self, body: dict[str, Any], thinking: bool) -> list[dict[str, Any]]:
        """規則: 関数の結果があれば引用して答え、関数名が書かれていれば呼び、それ以外はテキスト。"""
        last = body["contents"][-1]
        parts = last.get("parts") or []
        thought = [thought_part("ユーザーの依頼を検討しています。")] if thinking else []
        responses = [p["functionResponse"] for p in parts if "functionResponse" in p]
        if responses:
            quoted = "; ".join(_quote(r["response"]) for r in responses)
            return [*thought, self._signed(text_part(f"ツールの結果: {quoted}"), thinking)]
        text = " ".join(p.get("text", "") for p in parts if "text" in p)
        declarations = [d for t in body.get("tools") or [] for d in t.get("functionDeclarations") or []]
        calling = ((body.get("toolConfig") or {}).get("functionCallingConfig")) or {}
        mode, allowed = calling.get("mode"), calling.get("allowedFunctionNames") or []
        named = [d for d in declarations if d["name"] in text] if mode != "NONE" else []
        if mode == "ANY" and allowed:
            named = [d for d in named if d["name"] in allowed] or [d for d in declarations if d["name"] in allowed][:1]
        elif mode == "ANY" and not named:
            named = declarations[:1]
        if named:
            calls = []
            for i, d in enumerate(named):
                schema = d.get("parametersJsonSchema") or d.get("parameters") or {}
                call_id = f"fc_{next(_ids)}" if self.with_ids else None
                part = function_call_part(d["name"], example_object(schema), call_id)
                calls.append(self._signed(part, thinking and i == 0))
            return thought + calls
        return [*thought, self._signed(text_part(f"こんにちは。「{text}」への回答です。"), thinking)]

    @staticmethod
    def _signed(part: dict[str, Any], thinking: bool) -> dict[str, Any]:
        """思考が有効なら、パーツの中身に対する署名を付ける。"""
        if thinking:
            part["thoughtSignature"] = sign(part)
        return part


def _quote(response: dict[str, Any]) -> str:
    """``functionResponse.response`` の中身 (``output`` か ``error``) を文字列にする。"""
    value = response.get("output", response.get("error", response))
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
