"""接続中と応答ヘッダを待っている間のキャンセル: 使用中の接続を覚えておき、キャンセルでそのソケットを閉じる。

``requests`` は応答を返すまで下の接続を見せない。プロバイダが最初のバイトを返すまで (推論モデルでは数秒)
キャンセルしても接続が開いたままになるので、urllib3 の接続プールが接続を貸し出す所 (``_get_conn``) で、
いま送っているリクエストの :class:`ConnectionHolder` に接続を記録する。キャンセルのコールバックは別の
(グリーン) スレッドから来るので、記録は送り手のスレッドローカルではなく、送り手とコールバックが共有する
holder に置く。ストリームの本文を読んでいる間のキャンセルは ``base_client.iter_bytes`` が受け持つ。

TCP の接続中 (SYN を送ってまだ返事が無い、上流の backlog が満杯など) は接続の ``sock`` がまだ ``None`` なので、
接続を作る所 (``HTTPConnection._new_conn``) も差し替え、ソケットを ``connect`` の **前に** holder に記録する。
Linux では接続中のソケットの ``shutdown`` は待っている ``connect`` を即座に失敗させる。記録とキャンセルは
どちらも「自分の印を書いてから相手の印を読む」ので、どちらの順に起きても片方が必ずソケットを閉じる。
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import requests
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.timeout import _DEFAULT_TIMEOUT

_local = threading.local()


class ConnectionHolder:
    """1 回の送信で使われる接続と、その送信がキャンセルされたかどうか。"""

    def __init__(self) -> None:
        """空の状態で作る。"""
        self.connection: Any = None
        self.socket: socket.socket | None = None
        self.cancelled = False

    def attach(self, connection: Any) -> None:
        """プールから借りた接続を記録する (既にキャンセル済みなら借りた時点で閉じる)。"""
        self.connection = connection
        if self.cancelled:
            self.shutdown()

    def attach_socket(self, sock: socket.socket) -> None:
        """``connect`` の前のソケットを記録する (既にキャンセル済みなら即座に閉じる)。"""
        self.socket = sock
        if self.cancelled:
            self.shutdown()

    def shutdown(self) -> None:
        """キャンセル: 接続中・接続済みのソケットを両方向とも閉じ、待っている送り手・読み手を即座に起こす。"""
        self.cancelled = True
        for sock in (self.socket, getattr(self.connection, "sock", None)):
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


def _open_socket(connection: HTTPConnection, holder: ConnectionHolder) -> socket.socket:
    """urllib3 の ``util.connection.create_connection`` と同じ手順で接続する。ただしソケットは connect の前に記録する。"""
    host = connection._dns_host.strip("[]")  # type: ignore[attr-defined]
    error: OSError | None = None
    for family, kind, proto, _, address in socket.getaddrinfo(
        host, connection.port, allowed_gai_family(), socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)
        holder.attach_socket(sock)
        try:
            for option in connection.socket_options or ():
                sock.setsockopt(*option)
            if connection.timeout is not _DEFAULT_TIMEOUT:
                sock.settimeout(connection.timeout)
            if connection.source_address:
                sock.bind(connection.source_address)
            sock.connect(address)
            return sock
        except OSError as exc:
            error = exc
            sock.close()
    raise error or OSError("getaddrinfo returns an empty list")


class _TrackingConnectionMixin:
    """接続を作るとき、connect の前のソケットをいまの送信の holder へ記録する接続。"""

    def _new_conn(self) -> socket.socket:
        """urllib3 の ``HTTPConnection._new_conn`` と同じ例外の変換で、記録つきの接続を作る。"""
        holder = getattr(_local, "holder", None)
        if holder is None:
            return super()._new_conn()  # type: ignore[misc]
        try:
            return _open_socket(self, holder)  # type: ignore[arg-type]
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc  # type: ignore[attr-defined, arg-type]
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self,
                f"Connection to {self.host} timed out. (connect timeout={self.timeout})",  # type: ignore[attr-defined]
            ) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc  # type: ignore[arg-type]


class _TrackingHTTPConnection(_TrackingConnectionMixin, HTTPConnection):
    """HTTP 用の記録する接続。"""


class _TrackingHTTPSConnection(_TrackingConnectionMixin, HTTPSConnection):
    """HTTPS 用の記録する接続 (TLS の握手はこのソケットの上で行うので、握手中のキャンセルも効く)。"""


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

    ConnectionCls = _TrackingHTTPConnection


class _TrackingHTTPSConnectionPool(_TrackingPoolMixin, HTTPSConnectionPool):
    """HTTPS 用の記録するプール。"""

    ConnectionCls = _TrackingHTTPSConnection


class TrackingAdapter(requests.adapters.HTTPAdapter):
    """接続を記録するプールを使う ``HTTPAdapter``。"""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        """プールの種類を、記録するものに差し替える (urllib3 ``PoolManager.pool_classes_by_scheme``)。"""
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _TrackingHTTPConnectionPool,
            "https": _TrackingHTTPSConnectionPool,
        }
