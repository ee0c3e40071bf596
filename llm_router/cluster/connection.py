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
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from llm_router.core.schemas.errors import StoreUnavailable

if TYPE_CHECKING:
    import redis

    from llm_router.config.schema import RedisStoreConfig


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


@dataclass(frozen=True)
class Keys:
    """Redis のキーの名前 (すべて ``<prefix>:`` で始まる)。

    1 スレッドのキーは ``<prefix>:t:<thread_id>:<種類>``。Redis Cluster のハッシュタグは使っていない
    (単体の Redis と、そのレプリカを前提にする)。
    """

    prefix: str = "llm_router"

    def thread(self, thread_id: str) -> str:
        """スレッドの記録 (JSON 文字列)。"""
        return f"{self.prefix}:t:{thread_id}:record"

    def history(self, thread_id: str) -> str:
        """スレッドのモデルに見える履歴 (JSON 文字列のリスト)。"""
        return f"{self.prefix}:t:{thread_id}:history"

    def events(self, thread_id: str) -> str:
        """スレッドのイベントログ (Redis Stream、ID は ``<seq>-0``)。"""
        return f"{self.prefix}:t:{thread_id}:events"

    def seq(self, thread_id: str) -> str:
        """スレッドの最後の ``seq`` (INCR するカウンタ。ストリームを切り詰めても消さない)。"""
        return f"{self.prefix}:t:{thread_id}:seq"

    def lease(self, thread_id: str) -> str:
        """スレッドの実行中のランの貸与。"""
        return f"{self.prefix}:t:{thread_id}:lease"

    def owner_index(self, owner: str) -> str:
        """持ち主ごとのスレッドの一覧 (更新日時順の sorted set)。"""
        return f"{self.prefix}:owner:{owner}:threads"

    @property
    def active_runs(self) -> str:
        """実行中とされているラン (thread_id -> JSON のハッシュ)。持ち主を失ったランの検出に使う。"""
        return f"{self.prefix}:active_runs"

    def commands(self, process_id: str) -> str:
        """プロセス宛てのコマンドの列 (リスト、BLPOP で受ける)。"""
        return f"{self.prefix}:cmd:{process_id}"

    def wake(self, process_id: str) -> str:
        """プロセスのストリームの追従を起こすためのストリーム。"""
        return f"{self.prefix}:wake:{process_id}"

    def reply(self, request_id: str) -> str:
        """1 つのコマンドの返事 (リスト、送り手が BLPOP で待つ)。"""
        return f"{self.prefix}:reply:{request_id}"

    def rate(self, name: str, principal: str) -> str:
        """主体ごとのレート制限の窓 (sorted set)。"""
        return f"{self.prefix}:rate:{name}:{principal}"

    def counter(self, name: str, principal: str) -> str:
        """主体ごとの共有カウンタ。"""
        return f"{self.prefix}:count:{name}:{principal}"


def connect(url: str, config: RedisStoreConfig | None = None, *, socket_timeout_s: float | None = None) -> redis.Redis:
    """``url`` の Redis へのクライアントを作る (接続は最初のコマンドのときに張られる)。

    Args:
        url: ``redis://`` / ``rediss://`` / ``unix://`` の URL (秘密情報)。
        config: タイムアウトと再試行の設定。省略時は既定値。
        socket_timeout_s: 読み取りのタイムアウトの上書き (BLPOP で待つ接続用に長くする)。

    Raises:
        StoreUnavailable: URL が空か解釈できないとき (パスワードは含めない)。
    """
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
        return redis.Redis.from_url(
            url,
            socket_connect_timeout=cfg.connect_timeout_s,
            socket_timeout=timeout,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.02), max(0, int(cfg.retries))),
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            decode_responses=False,
            client_name=None,
        )
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
