"""スレッドの設定の語彙: 1 回の実行の設定 (:class:`RunSettings`) と、次の実行から使うスレッドの設定 (:class:`ThreadConfig`)。

- :class:`RunSettings` はプロトコルの ``start.settings`` (docs/protocol.md 3.1) の唯一の型。リアルタイム層の
  検証 (``realtime/schemas.parse_settings``) が作り、エージェントがそのまま読む。JSON の形 (指定された項目だけの
  dict) との行き来は :meth:`RunSettings.to_dict` / :meth:`RunSettings.from_dict` で、ストアの
  :class:`~llm_router.core.schemas.thread_record.StoredThread` の ``settings`` はこの dict の形。
- :class:`ThreadConfig` はモデル・システムプロンプト・ツール・実行設定の 5 つ。リアルタイム層は ``start`` で
  これを組み立て、エージェントの ``ThreadState`` はこれに履歴を足したもの (同じ 5 つを二度書かない)。
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from llm_router.core.schemas.common import ReasoningLevel, ToolChoice, ToolDefinition

# 文字列の tool_choice の読み方 (``any`` は Anthropic / Gemini の呼び名)。それ以外の文字列はツール名
_CHOICE_MODES = {"auto": "auto", "none": "none", "required": "required", "any": "required"}


def tool_choice_from_value(value: Any) -> ToolChoice | None:
    """``tool_choice`` の JSON の形を共有の :class:`ToolChoice` にする (すでに ToolChoice ならそのまま)。

    文字列 ``auto`` / ``none`` / ``required`` (``any`` も可)、それ以外の文字列はツール名、
    dict は ``{"type": "tool", "name": ...}``、``{"name": ...}``、``{"function": {"name": ...}}`` を受け付ける。
    """
    if value is None or isinstance(value, ToolChoice):
        return value
    if isinstance(value, dict):
        name = value.get("name") or (value.get("function") or {}).get("name")
        if name:
            return ToolChoice("tool", str(name))
        value = value.get("type") or value.get("mode") or "auto"
    mode = _CHOICE_MODES.get(str(value))
    if mode is not None:
        return ToolChoice(mode)  # type: ignore[arg-type]
    return ToolChoice("tool", str(value))


def tool_choice_to_value(choice: ToolChoice) -> str | dict[str, str]:
    """:class:`ToolChoice` を ``start.settings.tool_choice`` の JSON の形にする。"""
    return {"type": "tool", "name": choice.name or ""} if choice.mode == "tool" else choice.mode


@dataclass
class RunSettings:
    """1 回の実行の設定 (``start.settings``)。``None`` は設定 (``agent.*``) の既定値を使う。

    ``tool_choice`` に JSON の形 (文字列や dict) を渡すと :class:`ToolChoice` に直す。
    """

    temperature: float | None = None
    max_tokens: int | None = None
    max_steps: int | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    reasoning: ReasoningLevel | None = None

    def __post_init__(self) -> None:
        """``tool_choice`` を :class:`ToolChoice` にそろえる。"""
        self.tool_choice = tool_choice_from_value(self.tool_choice)

    def to_dict(self) -> dict[str, Any]:
        """指定された項目だけの JSON の dict (``start.settings`` と同じ形)。"""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.name] = tool_choice_to_value(value) if isinstance(value, ToolChoice) else value
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> RunSettings:
        """:meth:`to_dict` の形の dict から作る (未知のキーは検証済みの前提で無視する)。"""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (values or {}).items() if k in known and v is not None})


@dataclass
class ThreadConfig:
    """スレッドの、次の実行から使う設定。

    Attributes:
        model: ``provider/model`` か別名。``None`` なら既定のモデル。
        system: システムプロンプト。
        client_tools: クライアント (ブラウザ) 側で実行するツールの正規形の定義。
        server_tools: 使うサーバー側ツール名 (``None`` なら ``agent.server_tools`` のすべて)。
        settings: 実行設定 (dict を渡すと :class:`RunSettings` に変換する)。
    """

    model: str | None = None
    system: str | None = None
    client_tools: list[ToolDefinition] = field(default_factory=list)
    server_tools: list[str] | None = None
    settings: RunSettings = field(default_factory=RunSettings)
    # サーバー側ツールの出どころ (MCP のツールは ``mcp:<server>``。組み込みは載せない。ack の表示用)
    tool_sources: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """``settings`` に dict や ``None`` が渡されたら :class:`RunSettings` にする。"""
        if isinstance(self.settings, dict):
            self.settings = RunSettings.from_dict(self.settings)
        elif self.settings is None:
            self.settings = RunSettings()

    def tool_summary(self) -> list[dict[str, str]]:
        """ack の ``tools``: ``[{"name", "executor", "source"?}]`` (サーバー側、クライアント側の順)。"""
        out = [
            {
                "name": name,
                "executor": "server",
                **({"source": self.tool_sources[name]} if name in self.tool_sources else {}),
            }
            for name in self.server_tools or ()
        ]
        out.extend({"name": tool.name, "executor": "client"} for tool in self.client_tools)
        return out

    def client_tool(self, name: str) -> ToolDefinition | None:
        """名前からクライアント側ツールの定義を引く (無ければ ``None``)。"""
        for tool in self.client_tools:
            if tool.name == name:
                return tool
        return None


__all__ = ["RunSettings", "ThreadConfig", "tool_choice_from_value", "tool_choice_to_value"]
