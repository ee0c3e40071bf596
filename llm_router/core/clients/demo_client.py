"""デモ・プロバイダ (``demo``): ネットワークを使わず、決まった規則で応答するプロセス内のモデル。

API キーが 1 つも無いときの既定のモデル (``demo/scripted``)。フロントエンドを作る人が、キー無しで
製品の流れ (テキストのストリーム、推論、サーバー側・クライアント側のツール呼び出し、キャンセル) を
すべて確かめられるようにする。本物のモデルのふりはしない: 応答は自分がデモであることを告げる。

規則 (最後のメッセージだけを見る。決定的):
- 最後がツール結果なら、その結果を使った文章で答える。
- 算術式 (``12 * (3 + 4)`` など) があれば ``calculator``、時刻・日付の質問なら ``current_time``、
  検索・資料の依頼なら ``search_documents`` を呼ぶ (どれも、そのツールが渡されているときだけ)。
- クライアント側ツールは、名前がそのまま書かれているか、名前・説明の概念 (locale / confirm / select ...)
  に当たる語 (ロケール、確認、選択 ...) がメッセージにあれば呼ぶ。引数はスキーマから作る。
- どれにも当たらなければ、デモであることと試せることを説明する長めの日本語 (停止ボタンを試せる長さ)。
- ``reasoning`` が ``off`` 以外なら、先に短い推論を流す。使用量は文字数からの概算。
チャンクは本物のクライアントと同じ :class:`StreamAccumulator` で作るので、形はどのプロバイダとも同じ。
"""

from __future__ import annotations

import json
import re
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llm_router.core.cancel import CancelToken
from llm_router.core.clients.accumulator import StreamAccumulator
from llm_router.core.clients.interface import RetryCallback
from llm_router.core.schemas.common import (
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    Message,
    ReasoningLevel,
    StreamChunk,
    ToolDefinition,
    ToolResult,
    Usage,
)
from llm_router.core.schemas.errors import RequestCancelled
from llm_router.core.tokens import estimate_tokens

if TYPE_CHECKING:  # 型のためだけ (Hydra の import を実行時に持ち込まない)
    from llm_router.config.schema import ProviderConfig

# 埋め込みの次元の既定 (RAG は rag.hashing_dimension を EmbeddingRequest.dimensions で渡す)
_DEFAULT_DIMENSION = 512

_TIME_WORDS = re.compile(r"時刻|時間|何時|日付|今日|\btime\b|\bdate\b|\bclock\b", re.IGNORECASE)
_SEARCH_WORDS = re.compile(r"検索|資料|文書|ドキュメント|search|document", re.IGNORECASE)
_ARITHMETIC = re.compile(r"[\d.()\s]*\d[\d.()\s]*(?:[-+*/^%][\d.()\s]*\d[\d.()\s]*)+")
_JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
# 表示の断片: ASCII の単語は 1 つ、日本語は 3 文字ずつ (空白は前に付ける)
_PIECES = re.compile(r"\s*[\x21-\x7e]+|\s*[^\x00-\x7f]{1,3}|\s+")

# クライアント側ツールの概念: ツールの名前・説明に左の語があり、メッセージに右のどれかがあれば呼ぶ
_CONCEPTS: dict[str, tuple[str, ...]] = {
    "locale": ("locale", "ロケール", "言語", "language", "地域設定"),
    "confirm": ("confirm", "確認", "承認", "approve"),
    "select": ("select", "selection", "選択", "選んで", "choose"),
    "location": ("location", "位置", "場所", "現在地"),
    "clipboard": ("clipboard", "クリップボード", "コピー"),
    "notify": ("notif", "通知", "お知らせ"),
    "theme": ("theme", "テーマ", "ダークモード"),
}
_SERVER_RULE_TOOLS = ("calculator", "current_time", "search_documents")

_HELP_TEXT = (
    "こんにちは。これは llm_router のデモ・モデル (demo/scripted) です。API キーが 1 つも設定されていないため、"
    "ネットワークを使わない決まった規則で応答しています。本物の言語モデルではありませんが、"
    "テキストのストリーミング、ツール呼び出し、キャンセルといった製品の流れはすべて本物と同じイベントで確かめられます。"
    "試せること: 「12 * (3 + 4) を計算して」と送ると calculator ツールを呼びます。"
    "「今何時?」と聞くと current_time ツールを呼びます。「資料を検索して」と送ると search_documents を呼びます。"
    "クライアント側ツール (たとえば get_locale や confirm_action) を start で登録してから「ロケールを教えて」"
    "「確認して」と送ると、そのツールをブラウザに依頼します。"
    "settings.reasoning を low 以上にすると、答えの前に短い推論が流れます。"
    "この文章はわざと長めにしてあるので、流れている途中で停止ボタン (cancel) を押すと、すぐに止まり、"
    "ここまでの文章が中断済みとして履歴に残ることも確かめられます。"
    "本物のモデルを使うには、.env に OPENAI_API_KEY、ANTHROPIC_API_KEY、GEMINI_API_KEY のどれかを設定するか、"
    "Ollama を起動して model に ollama/<モデル名> を指定してください。"
)


@dataclass
class _Plan:
    """1 回の応答の中身: 推論、テキスト、ツール呼び出し (名前, 引数)。"""

    text: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    reasoning: str = ""


def split_pieces(text: str) -> list[str]:
    """テキストを表示の断片に分ける (連結すると元に戻る)。"""
    pieces = _PIECES.findall(text)
    return pieces if "".join(pieces) == text else [text]


def find_arithmetic(text: str) -> str | None:
    """メッセージの中の算術式 (数字と演算子が 1 つ以上) を探す。全角や ×÷ も受け付ける。"""
    normalized = unicodedata.normalize("NFKC", text).replace("×", "*").replace("÷", "/")
    for match in _ARITHMETIC.finditer(normalized):
        expression = match.group(0).strip()
        if expression.count("(") == expression.count(")"):
            return expression.replace("^", "**")
    return None


def sample_arguments(schema: dict[str, Any], text: str) -> dict[str, Any]:
    """スキーマの各プロパティに、それらしい値を入れた引数を作る (文字列はメッセージ、列挙は先頭)。"""
    out: dict[str, Any] = {}
    for name, prop in (schema.get("properties") or {}).items():
        out[name] = _sample_value(prop if isinstance(prop, dict) else {}, name, text)
    return out


def _sample_value(prop: dict[str, Any], name: str, text: str) -> Any:
    """1 つのプロパティの値を作る。"""
    if prop.get("enum"):
        return prop["enum"][0]
    kind = prop.get("type")
    kind = next((k for k in kind if k != "null"), "string") if isinstance(kind, list) else kind
    if kind in ("integer", "number"):
        return prop.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "array":
        return []
    if kind == "object":
        return sample_arguments(prop, text)
    return (
        text[:200] if any(w in name.lower() for w in ("message", "text", "question", "prompt", "query")) else text[:60]
    )


def _matches_client_tool(tool: ToolDefinition, text: str) -> bool:
    """メッセージがこのクライアント側ツールを求めているか (名前そのもの、または概念の語)。"""
    lowered = text.lower()
    if tool.name.lower() in lowered:
        return True
    about = f"{tool.name} {tool.description}".lower()
    return any(key in about and any(w in lowered for w in words) for key, words in _CONCEPTS.items())


def _trailing_results(messages: list[Message]) -> list[ToolResult]:
    """末尾に続くツール結果 (最後のアシスタントの呼び出しへの答え)。"""
    results: list[ToolResult] = []
    for message in reversed(messages):
        if message.role != "tool" or message.tool_result is None:
            break
        results.append(message.tool_result)
    return list(reversed(results))


def _last_user_text(messages: list[Message]) -> str:
    """最後のユーザーメッセージのテキスト。"""
    for message in reversed(messages):
        if message.role == "user":
            return message.text()
    return ""


def _describe_result(result: ToolResult) -> str:
    """ツール結果 1 つを日本語の 1 文にする。"""
    if result.is_error:
        return f"「{result.name}」はエラーになりました: {result.as_text()}"
    value = result.result
    if result.name == "calculator":
        return f"計算結果は {value} です。"
    if result.name == "current_time":
        return f"現在の時刻は {value} です。"
    if result.name == "search_documents" and isinstance(value, dict):
        hits = value.get("results") or []
        if not hits:
            return f"資料を検索しましたが、該当する文書はありませんでした ({value.get('message', '')})。"
        lines = [f"資料を検索し、{len(hits)} 件見つかりました。"]
        for hit in hits[:3]:
            source = hit.get("source") or hit.get("title") or "?"
            snippet = str(hit.get("text") or hit.get("passage") or "")[:80]
            lines.append(f"- {source}: {snippet}")
        return "\n".join(lines)
    return f"「{result.name}」の結果は {result.as_text()} です。"


def plan_response(request: ChatRequest) -> _Plan:
    """リクエストの最後のメッセージから、決まった規則で応答を決める。"""
    results = _trailing_results(request.messages)
    if results:
        body = "\n".join(_describe_result(r) for r in results)
        plan = _Plan(f"{body}\n(デモ・モデルがツールの結果をそのまま伝えています。)")
    else:
        plan = _plan_for_user(request, _last_user_text(request.messages))
    if request.reasoning != "off":
        what = "ツールを呼ぶ" if plan.calls else "文章で答える"
        plan.reasoning = f"ユーザーのメッセージを読みました。規則に照らすと、ここでは{what}のがよさそうです。"
    return plan


def _plan_for_user(request: ChatRequest, text: str) -> _Plan:
    """ユーザーのメッセージに対する応答 (ツール呼び出しか説明文)。"""
    choice = request.tool_choice
    tools = {} if choice is not None and choice.mode == "none" else {t.name: t for t in request.tools}
    calls: list[tuple[str, dict[str, Any]]] = []
    expression = find_arithmetic(text)
    if expression and "calculator" in tools:
        calls.append(("calculator", {"expression": expression}))
    if _TIME_WORDS.search(text) and "current_time" in tools:
        has_tz = "timezone" in (tools["current_time"].parameters.get("properties") or {})
        zone = "Asia/Tokyo" if _JAPANESE.search(text) else "UTC"
        calls.append(("current_time", {"timezone": zone} if has_tz else {}))
    if _SEARCH_WORDS.search(text) and "search_documents" in tools:
        calls.append(("search_documents", {"query": text, "top_k": 3}))
    for name, tool in tools.items():
        if name not in _SERVER_RULE_TOOLS and _matches_client_tool(tool, text):
            calls.append((name, sample_arguments(tool.parameters, text)))
    if choice is not None and choice.mode == "tool" and choice.name in tools and not calls:
        calls.append((choice.name, sample_arguments(tools[choice.name].parameters, text)))
    if request.parallel_tool_calls is False:
        calls = calls[:1]
    if calls:
        names = "、".join(name for name, _ in calls)
        return _Plan(f"ツールを使います ({names})。", calls)
    return _Plan(_HELP_TEXT)


class DemoClient:
    """デモ・プロバイダのクライアント (ChatClient の形。ネットワークを使わない)。"""

    provider = "demo"

    def __init__(self, config: ProviderConfig, api_key: str | None = None) -> None:
        """設定 (``stream_delay_s`` を使う) を受け取る。キーは使わない。"""
        self.config = config

    def __repr__(self) -> str:
        """表現。"""
        return "DemoClient()"

    def chat_stream(
        self, request: ChatRequest, *, cancel: CancelToken | None = None, on_retry: RetryCallback | None = None
    ) -> Iterator[StreamChunk]:
        """規則で決めた応答を、断片ごとに ``stream_delay_s`` の間を置いて流す。キャンセルで即座に止まる。"""
        plan = plan_response(request)
        acc = StreamAccumulator(self.provider, request.model)
        prompt = "".join(m.text() or (m.tool_result.as_text() if m.tool_result else "") for m in request.messages)
        usage = Usage(input_tokens=estimate_tokens(prompt))
        yield from acc.set_usage(usage)
        if plan.reasoning:
            for piece in split_pieces(plan.reasoning):
                self._pause(cancel)
                yield from acc.reasoning_delta(piece)
            yield from acc.reasoning_end()
        for piece in split_pieces(plan.text):
            self._pause(cancel)
            yield from acc.text(piece)
        arguments_text = ""
        for index, (name, arguments) in enumerate(plan.calls):
            self._pause(cancel)
            raw = json.dumps(arguments, ensure_ascii=False)
            arguments_text += raw
            yield from acc.tool_start(index, None, name)
            half = max(1, len(raw) // 2)
            for part in (raw[:half], raw[half:]):
                yield from acc.tool_args(index, part)
            yield from acc.tool_end(index)
        self._pause(cancel)
        reasoning = estimate_tokens(plan.reasoning)
        output = estimate_tokens(plan.text + arguments_text) + reasoning
        yield from acc.set_usage(Usage(usage.input_tokens, output, reasoning))
        yield from acc.finish("stop")

    def _pause(self, cancel: CancelToken | None) -> None:
        """断片の間の待ち。キャンセルのトークンで待つので、取り消しは即座に効く。"""
        delay = self.config.stream_delay_s
        if cancel is not None:
            if cancel.wait(delay) if delay > 0 else cancel.cancelled:
                raise RequestCancelled("request cancelled")
        elif delay > 0:
            time.sleep(delay)

    def embed(
        self, request: EmbeddingRequest, *, cancel: CancelToken | None = None, on_retry: RetryCallback | None = None
    ) -> EmbeddingResponse:
        """文字 n-gram の特徴ハッシングで埋め込む (語彙的な類似で、意味的ではない)。"""
        from llm_router.core.hashing_embedder import hash_embed

        if cancel is not None:
            cancel.raise_if_cancelled()
        vectors = hash_embed(list(request.inputs), request.dimensions or _DEFAULT_DIMENSION)
        tokens = sum(estimate_tokens(t) for t in request.inputs)
        return EmbeddingResponse(vectors, model=request.model, usage=Usage(input_tokens=tokens))

    def tool_warnings(self, tools: list[ToolDefinition], model: str) -> list[str]:
        """デモはスキーマをそのまま受け取るので警告は無い。"""
        return []

    def reasoning_warning(self, model: str, level: ReasoningLevel) -> str | None:
        """デモは推論を (定型文で) 流せるので警告は無い。"""
        return None

    def close(self) -> None:
        """閉じるものは無い。"""
