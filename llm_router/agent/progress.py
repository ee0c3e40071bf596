"""1 ステップの途中経過: キャンセルや失敗のときに、履歴へ何を残すかをここから決める。

- モデルの応答中: 流れたテキストの断片 (キャンセルなら ``interrupted=True`` の部分テキストとして残す)。
- 応答の完了後 (ツールの実行中): 組み立て済みのアシスタントメッセージと、そろった分のツール結果。
  結果の無いツール呼び出しには、エラーの結果 ("cancelled" など) を補って履歴に入れる。
  どのプロバイダも「すべてのツール呼び出しに結果がある」履歴を要求するため (docs/providers.md「全プロバイダ共通」)。
"""

from __future__ import annotations

from dataclasses import dataclass, field

from llm_router.core.schemas.common import Message, ToolResult, Usage


@dataclass
class StepProgress:
    """実行中のステップの状態 (1 回の試行ぶん。``step_reset`` で捨てる)。"""

    step: int = 0
    text_parts: list[str] = field(default_factory=list)
    assistant: Message | None = None
    results: dict[str, ToolResult] = field(default_factory=dict)
    announced: set[str] = field(default_factory=set)
    usage: Usage = field(default_factory=Usage)
    spent: Usage = field(default_factory=Usage)

    def begin(self, step: int) -> None:
        """新しいステップを始める (前のステップの状態は確定済みの前提)。"""
        self.step = step
        self.discard_attempt()
        self.spent = Usage()

    def discard_attempt(self) -> None:
        """いまの試行の出力を捨てる (使用量は消費済みとして ``spent`` に移す)。"""
        self.spent = self.spent + self.usage
        self.usage = Usage()
        self.text_parts = []
        self.assistant = None
        self.results = {}
        self.announced = set()

    def step_usage(self) -> Usage:
        """このステップで消費した使用量 (捨てた試行の分も含む)。"""
        return self.spent + self.usage

    def take(self, missing_result: str = "cancelled") -> list[Message]:
        """履歴に入れるメッセージを返し、状態を空にする。

        応答が完了していればアシスタントメッセージとツール結果 (足りない結果は ``missing_result`` の
        エラー) を呼び出し順に。応答の途中なら、部分テキストを ``interrupted=True`` で (空なら何も無し)。
        推論と途中のツール呼び出しは署名や引数が不完全なので残さない。
        """
        messages: list[Message] = []
        if self.assistant is not None:
            messages.append(self.assistant)
            for call in self.assistant.tool_calls:
                result = self.results.get(call.id) or ToolResult(call.id, call.name, missing_result, True)
                messages.append(Message(role="tool", tool_result=result))
        else:
            text = "".join(self.text_parts)
            if text:
                messages.append(Message(role="assistant", content=text, interrupted=True))
        self.text_parts = []
        self.assistant = None
        self.results = {}
        return messages
