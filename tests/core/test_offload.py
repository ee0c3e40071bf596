"""``llm_router.core.offload``: 関数を OS スレッドのプールで動かし、結果と例外をそのまま返す。"""

from __future__ import annotations

import threading

import pytest

from llm_router.core.offload import check_mode, green_library, run_blocking
from llm_router.core.schemas.errors import ConfigurationError


@pytest.mark.parametrize("mode", ["tpool", "threads"])
def test_result_comes_back_from_a_pool_thread(mode):
    """どちらの方式でも、関数は呼び手とは別の (プールの) スレッドで動き、結果が返る。"""
    caller = threading.current_thread().name

    def where(a, b=0):
        """スレッドの名前と計算の結果。"""
        return threading.current_thread().name, a + b

    name, value = run_blocking(mode, 2, where, 40, b=2)
    assert value == 42 and name != caller and name.startswith("llm-router-tool")


def test_exceptions_propagate_unchanged():
    """関数の例外はそのまま呼び手に上がる。"""

    def boom():
        """失敗する。"""
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="bad input"):
        run_blocking("tpool", 2, boom)


def test_unknown_mode_is_a_configuration_error():
    """``agent.tool_executor`` の知らない値は設定の誤り (キー名と許す値を挙げる)。"""
    with pytest.raises(ConfigurationError, match=r"agent.tool_executor: must be one of tpool, threads"):
        check_mode("inline")


def test_threading_mode_has_no_green_library():
    """テストのプロセスはモンキーパッチしていないので threading モード (threads も使える)。"""
    assert green_library() is None
    check_mode("threads")
