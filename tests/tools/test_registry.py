"""ToolRegistry のテスト: 型ヒントと docstring からのスキーマ、検証してからの呼び出し、default_registry。"""

from __future__ import annotations

import sys
import types
from typing import Any, Literal, Optional

import pytest

from llm_router.config.settings import load_settings
from llm_router.core.cancel import CancelToken
from llm_router.core.schemas.errors import RequestCancelled
from tools.registry import ServerTool, ToolExecutionError, ToolRegistry, default_registry
from tools.signature_schema import parse_docstring


def book(
    destination: str,
    passengers: int,
    cabin: Literal["economy", "business"] = "economy",
    names: list[str] | None = None,
    budget: float = 1000.0,
    refundable: bool = False,
    extras: dict[str, int] | None = None,
    note: Optional[str] = None,  # noqa: UP045 (typing.Optional の形も受け付けることを確かめる)
) -> dict:
    """航空券を予約する。

    二段落目は説明に含めない。

    Args:
        destination: 行き先の空港コード。
        passengers: 人数。
            続きの行も説明に含める。
        cabin: 座席の等級。
        names: 乗客の名前。
        budget: 予算 (円)。
        refundable: 払い戻し可能にするか。
        extras: 追加サービスと数量。
        note: 備考。
    """
    return {"destination": destination, "passengers": passengers, "cabin": cabin, "names": names}


def test_schema_is_derived_from_type_hints_and_the_docstring():
    """型ヒントから JSON Schema、docstring の最初の段落と Args から説明を作る。"""
    tool = ToolRegistry().register(book)
    assert tool.name == "book"
    assert tool.description == "航空券を予約する。"
    assert tool.parameters == {
        "type": "object",
        "properties": {
            "destination": {"type": "string", "description": "行き先の空港コード。"},
            "passengers": {"type": "integer", "description": "人数。 続きの行も説明に含める。"},
            "cabin": {
                "type": "string",
                "enum": ["economy", "business"],
                "description": "座席の等級。",
                "default": "economy",
            },
            "names": {"type": ["array", "null"], "items": {"type": "string"}, "description": "乗客の名前。"},
            "budget": {"type": "number", "description": "予算 (円)。", "default": 1000.0},
            "refundable": {"type": "boolean", "description": "払い戻し可能にするか。", "default": False},
            "extras": {
                "type": ["object", "null"],
                "additionalProperties": {"type": "integer"},
                "description": "追加サービスと数量。",
            },
            "note": {"type": ["string", "null"], "description": "備考。"},
        },
        "additionalProperties": False,
        "required": ["destination", "passengers"],
    }


def test_any_and_nested_containers():
    """``Any`` は制約なし、入れ子のコンテナも JSON Schema になる。"""

    def store(value: Any, rows: list[dict[str, float]], tags: list | None = None) -> None:
        """値を保存する。"""

    params = ToolRegistry().register(store).parameters
    assert params["properties"] == {
        "value": {},
        "rows": {"type": "array", "items": {"type": "object", "additionalProperties": {"type": "number"}}},
        "tags": {"type": ["array", "null"]},
    }
    assert params["required"] == ["value", "rows"]


def test_registered_name_can_be_overridden_and_definitions_follow_the_order_asked():
    """名前を変えて登録でき、definitions は求めた順 (未登録は飛ばす)。"""
    registry = ToolRegistry()
    registry.register(book, name="book_flight")
    registry.register(book, name="book_train")
    assert registry.names() == ["book_flight", "book_train"]
    assert [d.name for d in registry.definitions(["book_train", "nope", "book_flight"])] == [
        "book_train",
        "book_flight",
    ]
    assert registry.get("book_flight").func is book


def test_duplicate_registration_is_refused():
    """同じ名前の 2 度目の登録は誤り。"""
    registry = ToolRegistry()
    registry.register(book)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(book)


def _untyped(x):
    """型ヒントの無い引数を持つ関数。"""
    return x


def _varargs(*values: int) -> int:
    """可変長引数の関数。"""
    return sum(values)


def _unsupported(value: set[int]) -> int:
    """対応しない型 (set) の引数を持つ関数。"""
    return len(value)


@pytest.mark.parametrize(("func", "reason"), [(_untyped, "type hint"), (_varargs, r"\*args"), (_unsupported, "set")])
def test_functions_that_cannot_be_described_are_refused(func, reason):
    """スキーマを作れない関数は、どの引数かを示して登録を断る。"""
    with pytest.raises(TypeError, match=reason):
        ToolRegistry().register(func)


def test_call_validates_arguments_before_running():
    """不正な引数では関数を呼ばず、JSON パスつきのエラーになる。"""
    calls = []

    def record(count: int) -> int:
        """呼ばれたら記録する。

        Args:
            count: 数。
        """
        calls.append(count)
        return count

    registry = ToolRegistry()
    registry.register(record)
    with pytest.raises(ToolExecutionError, match=r"arguments.count: expected integer, got string"):
        registry.call("record", {"count": "3"})
    with pytest.raises(ToolExecutionError, match="missing required property 'count'"):
        registry.call("record", {})
    with pytest.raises(ToolExecutionError, match="unexpected property 'extra'"):
        registry.call("record", {"count": 1, "extra": True})
    assert calls == []
    assert registry.call("record", {"count": 2.0}) == 2
    assert calls == [2] and isinstance(calls[0], int)


def test_call_of_unknown_tool_is_an_error():
    """未登録の名前は ToolExecutionError。"""
    with pytest.raises(ToolExecutionError, match="unknown server tool 'nope'"):
        ToolRegistry().call("nope", {})


def test_a_failing_tool_gives_a_message_without_a_stack_trace():
    """ツールの例外は型と文だけのエラーになる (トレースは含めない)。"""

    def explode(value: str) -> str:
        """必ず失敗する。

        Args:
            value: 何でもよい。
        """
        raise KeyError(value)

    registry = ToolRegistry()
    registry.register(explode)
    with pytest.raises(ToolExecutionError) as info:
        registry.call("explode", {"value": "boom"})
    assert str(info.value) == "tool 'explode' failed: KeyError: 'boom'"
    assert "Traceback" not in str(info.value)


def test_cancel_token_is_passed_to_tools_that_ask_for_it_and_hidden_from_the_schema():
    """``cancel`` 引数はスキーマに出さず、呼び出しのトークンを渡す。"""
    seen = []

    def slow(steps: int, cancel: CancelToken | None = None) -> int:
        """取り消しトークンを受け取るツール。

        Args:
            steps: 手順の数。
        """
        seen.append(cancel)
        return steps

    registry = ToolRegistry()
    tool = registry.register(slow)
    assert list(tool.parameters["properties"]) == ["steps"]
    token = CancelToken()
    assert registry.call("slow", {"steps": 1}, token) == 1
    assert seen == [token]
    token.cancel()
    with pytest.raises(RequestCancelled):
        registry.call("slow", {"steps": 1}, token)


def test_results_are_made_json():
    """JSON にできない結果は文字列にそろえる。"""

    def odd() -> object:
        """JSON にできない値を返す。"""
        return {"when": types.SimpleNamespace(a=1)}

    registry = ToolRegistry()
    registry.register(odd)
    assert registry.call("odd", {}) == {"when": "namespace(a=1)"}


def test_parse_docstring_stops_at_other_sections():
    """Args 以外の節 (Returns など) は引数の説明に混ざらない。"""
    summary, args = parse_docstring(
        """要約の 1 行目
        2 行目。

        Args:
            a (int): 一つ目。
            b： 全角コロンでもよい。

        Returns:
            c: 戻り値 (引数ではない)。
        """
    )
    assert summary == "要約の 1 行目 2 行目。"
    assert args == {"a": "一つ目。", "b": "全角コロンでもよい。"}


def test_default_registry_registers_enabled_builtins():
    """default_registry は agent.server_tools にある組み込みツールを登録し、呼べる。"""
    settings = load_settings(["agent.server_tools=[calculator,current_time]"], env_file=None, environ={})
    registry = default_registry(settings)
    assert registry.names() == ["calculator", "current_time"]
    assert registry.call("calculator", {"expression": "6 * 7"}) == 42
    assert registry.call("current_time", {"timezone": "UTC"}).endswith("+00:00")
    calculator = registry.definitions(["calculator"])[0]
    assert calculator.parameters["required"] == ["expression"]
    assert "算術式" in calculator.description


def test_default_registry_respects_the_enabled_list_and_ignores_unknown_names():
    """有効にしたものだけを登録し、未知の名前はログに残して無視する。"""
    settings = load_settings(["agent.server_tools=[current_time,teleport]"], env_file=None, environ={})
    assert default_registry(settings).names() == ["current_time"]


def test_search_documents_is_registered_through_its_builder(monkeypatch):
    """``tools.search_documents.build_tool(settings)`` があれば、その結果を登録する。"""

    def search_documents(query: str, top_k: int = 5) -> list:
        """文書を検索する。

        Args:
            query: 検索語。
            top_k: 件数。
        """
        return [{"text": query, "top_k": top_k}]

    module = types.ModuleType("tools.search_documents")
    module.build_tool = lambda settings: search_documents
    monkeypatch.setitem(sys.modules, "tools.search_documents", module)
    settings = load_settings(["agent.server_tools=[search_documents]"], env_file=None, environ={})
    registry = default_registry(settings)
    assert registry.names() == ["search_documents"]
    assert registry.call("search_documents", {"query": "q"}) == [{"text": "q", "top_k": 5}]

    prebuilt = ServerTool("search_documents", "検索", {"type": "object", "properties": {}}, lambda: [])
    module.build_tool = lambda settings: prebuilt
    assert default_registry(settings).get("search_documents") is prebuilt

    module.build_tool = lambda settings: None
    assert default_registry(settings).names() == []


def test_a_broken_builder_does_not_stop_the_registry(monkeypatch):
    """builder が失敗しても、他のツールは登録される (サーバーは起動を続ける)。"""
    module = types.ModuleType("tools.search_documents")

    def broken(settings):
        """必ず失敗する builder。"""
        raise RuntimeError("store missing")

    module.build_tool = broken
    monkeypatch.setitem(sys.modules, "tools.search_documents", module)
    settings = load_settings(["agent.server_tools=[calculator,search_documents]"], env_file=None, environ={})
    assert default_registry(settings).names() == ["calculator"]
