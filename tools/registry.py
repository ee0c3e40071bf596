"""サーバー側ツールの登録簿。ツールは普通の Python 関数で、スキーマは型ヒントと日本語 docstring から作る。

``call`` は実行の前に引数を元のスキーマで検証し、失敗はいつも :class:`ToolExecutionError`
(スタックトレースを含まない分かりやすい文) にする。どのツールを使うかは ``agent.server_tools``。
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_router.core.json_schema_validation import check_tool_call
from llm_router.core.schemas.common import ToolDefinition
from llm_router.core.schemas.errors import LLMRouterError, RequestCancelled
from tools.signature_schema import schema_from_function

if TYPE_CHECKING:
    from llm_router.config.settings import Settings
    from llm_router.core.cancel import CancelToken

logger = logging.getLogger(__name__)

# 名前 -> 組み込みツール関数の import パス。search_documents は RAG の build_tool(settings) で作る
BUILTIN_TOOLS: dict[str, str] = {
    "calculator": "tools.calculator:calculator",
    "current_time": "tools.current_time:current_time",
}
BUILDERS: dict[str, str] = {"search_documents": "tools.search_documents:build_tool"}


class ToolExecutionError(LLMRouterError):
    """ツールを実行できなかった (引数の誤り、ツール自身の失敗)。文はそのままモデルへのエラー結果になる。"""

    code = "internal"


@dataclass
class ServerTool:
    """サーバー側ツール 1 つ。

    Attributes:
        name: ツール名。
        description: モデルに見せる説明。
        parameters: 引数の JSON Schema (object)。
        func: 実体の関数。``accepts_cancel`` なら ``cancel=`` でトークンを受け取る。
    """

    name: str
    description: str
    parameters: dict[str, Any]
    func: Callable[..., Any]
    accepts_cancel: bool = False

    def definition(self) -> ToolDefinition:
        """正規形のツール定義。"""
        return ToolDefinition(self.name, self.description, self.parameters)


class ToolRegistry:
    """名前からサーバー側ツールを引く登録簿。"""

    def __init__(self) -> None:
        """空の登録簿を作る。"""
        self._tools: dict[str, ServerTool] = {}
        self._lock = threading.Lock()

    def register(self, func: Callable[..., Any], name: str | None = None) -> ServerTool:
        """関数をツールとして登録する (スキーマは型ヒントと docstring から)。

        Raises:
            TypeError: 型ヒントから JSON Schema を作れないとき。
            ValueError: 同じ名前がもう登録されているとき。
        """
        description, parameters, accepts_cancel = schema_from_function(func)
        tool = ServerTool(name or func.__name__, description, parameters, func, accepts_cancel)
        return self.add(tool)

    def add(self, tool: ServerTool) -> ServerTool:
        """作り済みの :class:`ServerTool` を登録する。"""
        with self._lock:
            if tool.name in self._tools:
                raise ValueError(f"server tool '{tool.name}' is already registered")
            self._tools[tool.name] = tool
        return tool

    def get(self, name: str) -> ServerTool:
        """名前でツールを引く。

        Raises:
            KeyError: 未登録の名前。
        """
        return self._tools[name]

    def names(self) -> list[str]:
        """登録済みのツール名 (登録順)。"""
        return list(self._tools)

    def enabled(self, configured: list[str]) -> list[str]:
        """有効なツール: ``configured`` (``agent.server_tools``) のうち登録されているもの、その順。"""
        return [name for name in configured if name in self._tools]

    def source(self, name: str) -> str | None:
        """ツールの出どころ (組み込みは ``None``。MCP のツールは ``mcp:<server>``: llm_router/mcp/tools.py)。"""
        return None

    def warnings(self) -> list[str]:
        """``start`` の ack に載せる注意 (組み込みには無い。MCP は使えないサーバーの理由)。"""
        return []

    def definitions(self, names: list[str] | None = None) -> list[ToolDefinition]:
        """``names`` (省略時はすべて) のツール定義。未登録の名前は飛ばす。"""
        wanted = self.names() if names is None else names
        return [self._tools[n].definition() for n in wanted if n in self._tools]

    def runs_off_hub(self, name: str) -> bool:
        """ツールの関数をハブの外の OS スレッドで動かすか (組み込みのツールはすべて: CPU を使い得るため)。"""
        return True

    def call(
        self, name: str, arguments: dict[str, Any], cancel: CancelToken | None = None, validated: bool = False
    ) -> Any:
        """引数を検証してからツールを呼び、JSON にできる結果を返す。

        ``validated=True`` は呼び出し側 (エージェントの ``Toolbox``) が同じスキーマで検証済みという印で、
        検証をもう一度はしない (大きな引数の検証をハブの上で何度も繰り返さない)。

        Raises:
            ToolExecutionError: 未知のツール、引数の誤り、ツールの失敗 (スタックトレースは含めない)。
            RequestCancelled: 呼ぶ前に取り消されていたとき。
        """
        tool = self._tools.get(name)
        if tool is None:
            raise ToolExecutionError(f"unknown server tool '{name}'")
        check_tool_call(name, tool.parameters, arguments, cancel, validated, ToolExecutionError)
        kwargs = _coerce_integers(tool.parameters, dict(arguments))
        if tool.accepts_cancel:
            kwargs["cancel"] = cancel
        try:
            value = tool.func(**kwargs)
        except (ToolExecutionError, RequestCancelled):
            raise
        except Exception as exc:
            # トレースはサーバーのログにだけ残し、モデルとクライアントには型と文だけを返す
            logger.warning("server tool %s raised %s", name, type(exc).__name__, exc_info=True)
            raise ToolExecutionError(f"tool '{name}' failed: {type(exc).__name__}: {exc}") from exc
        return _jsonable(value)


def _coerce_integers(schema: dict[str, Any], arguments: dict[str, Any]) -> dict[str, Any]:
    """``integer`` の引数に来た ``3.0`` を ``3`` にする (JSON Schema では 3.0 も integer)。"""
    for key, value in arguments.items():
        sub = schema.get("properties", {}).get(key, {})
        kinds = sub.get("type") if isinstance(sub, dict) else None
        if isinstance(value, float) and value.is_integer() and kinds in ("integer", ["integer", "null"]):
            arguments[key] = int(value)
    return arguments


def _jsonable(value: Any) -> Any:
    """結果を JSON の値にそろえる (数や文字列はそのまま、その他は文字列化)。"""
    try:
        return json.loads(json.dumps(value, ensure_ascii=False, default=str))
    except (TypeError, ValueError):
        return str(value)


def _import(path: str) -> Any:
    """``module:attribute`` の形のパスから属性を取り出す。"""
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def default_registry(settings: Settings | None = None) -> ToolRegistry:
    """組み込みのサーバー側ツールを登録した登録簿を作る。

    ``settings`` があれば ``agent.server_tools`` に挙がったものだけを登録する (無ければ全部)。
    ``search_documents`` は ``tools.search_documents.build_tool(settings)`` があるときだけ登録する
    (モジュールが無い、または作れないときはログに残して飛ばす。サーバーは起動を続ける)。
    """
    enabled = list(settings.config.agent.server_tools) if settings is not None else [*BUILTIN_TOOLS, *BUILDERS]
    registry = ToolRegistry()
    for name in enabled:
        if name in BUILTIN_TOOLS:
            registry.register(_import(BUILTIN_TOOLS[name]), name=name)
        elif name in BUILDERS:
            _add_built(registry, name, settings)
        else:
            logger.warning("agent.server_tools: unknown server tool '%s' ignored (known: %s)", name, _known())
    return registry


def _add_built(registry: ToolRegistry, name: str, settings: Settings | None) -> None:
    """``build_tool(settings)`` で作るツールを登録する (関数でも ``ServerTool`` でもよい)。"""
    try:
        built = _import(BUILDERS[name])(settings)
    except (ImportError, AttributeError) as exc:
        logger.info("server tool '%s' is not available (%s)", name, type(exc).__name__)
        return
    except Exception:
        logger.warning("server tool '%s' could not be built; it is disabled", name, exc_info=True)
        return
    if built is None:
        logger.info("server tool '%s' is disabled by its builder", name)
    elif isinstance(built, ServerTool):
        registry.add(built)
    else:
        registry.register(built, name=name)


def _known() -> str:
    """既知のツール名の一覧 (ログ用)。"""
    return ", ".join([*BUILTIN_TOOLS, *BUILDERS])


__all__ = ["ServerTool", "ToolExecutionError", "ToolRegistry", "default_registry"]
