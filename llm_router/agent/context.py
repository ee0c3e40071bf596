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
    end_on_client_tools: bool = False

    @property
    def route(self) -> Any:
        """いま使っているモデルの経路 (``provider`` / ``model`` / ``spec``)。"""
        return self.chain[self.chain_index]

    def total_usage(self) -> Usage:
        """ここまでに消費した使用量 (確定したステップ + 実行中のステップ)。"""
        return self.usage + self.progress.step_usage()

    def build_request(self, model: str) -> ChatRequest:
        """いまの履歴からモデルへのリクエストを作る (システムプロンプトは先頭のメッセージ)。"""
        settings = self.thread.settings
        messages = [Message.system(self.thread.system)] if self.thread.system else []
        messages.extend(self.thread.history)
        tools = self.toolbox.definitions()
        temperature = settings.temperature if settings.temperature is not None else self.agent_config.temperature
        return ChatRequest(
            model=model,
            messages=messages,
            tools=tools,
            tool_choice=self._tool_choice() if tools else None,
            temperature=temperature,
            max_tokens=settings.max_tokens or self.agent_config.max_tokens,
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
            return True

    def commit_progress(self, missing_result: str) -> None:
        """(呼び手がロックを持つこと) 途中経過を履歴に入れ、使用量を合計に移す。"""
        self.thread.history.extend(self.progress.take(missing_result))
        self.usage = self.usage + self.progress.step_usage()
        self.progress.spent = Usage()
        self.progress.usage = Usage()

    def discard_step(self) -> None:
        """(ロックの下で) 失敗したステップの出力を捨てる。使用量は消費済みとして合計に入れる。

        ツールの段階での失敗なら、応答済みのツール呼び出しに結果を補って残す (履歴を常に有効に保つ)。
        """
        if self.progress.assistant is not None:
            self.commit_progress("error: the run failed before this tool finished")
            return
        self.progress.discard_attempt()
        self.usage = self.usage + self.progress.step_usage()
        self.progress.spent = Usage()
