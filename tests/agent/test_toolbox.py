"""Toolbox の検証: 任意のプロパティの null は省略として扱い、必須の null は拒む。"""

from llm_router.agent.thread_state import ThreadState
from llm_router.agent.toolbox import Toolbox
from llm_router.core.schemas.common import ToolCall, ToolDefinition

SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
    "required": ["city"],
}


def _toolbox() -> Toolbox:
    """クライアント側ツール 1 つだけのツール箱。"""
    thread = ThreadState(thread_id="t1", client_tools=[ToolDefinition("weather", "天気", SCHEMA)])
    return Toolbox(None, [], thread)


def test_null_for_an_optional_property_means_omitted():
    """strict モードのモデルが任意のプロパティに返す null は、省略として通る (引数から消える)。"""
    call = ToolCall("c1", "weather", {"city": "Tokyo", "unit": None})
    assert _toolbox().problem(call) is None
    assert call.arguments == {"city": "Tokyo"}


def test_null_for_a_required_property_is_refused():
    """必須のプロパティの null は拒まれ、理由にフィールドが出る。"""
    call = ToolCall("c1", "weather", {"city": None})
    problem = _toolbox().problem(call)
    assert problem is not None and "city" in problem
