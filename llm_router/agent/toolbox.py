"""1 回の実行で使えるツールの一覧: サーバー側 (レジストリの有効なもの) とクライアント側 (スレッドの定義)。

ツール呼び出しを実行してよいかの判定もここで行う: 未知の名前、JSON として解析できない引数、
元のスキーマ (プロバイダ向けに変換する前のもの) に合わない引数は実行しない。

1 つの呼び出しの検証は 1 回だけ: ストリームで呼び出しが完成したとき (``tool_call_ready`` の前) の判定を
覚えておき、ツールの段階では同じ呼び出し (ID・名前・引数の生の文字列が同じ) にその判定を使い回す。
サーバー側ツールのレジストリにも検証済みとして渡す (``validated=True``)。
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from llm_router.agent.thread_state import ThreadState
from llm_router.core.cancel import CancelToken
from llm_router.core.json_schema_validation import validate_arguments
from llm_router.core.schemas.common import ToolCall, ToolDefinition
from llm_router.core.tool_schemas import drop_null_optionals

SERVER = "server"
CLIENT = "client"


class ToolSource(Protocol):
    """エージェントがサーバー側ツールのレジストリ (``tools.registry.ToolRegistry``) に求めるもの。"""

    def names(self) -> list[str]:
        """登録されているツールの名前。"""
        ...

    def get(self, name: str) -> Any:
        """名前からツールを引く (``parameters`` に元のスキーマを持つもの)。"""
        ...

    def definitions(self, names: list[str]) -> list[ToolDefinition]:
        """名前のツールの正規形の定義。"""
        ...

    def runs_off_hub(self, name: str) -> bool:
        """ツールの関数をハブの外の OS スレッドで動かすか (CPU を使い得る組み込みは真、I/O だけの MCP は偽)。"""
        ...

    def call(self, name: str, arguments: dict[str, Any], cancel: CancelToken, validated: bool = False) -> Any:
        """ツールを呼び、JSON にできる結果を返す (``validated`` は検証済みの印)。"""
        ...


class Toolbox:
    """この実行のツール: 名前から実行者 (server / client) と元のスキーマを引く。"""

    def __init__(self, registry: ToolSource | None, server_names: list[str], thread: ThreadState) -> None:
        """レジストリ (``None`` 可)、有効なサーバー側ツール名、スレッドを受け取る。"""
        self.registry = registry
        available = set(registry.names()) if registry is not None else set()
        self.server_names = [n for n in server_names if n in available]
        self._server = set(self.server_names)
        self._client = {t.name: t for t in thread.client_tools}
        # 呼び出しの鍵 → (null を除いた引数, 判定)。同じ呼び出しをもう一度検証しないため
        self._verdicts: dict[tuple[str, str, str, str | None], tuple[dict[str, Any], str | None]] = {}

    def definitions(self) -> list[ToolDefinition]:
        """モデルに渡すツール定義 (サーバー側、次にクライアント側)。"""
        server = self.registry.definitions(self.server_names) if self.server_names else []
        return [*server, *self._client.values()]

    def executor(self, name: str) -> str:
        """ツールの実行者。クライアント側の定義が無い名前はサーバーが (エラーとして) 答える。"""
        if name in self._client and name not in self._server:
            return CLIENT
        return SERVER

    def schema(self, name: str) -> dict[str, Any] | None:
        """元のスキーマ (未知の名前なら ``None``)。"""
        if name in self._server:
            return self.registry.get(name).parameters
        tool = self._client.get(name)
        return tool.parameters if tool is not None else None

    def problem(self, call: ToolCall) -> str | None:
        """実行してはいけない理由 (実行してよければ ``None``)。この文言がモデルへのエラー結果になる。

        検証の前に、任意 (required でなく null も許さない) のプロパティに来た ``null`` を「省略」として
        取り除く (``call.arguments`` を置き換える)。OpenAI の strict モードは任意のプロパティを必須 + null 可に
        して送るため、モデルは省略の代わりに ``null`` を返す (tool_schemas.drop_null_optionals)。
        """
        schema = self.schema(call.name)
        if schema is None:
            return f"unknown tool '{call.name}': not executed"
        if call.parse_error:
            return f"invalid arguments for tool '{call.name}': {call.parse_error}; not executed"
        key = _call_key(call)
        known = self._verdicts.get(key)
        if known is not None:
            call.arguments = known[0]
            return known[1]
        call.arguments = drop_null_optionals(schema, call.arguments)
        problems = validate_arguments(schema, call.arguments)
        verdict = None
        if problems:
            verdict = f"invalid arguments for tool '{call.name}': {'; '.join(problems)}; not executed"
        self._verdicts[key] = (call.arguments, verdict)
        return verdict


def _call_key(call: ToolCall) -> tuple[str, str, str, str | None]:
    """呼び出しを見分ける鍵 (やり直しで同じ ID に違う引数が来ても取り違えない)。"""
    raw = call.raw_arguments
    if raw is None:
        raw = json.dumps(call.arguments, sort_keys=True, ensure_ascii=False, default=str)
    return (call.id, call.name, raw, call.parse_error)
