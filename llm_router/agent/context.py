"""1 回の実行の共有状態 (モデル呼び出しとツール実行の両方の段階が使う)。

履歴への確定 (:meth:`RunContext.commit_step`) は、イベント送出と同じロックの下で「まだ終わって
いなければ」行う。キャンセル側のスレッドと実行スレッドのどちらか一方だけが、途中経過を履歴に
入れることになる。
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llm_router.agent.events import RunEvents
from llm_router.agent.progress import StepProgress
from llm_router.agent.thread_state import ThreadState
from llm_router.agent.toolbox import Toolbox
from llm_router.core.cancel import CancelToken
from llm_router.core.schemas.common import ChatRequest, Message, ToolChoice, Usage
from llm_router.core.tokens import estimate_message_tokens, estimate_tools_tokens

logger = logging.getLogger("llm_router.agent")

if TYPE_CHECKING:  # 型のためだけ (Hydra の import を実行時に持ち込まない)
    from llm_router.config.schema import AgentConfig


@dataclass
class RunContext:
    """実行の共有状態。"""

    run_id: str
    thread: ThreadState
    router: Any
    toolbox: Toolbox
    events: RunEvents
    token: CancelToken
    agent_config: AgentConfig
    max_steps: int
    client_calls: Any = None
    chain: list[Any] = field(default_factory=list)
    chain_index: int = 0
    after_step: str | None = None
    usage: Usage = field(default_factory=Usage)
    progress: StepProgress = field(default_factory=StepProgress)
    secrets: tuple[str, ...] = ()
    # 履歴に確定したステップの数 (0 のまま失敗したらユーザーメッセージも外す)
    committed_steps: int = 0
    # 直前に作ったリクエストで外したメッセージの数と、その入力の概算トークン数
    trimmed: tuple[int, int] = (0, 0)

    @property
    def route(self) -> Any:
        """いま使っているモデルの経路 (``provider`` / ``model`` / ``spec``)。"""
        return self.chain[self.chain_index]

    def total_usage(self) -> Usage:
        """ここまでに消費した使用量 (確定したステップ + 実行中のステップ)。"""
        return self.usage + self.progress.step_usage()

    def build_request(self, model: str) -> ChatRequest:
        """いまの履歴からモデルへのリクエストを作る (システムプロンプトは先頭のメッセージ)。

        モデルの文脈の大きさ (``context_tokens``) から応答の ``max_tokens`` を引いた分に入らなければ、
        古いターンを丸ごと外す (:func:`fit_history`)。外した数は ``trimmed`` に残る。履歴そのものは変えない。
        """
        settings = self.thread.settings
        system = [Message.system(self.thread.system)] if self.thread.system else []
        tools = self.toolbox.definitions()
        temperature = settings.temperature if settings.temperature is not None else self.agent_config.temperature
        max_tokens = settings.max_tokens or self.agent_config.max_tokens
        history = list(self.thread.history)
        fixed = sum(estimate_message_tokens(m) for m in system) + estimate_tools_tokens(tools)
        limit = context_limit(self.router, self.route.provider, model) if self.chain else None
        budget = None if limit is None else limit - max_tokens - fixed
        kept, estimated = fit_history(history, budget)
        self.trimmed = (len(history) - len(kept), estimated + fixed)
        return ChatRequest(
            model=model,
            messages=system + kept,
            tools=tools,
            tool_choice=self._tool_choice() if tools else None,
            temperature=temperature,
            max_tokens=max_tokens,
            parallel_tool_calls=settings.parallel_tool_calls if tools else None,
            reasoning=settings.reasoning or "off",
        )

    def _tool_choice(self) -> ToolChoice | None:
        """このステップの ``tool_choice``。ツールを強制する指定 (``required`` / 特定のツール) は最初のステップだけ。

        2 ステップ目以降 (= 前のステップでツールが呼ばれた後) も強制すると、モデルは答えを書けずに
        max_steps までツールを呼び続ける。openai-agents-python の ``reset_tool_choice`` (既定で有効) と同じく
        ``auto`` に戻す。
        """
        choice = self.thread.settings.choice()
        if choice is not None and choice.mode in ("required", "tool") and self.progress.step > 1:
            return ToolChoice("auto")
        return choice

    def commit_step(self, missing_result: str = "cancelled") -> bool:
        """実行中のステップを履歴と使用量の合計に確定する。実行が既に終わっていれば何もせず偽。"""
        with self.events.lock:
            if self.events.closed:
                return False
            self.commit_progress(missing_result)
            self.events.sync_history()
            return True

    def commit_progress(self, missing_result: str) -> None:
        """(呼び手がロックを持つこと) 途中経過を履歴に入れ、使用量を合計に移す。

        完成した応答 (中断されていないアシスタントメッセージ) を入れたら、確定したステップとして数える。
        """
        taken = self.progress.take(missing_result)
        if any(m.role == "assistant" and not m.interrupted for m in taken):
            self.committed_steps += 1
        self.thread.history.extend(taken)
        self.usage = self.usage + self.progress.step_usage()
        self.progress.spent = Usage()
        self.progress.usage = Usage()

    def discard_step(self) -> None:
        """(ロックの下で) 失敗したステップの出力を捨てる。使用量は消費済みとして合計に入れる。

        失敗したステップは履歴に何も残さない (ツールの段階での失敗でも、そのステップの応答と結果を捨てる)。
        完了したステップ (応答とそのすべてのツール結果) は :meth:`commit_step` で既に履歴にある。
        """
        self.progress.discard_attempt()
        self.usage = self.usage + self.progress.step_usage()
        self.progress.spent = Usage()


def context_limit(router: Any, provider: str, model: str) -> int | None:
    """設定のモデルの文脈の大きさ (トークン)。``providers.<p>.models.<パターン>.context_tokens`` が先、
    無ければ ``providers.<p>.context_tokens``。設定が無い (テストの偽のルーターなど) か 0 以下なら ``None``。
    """
    import fnmatch

    settings = getattr(router, "settings", None)
    providers = getattr(getattr(settings, "config", None), "providers", None)
    config = getattr(providers, provider, None)
    if config is None:
        return None
    for pattern, options in (getattr(config, "models", None) or {}).items():
        if fnmatch.fnmatchcase(model, pattern):
            value = getattr(options, "context_tokens", None)
            if value:
                return int(value) if int(value) > 0 else None
            break
    value = getattr(config, "context_tokens", None)
    return int(value) if value and int(value) > 0 else None


def split_turns(history: list[Message]) -> list[list[Message]]:
    """履歴をターンに分ける。ターンはユーザーメッセージ 1 つと、それに続く応答・ツール結果のすべて。

    ツール呼び出しとその結果は同じターンの中にあるので、ターン単位で外せば決して離れない。
    """
    turns: list[list[Message]] = []
    for message in history:
        if message.role == "user" or not turns:
            turns.append([message])
        else:
            turns[-1].append(message)
    return turns


def fit_history(history: list[Message], budget: int | None) -> tuple[list[Message], int]:
    """``budget`` トークンに入るまで古いターンを丸ごと外し、(残すメッセージ, その概算トークン数) を返す。

    最新のターン (いまのユーザーメッセージとこの実行のステップ) は、入らなくても必ず残す: そのまま送り、
    入らなければプロバイダが ``provider_bad_request`` で断る (実行は巻き戻され、スレッドは使えるまま)。
    ``budget`` が ``None`` なら何も外さない。
    """
    turns = split_turns(history)
    sizes = [sum(estimate_message_tokens(m) for m in turn) for turn in turns]
    total = sum(sizes)
    first = 0
    if budget is not None:
        while first < len(turns) - 1 and total > budget:
            total -= sizes[first]
            first += 1
    return [m for turn in turns[first:] for m in turn], total
