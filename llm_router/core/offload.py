"""CPU を使う、または止まる処理をイベントループ (eventlet / gevent のハブ) の外の OS スレッドで動かす。

eventlet と gevent ではすべての接続が 1 つの OS スレッドのハブを分け合う。サーバー側ツール (計算、RAG の
検索とストアの読み込み、埋め込み) をそのハブの上で動かすと、その間ほかの利用者のトークンが 1 つも届かない。
:func:`run_blocking` は関数を本物の OS スレッドで動かし、呼んだグリーンスレッドだけを完了まで待たせる。

方式は設定 ``agent.tool_executor`` で選ぶ (docs/protocol.md の設定表):

- ``tpool`` (既定): 非同期ライブラリ自身の OS スレッドのプール。eventlet では ``eventlet.tpool``、gevent では
  ハブの ``threadpool``。threading モードでは (呼び手がもう本物のスレッドなので) 下の有界プールを使う。
- ``threads``: このモジュールが持つ有界の ``ThreadPoolExecutor``。本物の OS スレッドになるのは
  threading モードだけなので (eventlet / gevent ではモンキーパッチでグリーンスレッドになる)、
  それ以外のモードでは :class:`ConfigurationError` で断る。

プールの大きさは ``agent.tool_threads`` (最初の呼び出しで決まる)。
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from llm_router.core.schemas.errors import ConfigurationError

T = TypeVar("T")
MODES = ("tpool", "threads")

_lock = threading.Lock()
_pools: dict[int, ThreadPoolExecutor] = {}
_sized: set[str] = set()


def green_library() -> str | None:
    """モンキーパッチ済みの非同期ライブラリの名前 (``eventlet`` / ``gevent``)。threading モードなら ``None``。"""
    if "eventlet" in sys.modules:
        from eventlet import patcher

        if patcher.is_monkey_patched("thread"):
            return "eventlet"
    if "gevent" in sys.modules:
        from gevent import monkey

        if monkey.is_module_patched("threading"):
            return "gevent"
    return None


def check_mode(mode: str) -> None:
    """``agent.tool_executor`` の値がこの非同期モードで使えるか確かめる (使えなければ設定の誤り)。"""
    if mode not in MODES:
        raise ConfigurationError(f"agent.tool_executor: must be one of {', '.join(MODES)}, got {mode!r}")
    library = green_library()
    if mode == "threads" and library is not None:
        raise ConfigurationError(
            f"agent.tool_executor: 'threads' needs server.async_mode=threading (under {library} its threads are "
            "green and would run tools on the hub); use 'tpool'"
        )


def run_blocking(mode: str, threads: int, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``func(*args, **kwargs)`` をハブの外の OS スレッドで動かし、結果を返す (例外はそのまま上がる)。

    Args:
        mode: ``tpool`` か ``threads`` (``agent.tool_executor``)。
        threads: プールの OS スレッドの数 (``agent.tool_threads``、1 以上)。
    """
    check_mode(mode)
    library = green_library()
    if mode == "tpool" and library == "eventlet":
        from eventlet import tpool

        _size_once("eventlet", lambda: tpool.set_num_threads(max(1, threads)))
        return tpool.execute(func, *args, **kwargs)
    if mode == "tpool" and library == "gevent":
        import gevent

        pool = gevent.get_hub().threadpool
        _size_once("gevent", lambda: setattr(pool, "maxsize", max(1, threads)))
        return pool.apply(func, args, kwargs)
    return _pool(threads).submit(func, *args, **kwargs).result()


def _size_once(name: str, apply: Callable[[], None]) -> None:
    """プールの大きさを最初の 1 回だけ設定する。"""
    with _lock:
        if name not in _sized:
            apply()
            _sized.add(name)


def _pool(threads: int) -> ThreadPoolExecutor:
    """大きさごとの有界プール (作るのは 1 回だけ)。"""
    size = max(1, threads)
    with _lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = ThreadPoolExecutor(max_workers=size, thread_name_prefix="llm-router-tool")
        return pool


__all__ = ["MODES", "check_mode", "green_library", "run_blocking"]
