"""1 ステップ = モデル呼び出し 1 回 (+ そのツール)。ステップは「次に何が起こるか」を小さな値で返す。

- :class:`Continue` 次のステップへ / :class:`Finished` 正常終了 / :class:`Failed` 失敗 / :class:`Cancelled` 取り消し。
- 失敗した試行の判定 (:data:`Decision`) は :class:`RetrySameModel` (同じモデルでやり直す) / :class:`NextModel`
  (連鎖の次のモデルへ) / :class:`Failed` / :class:`Cancelled`。
- :class:`ModelCall` はストリームのチャンクを 1 種類につき 1 つの小さなメソッドでイベントに変える。
  出力が始まる前の再試行可能な失敗は設定のフォールバックで次のモデルへ (``retry`` イベント)、出力が
  始まった後の再試行可能な失敗はそのステップの出力を捨てて ``agent.step_reset_retries`` 回までやり直す
  (``step_reset``、Vercel AI SDK の reset-step と同じ考え方)。HTTP 200 の後、出力の前にストリームの中で
  届いた再試行可能なエラー (Anthropic の ``overloaded_error`` イベントなど、クライアントの再試行の外にある失敗) は、
  切り替え先が無ければ同じモデルで待ってから同じ回数までやり直す (``retry`` イベント)。それ以外は ``run_error``。
参考: openai-agents-python ``run_internal/run_steps.py`` (ステップが次の動作を値で返す)。
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_router.agent.context import RunContext, logger
from llm_router.agent.errors import error_payload, is_retryable
from llm_router.agent.tool_execution import announce, run_tools
from llm_router.agent.toolbox import CLIENT
from llm_router.core.schemas import events as ev
from llm_router.core.schemas.common import (
    FinishReason,
    Message,
    ReasoningDelta,
    ReasoningEnd,
    ReasoningStart,
    StreamEnd,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    UsageUpdate,
)
from llm_router.core.schemas.errors import (
    LLMRouterError,
    MissingCredentialError,
    ProviderError,
    ProviderStreamBrokenError,
    RequestCancelled,
)

if TYPE_CHECKING:
    from llm_router.core.router import ModelRoute


@dataclass(frozen=True)
class Continue:
    """次のステップへ進む。"""


@dataclass(frozen=True)
class Finished:
    """実行は正常に終わった (finish_reason は stop / max_steps / length / client_tools)。"""

    finish_reason: str
    text: str


@dataclass(frozen=True)
class Failed:
    """実行は失敗した (``error`` は run_error の error オブジェクト)。"""

    error: dict[str, Any]


@dataclass(frozen=True)
class Cancelled:
    """実行は取り消された。"""

    reason: str


Outcome = Continue | Finished | Failed | Cancelled


@dataclass(frozen=True)
class ModelResult:
    """モデル呼び出しが最後まで流れた結果。"""

    message: Message
    finish_reason: FinishReason
    usage: Usage


CLIENT_TOOLS = "client_tools"


@dataclass(frozen=True)
class RetrySameModel:
    """(ステップの中の判定) 失敗した試行を捨て、同じモデルでもう一度呼ぶ。"""


@dataclass(frozen=True)
class NextModel:
    """(ステップの中の判定) 出力前の失敗なので、フォールバックの連鎖の次のモデルで呼ぶ。"""


# 失敗した試行の後にどうするか: やり直す (同じモデル / 次のモデル) か、実行の終わり方
Decision = RetrySameModel | NextModel | Failed | Cancelled


def run_step(ctx: RunContext, step: int) -> Outcome:
    """ステップ ``step`` を 1 つ進め、次に何が起こるかを返す。"""
    ctx.progress.begin(step)
    if not announce_trim(ctx, step):
        return Cancelled(ctx.token.reason or "client")
    if not ctx.events.send(ev.StepStarted(step, ctx.route.spec)):
        return Cancelled(ctx.token.reason or "client")
    result = ModelCall(ctx, step).run()
    if not isinstance(result, ModelResult):
        return result
    ctx.events.send(ev.StepFinished(step, result.finish_reason, ctx.progress.step_usage()))
    if ctx.token.cancelled:
        return Cancelled(ctx.token.reason or "client")
    if not result.message.tool_calls:
        if ctx.after_step:
            return Cancelled(ctx.after_step)
        return Finished("length" if result.finish_reason == "length" else "stop", result.message.text())
    if not run_tools(ctx, result.message):
        return Cancelled(ctx.token.reason or "client")
    if ctx.end_on_client_tools and ctx.client_calls.awaiting_ids():
        # AG-UI のフロントエンドツール: 告知したところで実行を終え、答えは次の実行の履歴で受け取る
        return Finished(CLIENT_TOOLS, result.message.text())
    if not ctx.commit_step():
        return Cancelled(ctx.token.reason or "client")
    if ctx.after_step:
        return Cancelled(ctx.after_step)
    if step >= ctx.max_steps:
        return Finished("max_steps", result.message.text())
    return Continue()


def announce_trim(ctx: RunContext, step: int) -> bool:
    """このステップのリクエストで古いターンを外すなら、ステップの最初 (``step_started`` の前) に
    ``context_trimmed`` を送る。切り替え先のモデルで外す数が変わったときは :meth:`ModelCall._stream` が
    そのリクエストの前にもう 1 回送る。実行が既に終わっていれば偽。
    """
    ctx.build_request(ctx.route.model)
    dropped, estimated = ctx.trimmed
    if not dropped:
        return not ctx.events.closed
    return ctx.events.send(ev.ContextTrimmed(step, dropped, estimated))


class ModelCall:
    """1 ステップのモデル呼び出し (フォールバックとステップのやり直しを含む)。"""

    def __init__(self, ctx: RunContext, step: int) -> None:
        """共有状態とステップ番号を受け取る。"""
        self.ctx = ctx
        self.step = step
        self.attempt = 0
        self.resets = 0
        self._handlers = {
            TextDelta: self._on_text,
            ReasoningStart: self._on_reasoning_start,
            ReasoningDelta: self._on_reasoning_delta,
            ReasoningEnd: self._on_reasoning_end,
            ToolCallStart: self._on_tool_start,
            ToolCallDelta: self._on_tool_delta,
            ToolCallEnd: self._on_tool_end,
            UsageUpdate: self._on_usage,
            StreamEnd: self._on_end,
        }
        self._new_attempt()

    def _new_attempt(self) -> None:
        """試行ごとの状態 (開いているテキスト・推論の区切り、出力の有無) を空にする。"""
        self.output_began = False
        self.end: StreamEnd | None = None
        self._text_id: str | None = None
        self._text: list[str] = []
        self._reasoning_id: str | None = None
        self._reasoning: list[str] = []
        self._client_ids: list[str] = []
        # この試行でクライアント (BaseClient.request) が再試行したか。したなら出力前の失敗をここで重ねて再試行しない
        self._client_retried = False

    # ------------------------------------------------------------ 呼び出しと失敗の扱い

    def run(self) -> ModelResult | Outcome:
        """最後まで流れたら :class:`ModelResult`、そうでなければ実行の終わり方を返す。"""
        while True:
            route = self.ctx.route
            try:
                end = self._stream(route)
            except Exception as exc:
                decision = self._on_failure(exc, route)
                if isinstance(decision, RetrySameModel | NextModel):
                    continue
                return decision
            self.ctx.progress.assistant = end.message
            return ModelResult(end.message, end.finish_reason, end.usage)

    def _stream(self, route: ModelRoute) -> StreamEnd:
        """1 回ストリームを読み切り、チャンクをイベントにする。"""
        self._new_attempt()
        client = self.ctx.router.client(route.provider)
        announced = self.ctx.trimmed[0]
        request = self.ctx.build_request(route.model)
        if self.ctx.trimmed[0] != announced:
            self.ctx.events.send(ev.ContextTrimmed(self.step, *self.ctx.trimmed))
        stream = client.chat_stream(request, cancel=self.ctx.token, on_retry=self._on_retry)
        try:
            for chunk in stream:
                if self.ctx.events.closed:
                    raise RequestCancelled("run already ended")
                handler = self._handlers.get(type(chunk))
                if handler is not None:  # 未知のチャンクの種類は無視する (新しい種類が増えても壊れない)
                    handler(chunk)
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        if self.end is None:
            raise ProviderStreamBrokenError("the stream ended without its end", provider=route.provider)
        self._close_text()
        self._close_reasoning("")
        return self.end

    def _on_failure(self, exc: Exception, route: ModelRoute) -> Decision:
        """失敗を分類する: 同じモデルでやり直す / 次のモデルへ / 終わり方 (:class:`Failed` か :class:`Cancelled`)。"""
        ctx = self.ctx
        if ctx.token.cancelled or isinstance(exc, RequestCancelled):
            return Cancelled(ctx.token.reason or "client")
        if not isinstance(exc, LLMRouterError):
            logger.exception("unexpected error in step %d of run %s", self.step, ctx.run_id)
        phase = "mid_stream" if self.output_began else "before_output"
        error = error_payload(exc, phase, route.provider, ctx.secrets)
        if not self.output_began:
            can_fall_back = is_retryable(exc) or (isinstance(exc, MissingCredentialError) and ctx.chain_index > 0)
            if can_fall_back and ctx.chain_index + 1 < len(ctx.chain):
                ctx.chain_index += 1
                self.attempt += 1
                with ctx.events.lock:
                    ctx.progress.discard_attempt()
                    ctx.events.send(ev.Retry(self.step, self.attempt, 0, error["code"], ctx.route.spec))
                return NextModel()
            if is_retryable(exc) and not self._client_retried and self.resets < ctx.agent_config.step_reset_retries:
                return self._retry_same_before_output(exc, error["code"])
            return Failed(error)
        if is_retryable(exc) and self.resets < ctx.agent_config.step_reset_retries:
            self.resets += 1
            self._reset(error["code"])
            return RetrySameModel()
        return Failed(error)

    def _retry_same_before_output(self, exc: Exception, reason: str) -> Decision:
        """出力前の失敗をクライアントが再試行していないとき、待ってから同じモデルでやり直す。

        docs/protocol.md 4 章「出力前の失敗はバックオフつきで再試行 (``retry`` イベント)」。待ち時間はエラーの
        Retry-After、無ければそのプロバイダの再試行設定の最初の待ち時間。
        """
        self.resets += 1
        self.attempt += 1
        wait_s = getattr(exc, "retry_after_s", None)
        if wait_s is None:
            wait_s = self.ctx.router.retry_backoff_s(self.ctx.route.provider)
        with self.ctx.events.lock:
            self.ctx.progress.discard_attempt()
            self.ctx.events.send(ev.Retry(self.step, self.attempt, int(wait_s * 1000), reason, self.ctx.route.spec))
        if self.ctx.token.wait(wait_s):
            return Cancelled(self.ctx.token.reason or "client")
        return RetrySameModel()

    def _reset(self, reason: str) -> None:
        """この試行の出力を無効にする: ``step_reset`` を送り、途中経過と告知済みのクライアント呼び出しを捨てる。"""
        with self.ctx.events.lock:
            self.ctx.progress.discard_attempt()
            self.ctx.events.send(ev.StepReset(self.step, reason))
        self.ctx.client_calls.close_ids(self._client_ids)

    def _on_retry(self, attempt: int, wait_s: float, error: ProviderError) -> None:
        """クライアントの再試行を ``retry`` イベントにする (番号はステップの中で通し番号)。"""
        self._client_retried = True
        self.attempt += 1
        self.ctx.events.send(ev.Retry(self.step, self.attempt, int(wait_s * 1000), error.code, self.ctx.route.spec))

    # ------------------------------------------------------------ チャンクごとの小さなメソッド

    def _on_text(self, chunk: TextDelta) -> None:
        """テキストの断片: 最初なら ``text_started``、そして ``text_delta``。"""
        if self._text_id is None:
            self._close_reasoning("")
            self._text_id = "msg_" + uuid.uuid4().hex[:16]
            self.output_began = True
            self.ctx.events.send(ev.TextStarted(self._text_id))
        self._text.append(chunk.text)
        self.ctx.progress.text_parts.append(chunk.text)
        self.ctx.events.send(ev.TextDelta(self._text_id, chunk.text))

    def _on_reasoning_start(self, chunk: ReasoningStart) -> None:
        """推論の始まり: ``reasoning_started``。"""
        self._close_text()
        self._close_reasoning("")
        self._reasoning_id = "rsn_" + uuid.uuid4().hex[:16]
        self.output_began = True
        self.ctx.events.send(ev.ReasoningStarted(self._reasoning_id))

    def _on_reasoning_delta(self, chunk: ReasoningDelta) -> None:
        """推論の断片: ``reasoning_delta`` (開始が無ければ先に開始を送る)。"""
        if self._reasoning_id is None:
            self._on_reasoning_start(ReasoningStart())
        self._reasoning.append(chunk.text)
        self.ctx.events.send(ev.ReasoningDelta(self._reasoning_id, chunk.text))  # type: ignore[arg-type]

    def _on_reasoning_end(self, chunk: ReasoningEnd) -> None:
        """推論の終わり: ``reasoning_finished`` (テキストだけ。署名は送らない)。"""
        if self._reasoning_id is None and chunk.part.text:
            self._on_reasoning_start(ReasoningStart())
        self._close_reasoning(chunk.part.text)

    def _on_tool_start(self, chunk: ToolCallStart) -> None:
        """ツール呼び出しの始まり: ``tool_call_started``。"""
        self._close_text()
        self._close_reasoning("")
        self.output_began = True
        self.ctx.events.send(ev.ToolCallStarted(chunk.id, chunk.name, self.ctx.toolbox.executor(chunk.name)))

    def _on_tool_delta(self, chunk: ToolCallDelta) -> None:
        """引数の断片: ``tool_call_delta``。"""
        self.ctx.events.send(ev.ToolCallDelta(chunk.id, chunk.delta))

    def _on_tool_end(self, chunk: ToolCallEnd) -> None:
        """呼び出しの完成: 検証して ``tool_call_ready`` (不正ならエラーを添え、クライアントは実行しない)。"""
        call = chunk.call
        executor = self.ctx.toolbox.executor(call.name)
        if executor == CLIENT:
            self._client_ids.append(call.id)
        announce(self.ctx, call, executor, self.ctx.toolbox.problem(call))

    def _on_usage(self, chunk: UsageUpdate) -> None:
        """この応答の累計使用量を覚える (キャンセル時の ``usage`` に使う)。"""
        self.ctx.progress.usage = chunk.usage

    def _on_end(self, chunk: StreamEnd) -> None:
        """ストリームの終わり: 組み立て済みのメッセージを覚える。"""
        self.ctx.progress.usage = chunk.usage
        self.end = chunk

    # ------------------------------------------------------------ 区切りを閉じる

    def _close_text(self) -> None:
        """開いているテキストを ``text_finished`` で閉じる。"""
        if self._text_id is not None:
            self.ctx.events.send(ev.TextFinished(self._text_id, "".join(self._text)))
            self._text_id, self._text = None, []

    def _close_reasoning(self, text: str) -> None:
        """開いている推論を ``reasoning_finished`` で閉じる (``text`` が空なら受け取った断片の連結)。"""
        if self._reasoning_id is not None:
            self.ctx.events.send(ev.ReasoningFinished(self._reasoning_id, text or "".join(self._reasoning)))
            self._reasoning_id, self._reasoning = None, []
