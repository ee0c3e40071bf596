"""JSON の変換の置き場: 小さな値はその場で、大きな値はハブ (eventlet / gevent) の外の OS スレッドで。

``json`` の C の実装は 1 回の呼び出しの間ずっと GIL を持ち、イベントループにも戻らない。900 KB の
ツール結果や何万要素の入れ子をハブの上で変換すると、その間ほかの利用者のトークンが 1 つも届かない。
C の実装を OS スレッドへ移しても GIL を持ち続けるので、ハブはやはり待つ。

そこで大きな値 (:func:`configure` の ``threshold_bytes`` 以上と見積もったもの) は、

- OS スレッド (:func:`llm_router.core.offload.run_blocking`、``agent.tool_executor`` のプール) で、
- 構造のたどりは Python の実装 (``JSONEncoder.iterencode`` / ``json.scanner.py_make_scanner``)、
  文字列 1 つの変換だけ C の実装で

変換する。Python のバイトコードを実行している間は GIL の切り替え (``sys.getswitchinterval()``、既定 5 ms) が
効くので、ハブはその間隔でイベントを送り続けられる。合計の CPU は C の実装より多い (大きな値だけなので)。
小さな値、threading モード (ハブが無い。:func:`configure` の前も同じ扱い)、ハブ自身の中からの呼び出しはその場で
C の実装を使う。

使うところ: Socket.IO のパケット (``SocketIO(json=...)`` に :class:`SocketIOJson` を渡す)、ストアへの
イベントと履歴の保存、受け取ったペイロードの大きさの確認、プロバイダへのリクエストの本文
(docs/protocol.md「ハブを止めないこと」)。
"""

from __future__ import annotations

import json
import json.scanner
from typing import Any

from llm_router.core import offload

DEFAULT_THRESHOLD = 65536
# 1 つの値 (数・真偽・null・空の入れ物) の見積もりのバイト数
_NODE_BYTES = 8


class _Settings:
    """変換の設定 (サーバーが起動時に :func:`configure` で決める)。"""

    threshold_bytes = DEFAULT_THRESHOLD
    mode = "tpool"
    threads = 4
    # ハブを持つ非同期ライブラリ (``eventlet`` / ``gevent``)。None なら threading モードで、いつもその場で変換する
    library: str | None = None


def configure(threshold_bytes: int, mode: str = "tpool", threads: int = 4) -> None:
    """大きな値をハブの外で変換する閾値 (0 なら常にその場) と、使う OS スレッドのプールを決める。

    Args:
        threshold_bytes: ``server.offload_json_bytes``。
        mode: ``agent.tool_executor`` (``tpool`` / ``threads``)。
        threads: ``agent.tool_threads``。
    """
    offload.check_mode(mode)
    if not isinstance(threshold_bytes, int) or threshold_bytes < 0:
        raise ValueError(f"server.offload_json_bytes: expected an integer >= 0, got {threshold_bytes!r}")
    _Settings.threshold_bytes = threshold_bytes
    _Settings.mode = mode
    _Settings.threads = max(1, threads)
    # モンキーパッチはサーバーの起動の最初に済んでいるので、ここで 1 回だけ調べる (1 イベントごとに調べない)
    _Settings.library = offload.green_library()


def is_large(value: Any, threshold: int | None = None) -> bool:
    """``value`` の JSON が閾値以上になりそうなら真 (文字列の長さと要素の数から見積もる)。

    たどるのは閾値に届くまで (要素 1 つを ``_NODE_BYTES`` と数えるので、最大で ``threshold / 8`` 個)。
    文字列の長さは文字数で数える (UTF-8 や ``\\uXXXX`` ではもっと長くなるので、見積もりは小さめに出る)。
    """
    limit = _Settings.threshold_bytes if threshold is None else threshold
    if limit <= 0:
        return False
    size = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            size += len(item) + 2
        elif isinstance(item, bytes | bytearray):
            size += len(item)
        elif isinstance(item, dict):
            size += _NODE_BYTES
            for key, child in item.items():
                if isinstance(key, str):
                    size += len(key) + 3
                stack.append(child)
        elif isinstance(item, list | tuple):
            size += _NODE_BYTES
            stack.extend(item)
        else:
            size += _NODE_BYTES
        if size >= limit:
            return True
    return False


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps(value, **kwargs)`` と同じ文字列を返す。大きな値はハブの外で変換する。"""
    if _Settings.library is None or not is_large(value) or _in_hub():
        return json.dumps(value, **kwargs)
    return offload.run_blocking(_Settings.mode, _Settings.threads, _iter_dumps, value, kwargs)


def loads(text: str | bytes | bytearray, **kwargs: Any) -> Any:
    """``json.loads(text, **kwargs)`` と同じ値を返す。閾値以上の長さの文字列はハブの外で解読する。"""
    limit = _Settings.threshold_bytes
    if _Settings.library is None or limit <= 0 or len(text) < limit or _in_hub():
        return json.loads(text, **kwargs)
    return offload.run_blocking(_Settings.mode, _Settings.threads, _py_loads, text, kwargs)


def _iter_dumps(value: Any, kwargs: dict[str, Any]) -> str:
    """(OS スレッドで) 構造を Python の実装でたどって JSON にする (``json.dumps`` と同じ出力)。"""
    cls = kwargs.pop("cls", None) or json.JSONEncoder
    return "".join(cls(**kwargs).iterencode(value))


def _py_loads(text: str | bytes | bytearray, kwargs: dict[str, Any]) -> Any:
    """(OS スレッドで) Python の実装の走査器で解読する (``json.loads`` と同じ値と誤り)。"""
    if isinstance(text, bytes | bytearray):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    cls = kwargs.pop("cls", None) or json.JSONDecoder
    decoder = cls(**kwargs)
    decoder.scan_once = json.scanner.py_make_scanner(decoder)
    return decoder.decode(text)


def _in_hub() -> bool:
    """いまハブ自身 (のグリーンレット) の中で呼ばれているか (そこからは待てないので、その場で変換する)。"""
    if _Settings.library == "eventlet":
        import greenlet
        from eventlet import hubs

        return greenlet.getcurrent() is hubs.get_hub().greenlet
    import gevent

    return gevent.getcurrent() is gevent.get_hub()


def _safe_int(text: str) -> int:
    """巨大な整数の文字列を断る (python-engineio の JSON と同じ規則: 100 桁まで)。"""
    if len(text) > 100:
        raise ValueError("Integer is too large")
    return int(text)


class SocketIOJson:
    """python-socketio のパケットの ``json`` (``dumps`` / ``loads`` を持つもの) として使う変換。

    ``loads`` は python-engineio の既定と同じく、100 桁を超える整数を断る。
    """

    @staticmethod
    def dumps(value: Any, **kwargs: Any) -> str:
        """パケットのデータを JSON にする (大きな値はハブの外で)。"""
        return dumps(value, **kwargs)

    @staticmethod
    def loads(text: str | bytes | bytearray, **kwargs: Any) -> Any:
        """パケットのデータを解読する (大きな値はハブの外で)。"""
        kwargs.setdefault("parse_int", _safe_int)
        return loads(text, **kwargs)


__all__ = ["DEFAULT_THRESHOLD", "SocketIOJson", "configure", "dumps", "is_large", "loads"]
