"""Redis への接続、キーの名前、エラーの変換。

- URL は秘密情報 (.env の ``LLM_ROUTER_REDIS_URL``)。ログやエラーには :func:`redact_url` で
  パスワードを伏せたものだけを出す。
- Redis に届かない (接続拒否、タイムアウト、途中で切れた) ときは :class:`StoreUnavailable` にする
  (:func:`unavailable_errors` の中で)。redis-py は次のコマンドで自分で繋ぎ直すので、Redis が戻れば
  同じクライアントのまま動く (プロセスの再起動は要らない)。
- Lua スクリプトは ``register_script`` (EVALSHA、Redis の再起動でキャッシュが消えていれば EVAL で読み直す)。
- redis-py は純粋な Python のソケットを使うので、eventlet の monkey-patch の下でもスレッドでも動く
  (eventlet ではソケットを先に patch すること: サーバーは最初に patch する)。
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from llm_router.core.schemas.errors import StoreUnavailable

if TYPE_CHECKING:
    import redis

    from llm_router.config.schema import RedisStoreConfig

log = logging.getLogger(__name__)


class Backoff:
    """背景の受信ループ (コマンドの ``BLPOP``、ストリームの ``XREAD``) が Redis に届かない間の待ち方。

    待ちは 0.05 秒から倍々に 1 秒まで。落ちたことと戻ったことを 1 回ずつログに出す。

    Args:
        name: ループの名前 (ログ用)。
        stop: ループを止める合図 (待っている間に来ればすぐ戻る)。
    """

    def __init__(self, name: str, stop: threading.Event) -> None:
        """まだ落ちていない状態から始める。"""
        self.name = name
        self.stop = stop
        self.delay = 0.05
        self.down = False

    def failed(self, exc: BaseException) -> None:
        """届かなかった: 初回だけ警告し、今の間隔だけ待って、次の間隔を伸ばす。"""
        if not self.down:
            log.warning("%s: redis unavailable (%s); retrying", self.name, type(exc).__name__)
            self.down = True
        self.stop.wait(self.delay)
        self.delay = min(1.0, self.delay * 2)

    def reached(self) -> None:
        """届いた: 落ちていたなら戻ったことをログに出し、間隔を戻す。"""
        if self.down:
            log.info("%s: redis reachable again", self.name)
            self.down, self.delay = False, 0.05


def redact_url(url: str) -> str:
    """URL のパスワード (とユーザー名) を ``***`` にした表示用の文字列。解釈できなければ ``redis://***``。"""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "redis://***"
    netloc = f"***@{host}{port}" if (parts.username or parts.password) else f"{host}{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def new_process_id() -> str:
    """このプロセスを他と区別する id (ホスト名・pid・乱数。貸与の持ち主とコマンドの宛先に使う)。"""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _key(template: str, doc: str) -> Callable[..., str]:
    """:class:`Keys` の 1 つのキーの名前のメソッドを作る: ``<prefix>:`` + ``template`` (``{}`` に引数が順に入る)。"""

    def key(self: Keys, *parts: str) -> str:
        """``<prefix>:`` の後に ``template`` を引数で埋めた名前。"""
        return f"{self.prefix}:{template.format(*parts)}"

    key.__doc__ = f"{doc} (``<prefix>:{template}``)"
    return key


@dataclass(frozen=True)
class Keys:
    """Redis のキーの名前 (すべて ``<prefix>:`` で始まる)。

    1 スレッドのキーは ``<prefix>:t:<thread_id>:<種類>``。Redis Cluster のハッシュタグは使っていない
    (単体の Redis と、そのレプリカを前提にする)。
    """

    prefix: str = "llm_router"

    thread = _key("t:{}:record", "スレッドの記録 (JSON 文字列)")
    history = _key("t:{}:history", "スレッドのモデルに見える履歴 (JSON 文字列のリスト)")
    events = _key("t:{}:events", "スレッドのイベントログ (Redis Stream、ID は ``<seq>-0``)")
    seq = _key("t:{}:seq", "スレッドの最後の ``seq`` (INCR するカウンタ。ストリームを切り詰めても消さない)")
    lease = _key("t:{}:lease", "スレッドの実行中のランの貸与")
    presence = _key("t:{}:present", "スレッドにソケットを持つプロセス (sorted set、点数は在席の期限のミリ秒)")
    owner_index = _key("owner:{}:threads", "持ち主ごとのスレッドの一覧 (更新日時順の sorted set)")
    in_use = _key("owner:{}:open", "主体の使用中のスレッド (sorted set、点数は最後に開いた時刻のミリ秒)")
    commands = _key("cmd:{}", "プロセス宛てのコマンドの列 (リスト、BLPOP で受ける)")
    wake = _key("wake:{}", "プロセスのストリームの追従を起こすためのストリーム")
    reply = _key("reply:{}", "1 つのコマンドの返事 (リスト、送り手が BLPOP で待つ)")
    rate = _key("rate:{}:{}", "主体ごとのレート制限の窓 (名前, 主体)")
    counter = _key("count:{}:{}", "主体ごとの共有の数 (名前, 主体)")
    epoch = _key("epoch", "Redis の中身の世代 (乱数。消えていれば Redis が中身なしで再起動した)")


def connect(url: str, config: RedisStoreConfig | None = None, *, socket_timeout_s: float | None = None) -> redis.Redis:
    """``url`` の Redis へのクライアントを作る (接続は最初のコマンドのときに張られる)。

    Args:
        url: ``redis://`` / ``rediss://`` / ``unix://`` の URL (秘密情報)。
        config: タイムアウトと再試行の設定。省略時は既定値。
        socket_timeout_s: 読み取りのタイムアウトの上書き (BLPOP で待つ接続用に長くする)。

    Raises:
        StoreUnavailable: URL が空か解釈できないとき (パスワードは含めない)。
    """
    import queue

    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    if config is None:
        from llm_router.config.schema import RedisStoreConfig

        config = RedisStoreConfig()

    cfg = config
    if not url:
        raise StoreUnavailable(
            "redis: LLM_ROUTER_REDIS_URL is not set (.env に LLM_ROUTER_REDIS_URL を設定してください)"
        )
    timeout = cfg.socket_timeout_s if socket_timeout_s is None else socket_timeout_s
    try:
        # 接続の数には上限を置き、上限で空きを待つ (BlockingConnectionPool)。redis-py の既定の ConnectionPool は
        # 100 本を超えると待たずに MaxConnectionsError を上げ、同時に始まった start がまとめて store_unavailable に
        # なっていた。列は呼ぶときに探す (eventlet/gevent の monkey_patch の後の、グリーンスレッドで待てる列)
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=max(1, int(cfg.pool_size)),
            timeout=cfg.pool_timeout_s,
            queue_class=queue.LifoQueue,
            socket_connect_timeout=cfg.connect_timeout_s,
            socket_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), max(0, int(cfg.retries))),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            decode_responses=False,
            client_name=None,
        )
        client = redis.Redis(connection_pool=pool)
        client.auto_close_connection_pool = True  # close() でプールの接続も閉じる (from_url と同じ)
        return client
    except ValueError as exc:
        raise StoreUnavailable(
            f"redis: invalid LLM_ROUTER_REDIS_URL ({redact_url(url)}): {type(exc).__name__}"
        ) from None


def describe(client: redis.Redis) -> str:
    """クライアントの宛先の表示 (``host:port/db``、パスワードは含まない)。"""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix:{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"


@contextlib.contextmanager
def unavailable_errors(client: redis.Redis, what: str) -> Iterator[None]:
    """この中で Redis に届かなかったら :class:`StoreUnavailable` (何をしていたかと宛先、パスワード無し) にする。"""
    import redis

    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.exceptions.BusyLoadingError) as exc:
        raise StoreUnavailable(
            f"redis unavailable during {what} ({describe(client)}): {type(exc).__name__}: {_safe(exc)}"
        ) from None


def _safe(exc: BaseException) -> str:
    """例外の文言 (URL が紛れ込んでいれば伏せる。redis-py の接続エラーは host:port だけを含む)。"""
    text = str(exc)
    return text if "@" not in text else "(details hidden)"
