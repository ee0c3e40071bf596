"""台本どおりに応答する偽のモデル (ChatClient) と、テスト用のルーター・ツールのレジストリ。

台本と実際の呼び出しが食い違えば (想定外の呼び出し、期待に合わないリクエスト、使われずに残った台本)
``failures`` に記録し、``assert_done()`` で失敗させる (docs/design.md 3 章、openai-agents-python の FakeModel と同じ考え方)。
チャンクは本物のクライアントと同じ :class:`StreamAccumulator` で作る。
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from llm_router.core.cancel import CancelToken
from llm_router.core.clients.accumulator import StreamAccumulator
from llm_router.core.schemas.common import ChatRequest, StreamChunk, ToolDefinition, Usage
from llm_router.core.schemas.errors import MissingCredentialError, ProviderError, RequestCancelled

# ---------------------------------------------------------------- 台本の 1 手


@dataclass
class Text:
    """テキストを単語ごとに流す。"""

    text: str

    def play(
        self, acc: StreamAccumulator, model: ScriptedModel, cancel: CancelToken | None, on_retry: Any
    ) -> Iterator[StreamChunk]:
        """空白で区切った断片ごとに ``TextDelta``。"""
        words = self.text.split(" ")
        for i, word in enumerate(words):
            yield from acc.text(word if i == len(words) - 1 else word + " ")


@dataclass
class Reason:
    """推論を流す (署名つき)。"""

    text: str
    signature: str | None = "sig-SECRET-signature"

    def play(
        self, acc: StreamAccumulator, model: ScriptedModel, cancel: CancelToken | None, on_retry: Any
    ) -> Iterator[StreamChunk]:
        """``ReasoningStart`` / ``ReasoningDelta`` / ``ReasoningEnd`` を流す。"""
        for word in self.text.split(" "):
            yield from acc.reasoning_delta(word + " ")
        yield from acc.reasoning_end(signature=self.signature)


@dataclass
class Call:
    """ツール呼び出しを start / delta (2 つに分けて) / end で流す。``arguments`` は dict か生の文字列。"""

    id: str
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)

    def play(
        self, acc: StreamAccumulator, model: ScriptedModel, cancel: CancelToken | None, on_retry: Any
    ) -> Iterator[StreamChunk]:
        """番号は登場順。"""
        raw = self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)
        index = model.call_index
        model.call_index += 1
        yield from acc.tool_start(index, self.id, self.name)
        half = len(raw) // 2
        yield from acc.tool_args(index, raw[:half] or raw)
        if half:
            yield from acc.tool_args(index, raw[half:])
        yield from acc.tool_end(index)


@dataclass
class Use:
    """使用量を報告する。"""

    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0

    def play(
        self, acc: StreamAccumulator, model: ScriptedModel, cancel: CancelToken | None, on_retry: Any
    ) -> Iterator[StreamChunk]:
        """``UsageUpdate`` を流す。"""
        yield from acc.set_usage(Usage(self.input_tokens, self.output_tokens, self.reasoning_tokens))


@dataclass
class Fail:
    """例外を投げる (プロバイダの失敗の代わり)。"""

    error: Exception

    def play(
        self, acc: StreamAccumulator, model: ScriptedModel, cancel: CancelToken | None, on_retry: Any
    ) -> Iterator[StreamChunk]:
        """投げるだけ。"""
        raise self.error
        yield  # pragma: no cover


@dataclass
class Block:
    """``release`` がセットされるかキャンセルされるまで止まる (上流が止まったストリームの代わり)。

    キャンセルはトークンのコールバックで起こす: 本物のクライアントがソケットを shutdown するのと同じ。
    """

    release: threading.Event = field(default_factory=threading.Event)
    reached: threading.Event = field(default_factory=threading.Event)

    def play(
        self, acc: StreamAccumulator, model: ScriptedModel, cancel: CancelToken | None, on_retry: Any
    ) -> Iterator[StreamChunk]:
        """待って、キャンセルなら ``RequestCancelled``。"""
        handle = cancel.add_callback(self.release.set) if cancel is not None else 0
        self.reached.set()
        self.release.wait(30)
        if cancel is not None:
            cancel.remove_callback(handle)
            if cancel.cancelled:
                model.cancelled_streams += 1
                raise RequestCancelled("request cancelled")
        return
        yield  # pragma: no cover


@dataclass
class RetryNotice:
    """クライアントの再試行を ``on_retry`` で知らせる (待たない)。"""

    wait_s: float
    error: ProviderError

    def play(
        self, acc: StreamAccumulator, model: ScriptedModel, cancel: CancelToken | None, on_retry: Any
    ) -> Iterator[StreamChunk]:
        """``on_retry(attempt, wait_s, error)`` を呼ぶ。"""
        model.retry_attempt += 1
        if on_retry is not None:
            on_retry(model.retry_attempt, self.wait_s, self.error)
        return
        yield  # pragma: no cover


@dataclass
class Turn:
    """モデル呼び出し 1 回ぶんの台本。``expect(request)`` は食い違いの説明 (合っていれば ``None``) を返す。"""

    ops: list[Any]
    finish: str = "stop"
    expect: Callable[[ChatRequest], str | None] | None = None


class ScriptedModel:
    """台本どおりに応答する ChatClient。"""

    def __init__(self, *turns: Turn, provider: str = "scripted") -> None:
        """台本 (呼び出し順の :class:`Turn`) を受け取る。"""
        self.provider = provider
        self.turns = deque(turns)
        self.requests: list[ChatRequest] = []
        self.failures: list[str] = []
        self.call_index = 0
        self.retry_attempt = 0
        self.cancelled_streams = 0

    def chat_stream(
        self, request: ChatRequest, *, cancel: CancelToken | None = None, on_retry: Any = None
    ) -> Iterator[StreamChunk]:
        """次の台本を流す。台本が尽きていれば失敗を記録して例外。"""
        self.requests.append(request)
        if not self.turns:
            self.failures.append(f"unexpected call #{len(self.requests)}")
            raise AssertionError("the script has no more turns")
        turn = self.turns.popleft()
        problem = turn.expect(request) if turn.expect else None
        if problem:
            self.failures.append(f"call #{len(self.requests)}: {problem}")
            raise AssertionError(problem)
        return self._play(turn, request, cancel, on_retry)

    def _play(
        self, turn: Turn, request: ChatRequest, cancel: CancelToken | None, on_retry: Any
    ) -> Iterator[StreamChunk]:
        """台本の手を順に流し、最後に ``StreamEnd``。"""
        self.call_index = 0
        self.retry_attempt = 0
        acc = StreamAccumulator(self.provider, request.model)
        for op in turn.ops:
            if cancel is not None and cancel.cancelled:
                raise RequestCancelled("request cancelled")
            yield from op.play(acc, self, cancel, on_retry)
        yield from acc.finish(turn.finish)  # type: ignore[arg-type]

    def assert_done(self) -> None:
        """台本をすべて使い、食い違いが無かったことを確かめる。"""
        assert not self.failures, self.failures
        assert not self.turns, f"{len(self.turns)} scripted turn(s) were never called"

    def tool_warnings(self, tools: list[ToolDefinition], model: str) -> list[str]:
        """警告なし。"""
        return []

    def reasoning_warning(self, model: str, level: str) -> str | None:
        """警告なし。"""
        return None

    def close(self) -> None:
        """何もしない。"""


# ---------------------------------------------------------------- ルーターとレジストリの代わり


@dataclass(frozen=True)
class Route:
    """ルーターの ``ModelRoute`` と同じ形。"""

    provider: str
    model: str

    @property
    def spec(self) -> str:
        """``provider/model`` の形の名前。"""
        return f"{self.provider}/{self.model}"


class FakeRouter:
    """エージェントの ``ModelSource`` の口を持つ偽のルーター。``clients`` に無いプロバイダはキーが無い扱い。"""

    def __init__(self, clients: dict[str, Any], chain: list[str] | None = None) -> None:
        """プロバイダ名 → クライアント、経路 (``provider/model`` の並び) を受け取る。"""
        self.clients = clients
        self.specs = chain or [f"{next(iter(clients))}/m1"]
        self.chain_requests: list[str | None] = []
        # 本物の ModelRouter の設定の代わり (文脈の大きさ・秘密の値を試すテストが入れる)
        self.settings: Any = None

    def chain(self, spec: str | None) -> list[Route]:
        """設定された経路を返す。"""
        self.chain_requests.append(spec)
        return [Route(*s.split("/", 1)) for s in self.specs]

    def client(self, provider: str) -> Any:
        """クライアントを返す (無ければ MissingCredentialError)。"""
        if provider not in self.clients:
            raise MissingCredentialError(provider, [f"{provider.upper()}_API_KEY"])
        return self.clients[provider]

    def context_tokens(self, provider: str, model: str) -> int | None:
        """``settings.config.providers.<p>`` (テストが入れたもの) があれば本物と同じ規則で文脈の大きさを返す。"""
        from llm_router.config.schema import context_tokens_for

        providers = getattr(getattr(self.settings, "config", None), "providers", None)
        config = getattr(providers, provider, None)
        return context_tokens_for(config, model) if config is not None else None

    def retry_backoff_s(self, provider: str) -> float:
        """クライアントの再試行設定 (あれば) の最初の待ち時間。偽のモデルは 0。"""
        retry = getattr(getattr(self.clients.get(provider), "config", None), "retry", None)
        return float(getattr(retry, "initial_backoff_s", 0.0) or 0.0)

    def secret_values(self) -> tuple[str, ...]:
        """``settings.secrets`` (テストが入れたもの) の秘密の値。無ければ空。"""
        secrets = getattr(self.settings, "secrets", None)
        return tuple(secrets.all_values()) if secrets is not None else ()


@dataclass
class FakeTool:
    """サーバー側ツールの代わり。"""

    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Any]


class FakeRegistry:
    """``ToolRegistry`` と同じ呼び出し口 (names / get / definitions / call) を持つレジストリ。"""

    def __init__(self, *tools: FakeTool) -> None:
        """ツールを受け取る。"""
        self.tools = {t.name: t for t in tools}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def names(self) -> list[str]:
        """名前の一覧。"""
        return list(self.tools)

    def get(self, name: str) -> FakeTool:
        """名前から引く。"""
        return self.tools[name]

    def definitions(self, names: list[str]) -> list[ToolDefinition]:
        """正規形の定義。"""
        return [ToolDefinition(n, self.tools[n].description, self.tools[n].parameters) for n in names]

    def runs_off_hub(self, name: str) -> bool:
        """本物の登録簿と同じく、ツールの関数はハブの外の OS スレッドで動かす。"""
        return True

    def call(self, name: str, arguments: dict[str, Any], cancel: CancelToken, validated: bool = False) -> Any:
        """関数を呼ぶ (``cancel`` を渡す)。``validated`` は本物と同じ口 (検証はエージェントが済ませている)。"""
        self.calls.append((name, arguments))
        return self.tools[name].func(cancel=cancel, **arguments)


# ---------------------------------------------------------------- 実行の組み立て


def calculator_tool() -> FakeTool:
    """四則演算だけの計算ツール (テスト用)。"""

    def calculate(expression: str, cancel: CancelToken) -> float:
        """数字と演算子だけの式を計算する。"""
        if set(expression) - set("0123456789+-*/(). "):
            raise ValueError(f"not arithmetic: {expression}")
        return eval(expression, {"__builtins__": {}})

    schema = {"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}
    return FakeTool("calculator", "計算する", schema, calculate)


def blocking_tool(started: threading.Event, release: threading.Event, seen_cancel: threading.Event) -> FakeTool:
    """``release`` か取り消しまで止まるツール。取り消しを受け取ったら ``seen_cancel`` をセットする。"""

    def slow(cancel: CancelToken) -> str:
        """止まって待つ。"""
        started.set()
        cancel.add_callback(release.set)
        release.wait(30)
        if cancel.cancelled:
            seen_cancel.set()
            return "stopped"
        return "finished"

    return FakeTool("slow", "遅いツール", {"type": "object", "properties": {}}, slow)


def client_tool(name: str = "get_locale", required: tuple[str, ...] = ()) -> ToolDefinition:
    """クライアント側ツールの定義。"""
    props = {r: {"type": "string"} for r in required}
    return ToolDefinition(
        name, "クライアントで実行する", {"type": "object", "properties": props, "required": list(required)}
    )


def make_run(
    model: Any,
    *,
    registry: Any = None,
    thread: Any = None,
    content: str = "こんにちは",
    router: Any = None,
    run_id: str = "run-1",
    **agent_options: Any,
):
    """偽モデルで :class:`AgentRun` を組み立て、(run, sink) を返す。"""
    from llm_router.agent import AgentRun, CollectingSink, ThreadState
    from llm_router.config.schema import AgentConfig

    options = {
        "server_tools": list(registry.names()) if registry else [],
        "client_tool_timeout_s": 5.0,
        **agent_options,
    }
    sink = CollectingSink()
    run = AgentRun(
        run_id,
        thread if thread is not None else ThreadState(thread_id="t1"),
        content,
        router if router is not None else FakeRouter({model.provider: model}),
        registry,
        sink,
        AgentConfig(**options),
    )
    return run, sink


def start(run: Any) -> threading.Thread:
    """実行を別スレッドで始める。"""
    thread = threading.Thread(target=run.run, daemon=True)
    thread.start()
    return thread


def assert_valid_history(history: list[Any]) -> None:
    """どのプロバイダにも送れる履歴であること: すべてのツール呼び出しに、続くツール結果がある。"""
    open_calls: list[str] = []
    for message in history:
        if message.role == "tool":
            assert message.tool_result.tool_call_id in open_calls, "a tool result without its call"
            open_calls.remove(message.tool_result.tool_call_id)
            continue
        assert not open_calls, f"tool calls without results: {open_calls}"
        if message.role == "assistant":
            open_calls = [c.id for c in message.tool_calls]
    assert not open_calls, f"tool calls without results: {open_calls}"
