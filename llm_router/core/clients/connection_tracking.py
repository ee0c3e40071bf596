"""応答ヘッダを待っている間のキャンセル: 使用中の接続を覚えておき、キャンセルでそのソケットを閉じる。

``requests`` は応答を返すまで下の接続を見せない。プロバイダが最初のバイトを返すまで (推論モデルでは数秒)
キャンセルしても接続が開いたままになるので、urllib3 の接続プールが接続を貸し出す所 (``_get_conn``) で、
いま送っているリクエストの :class:`ConnectionHolder` に接続を記録する。キャンセルのコールバックは別の
(グリーン) スレッドから来るので、記録は送り手のスレッドローカルではなく、送り手とコールバックが共有する
holder に置く。ストリームの本文を読んでいる間のキャンセルは ``base_client.iter_bytes`` が受け持つ。
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

_local = threading.local()


class ConnectionHolder:
    """1 回の送信で使われる接続と、その送信がキャンセルされたかどうか。"""

    def __init__(self) -> None:
        """空の状態で作る。"""
        self.connection: Any = None
        self.cancelled = False

    def attach(self, connection: Any) -> None:
        """プールから借りた接続を記録する (既にキャンセル済みなら借りた時点で閉じる)。"""
        self.connection = connection
        if self.cancelled:
            self.shutdown()

    def shutdown(self) -> None:
        """キャンセル: 接続のソケットを両方向とも閉じ、ヘッダを待っている読み手を即座に起こす。"""
        self.cancelled = True
        sock = getattr(self.connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def tracking(holder: ConnectionHolder) -> Iterator[ConnectionHolder]:
    """このスレッドで送るリクエストの接続を ``holder`` に記録させる。"""
    previous = getattr(_local, "holder", None)
    _local.holder = holder
    try:
        yield holder
    finally:
        _local.holder = previous


class _TrackingPoolMixin:
    """接続を貸し出すときに、いまの送信の holder へ記録するプール。"""

    def _get_conn(self, timeout: float | None = None) -> Any:
        """urllib3 の ``HTTPConnectionPool._get_conn`` に、記録を足したもの。"""
        connection = super()._get_conn(timeout)  # type: ignore[misc]
        holder = getattr(_local, "holder", None)
        if holder is not None:
            holder.attach(connection)
        return connection


class _TrackingHTTPConnectionPool(_TrackingPoolMixin, HTTPConnectionPool):
    """HTTP 用の記録するプール。"""


class _TrackingHTTPSConnectionPool(_TrackingPoolMixin, HTTPSConnectionPool):
    """HTTPS 用の記録するプール。"""


class TrackingAdapter(requests.adapters.HTTPAdapter):
    """接続を記録するプールを使う ``HTTPAdapter``。"""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """プールの種類を、記録するものに差し替える (urllib3 ``PoolManager.pool_classes_by_scheme``)。"""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _TrackingHTTPConnectionPool,
            "https": _TrackingHTTPSConnectionPool,
        }
