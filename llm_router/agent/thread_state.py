"""会話スレッドの状態: 履歴、システムプロンプト、クライアント側ツール、モデル、実行設定。

同じ :class:`ThreadState` を次の実行 (run) でも使う。エージェントループは実行の開始時に
ユーザーメッセージを、各ステップの終わりにアシスタントメッセージとツール結果を ``history`` に加える。
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from llm_router.core.schemas.common import Message, ReasoningLevel, ToolChoice, ToolDefinition

_CHOICE_MODES = {"auto": "auto", "none": "none", "required": "required", "any": "required"}


@dataclass
class RunSettings:
    """1 回の実行の設定 (PROTOCOL.md ``start.settings``)。``None`` は設定 (``agent.*``) の既定値を使う。"""

    temperature: float | None = None
    max_tokens: int | None = None
    max_steps: int | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningLevel = "off"

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> RunSettings:
        """``start.settings`` の dict から作る (未知のキーは検証済みの前提で無視する)。"""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known and v is not None})

    def choice(self) -> ToolChoice | None:
        """``tool_choice`` を共有の :class:`ToolChoice` にする。

        文字列 ``auto`` / ``none`` / ``required`` (``any`` も可)、それ以外の文字列はツール名、
        dict は ``{"type": "tool", "name": ...}`` または ``{"name": ...}`` を受け付ける。
        """
        value = self.tool_choice
        if value is None:
            return None
        if isinstance(value, dict):
            name = value.get("name") or (value.get("function") or {}).get("name")
            if name:
                return ToolChoice("tool", str(name))
            value = value.get("type") or value.get("mode") or "auto"
        mode = _CHOICE_MODES.get(str(value))
        if mode is not None:
            return ToolChoice(mode)  # type: ignore[arg-type]
        return ToolChoice("tool", str(value))


@dataclass
class ThreadState:
    """1 つの会話スレッドの状態 (実行をまたいで保持する)。

    Attributes:
        thread_id: スレッド ID。
        history: 会話の履歴 (システムプロンプトは含めない)。
        system: システムプロンプト。
        client_tools: クライアント (ブラウザ) 側で実行するツールの正規形の定義。
        model: ``provider/model`` か別名。``None`` なら既定のモデル。
        settings: 実行設定 (dict を渡すと :class:`RunSettings` に変換する)。
        server_tools: 使うサーバー側ツール名 (``None`` なら ``agent.server_tools`` のすべて)。
    """

    thread_id: str = ""
    history: list[Message] = field(default_factory=list)
    system: str | None = None
    client_tools: list[ToolDefinition] = field(default_factory=list)
    model: str | None = None
    settings: RunSettings = field(default_factory=RunSettings)
    server_tools: list[str] | None = None

    def __post_init__(self) -> None:
        """``settings`` に dict が渡されたら :class:`RunSettings` に変換する。"""
        if isinstance(self.settings, dict):
            self.settings = RunSettings.from_dict(self.settings)
        elif self.settings is None:
            self.settings = RunSettings()

    def client_tool(self, name: str) -> ToolDefinition | None:
        """名前からクライアント側ツールの定義を引く (無ければ ``None``)。"""
        for tool in self.client_tools:
            if tool.name == name:
                return tool
        return None
