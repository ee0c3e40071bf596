"""``redis`` バックエンドの書き込みの通り道: グループコミットの列と、専用の接続 1 本のパイプライン。

- :class:`CommitQueue`: 同じ瞬間に書こうとしている別々のスレッドのコミットを、次の 1 回の往復にまとめる
  (わざと待つことはない)。書くのは常に 1 つのリーダーだけ。
- :class:`DedicatedPipeline`: そのリーダーが使う専用の接続。コマンドの列を :func:`pack_commands` で RESP の
  1 つのバイト列にして 1 回で送り、返事を順に読む (redis-py のパイプラインと同じことを、接続の貸し借りと
  コマンドの組み立てなしで行う)。スクリプトが Redis に無ければ (再起動の後) 読み込んで送り直す。

どちらも ``llm_router.store.redis.RedisStore`` の中だけで使う。
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

    from llm_router.store.base import CommitItem


def pack_commands(commands: Sequence[Sequence[Any]]) -> bytes:
    """コマンドの列を RESP の 1 つのバイト列にする (redis-py の ``pack_commands`` の軽い版。値は文字列・bytes・整数・浮動小数点数)。

    文字列のまま組み立てて最後に 1 回だけ UTF-8 にする (長さは UTF-8 のバイト数。ASCII なら文字数と同じ)。
    """
    out: list[str] = []
    for command in commands:
        out.append(f"*{len(command)}\r\n")
        for arg in command:
            if isinstance(arg, str):
                text = arg
            elif isinstance(arg, int) and not isinstance(arg, bool):
                text = str(arg)
            elif isinstance(arg, float):
                text = repr(arg)
            elif isinstance(arg, bytes):
                text = arg.decode("utf-8")
            else:
                raise TypeError(f"redis command argument: expected str, bytes, int or float, got {type(arg).__name__}")
            size = len(text) if text.isascii() else len(text.encode("utf-8"))
            out.append(f"${size}\r\n{text}\r\n")
    return "".join(out).encode("utf-8")


def is_noscript(reply: Any) -> bool:
    """返事が NOSCRIPT (Redis のスクリプトのキャッシュに無い: 何も実行されていない) なら真。"""
    import redis

    return isinstance(reply, redis.exceptions.NoScriptError) or (
        isinstance(reply, redis.ResponseError) and str(reply).startswith("NOSCRIPT")
    )


class Waiter:
    """列に並んだ 1 つの呼び出し: 項目、起こすためのロック (取った状態で作る)、リーダーを任されたか。"""

    __slots__ = ("gate", "items", "lead")

    def __init__(self, items: list[CommitItem]) -> None:
        """項目を受け取り、起こすためのロックを取っておく。"""
        self.items = items
        self.gate = threading.Lock()
        self.gate.acquire()
        self.lead = False


class CommitQueue:
    """グループコミット (わざと待たない): 書いている間に加わった項目を、次の 1 回の往復でまとめて書く。

    - 書いている者 (リーダー) がいなければ、呼んだ者がすぐ自分の項目を書く (待ち時間は増えない)。
    - リーダーが Redis の返事を待つ間 (eventlet ではハブへ戻っている) に来た呼び出しは、列に並んで眠る。
      リーダーは書き終えると、列の先頭を次のリーダーとして起こし、そのリーダーが列の全部 (最大 ``max_batch``)
      を 1 回で書いて、その呼び出したちを起こす。
    - どの呼び出しも、自分の項目が書かれた (か誤りが入った) 後で返る (先書きは崩れない)。同じスレッドの
      項目が同じまとまりに入っても、並んだ順に実行される (パイプラインは順に実行される)。

    ``llm_router.store.group.GroupCommitter`` と同じ考え方で、譲る (``pause``) 手順と、リーダーの分の
    待ち合わせのオブジェクトを省いたもの (1 件ずつのときの費用を増やさないため)。
    """

    def __init__(self, write: Any, max_batch: int) -> None:
        """``write(items)`` は項目を書き、結果か誤りを各項目に入れる関数。"""
        self._write = write
        self._max = max(1, int(max_batch))
        self._lock = threading.Lock()
        self._queue: list[Waiter] = []
        self._leading = False

    def commit(self, items: list[CommitItem]) -> None:
        """項目を書く (リーダーがいればその後に並び、自分の番か、書かれるのを待つ)。"""
        entry = None
        with self._lock:
            if self._leading:
                entry = Waiter(items)
                self._queue.append(entry)
            else:
                self._leading = True
        if entry is not None:
            try:
                entry.gate.acquire()  # 書かれたか、リーダーを任されたら起きる
            except BaseException:
                self._abandon(entry)
                raise
            if not entry.lead:
                return
        self._lead(items)

    def _abandon(self, entry: Waiter) -> None:
        """待っている間に止められた呼び出し (グリーンスレッドの kill、タイムアウト) の後始末。

        まだ列にいれば抜ける (項目は書かれない)。リーダーを任されていたら、次の者に渡す (さもないと
        誰も書かなくなり、ストアのコミットがすべて止まる)。既にまとまりに入っていれば、書かれるに任せる。
        """
        with self._lock:
            for i, waiting in enumerate(self._queue):
                if waiting is entry:
                    del self._queue[i]
                    return
            if not entry.lead:
                return
            successor = self._queue.pop(0) if self._queue else None
            if successor is None:
                self._leading = False
            else:
                successor.lead = True
        if successor is not None:
            successor.gate.release()

    def _lead(self, own: list[CommitItem]) -> None:
        """リーダーとして自分の項目と列の項目を 1 回で書き、書いた呼び出しを起こし、次のリーダーを決める。"""
        with self._lock:
            taken = self._queue[: self._max - 1]
            del self._queue[: len(taken)]
        items = own + [item for entry in taken for item in entry.items]
        try:
            self._write(items)
        except BaseException as exc:  # 想定外の失敗も、待っている全員に伝える
            for item in items:
                if item.error is None and not item.result:
                    item.error = exc
        finally:
            with self._lock:
                successor = self._queue.pop(0) if self._queue else None
                if successor is None:
                    self._leading = False
                else:
                    successor.lead = True
            for entry in taken:
                entry.gate.release()
            if successor is not None:
                successor.gate.release()


class DedicatedPipeline:
    """専用の接続 1 本で、コマンドの列を 1 回の送信にまとめて送る (グループコミットのリーダーとリースの更新係が使う)。

    Args:
        client: redis-py のクライアント (接続の設定とスクリプトの読み込みに使う。プールの接続は借りない)。
    """

    def __init__(self, client: redis.Redis) -> None:
        """まだ繋がない (最初の送信で繋ぐ)。"""
        self.client = client
        self.lock = threading.Lock()
        self._conn: Any = None
        self.round_trips = 0  # 専用の接続での往復の回数 (コミットとリースの更新。テストと計測のため)

    def evalsha_many(self, script: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """同じスクリプトを ``(keys, args)`` ごとに、1 回の往復 (パイプライン) で実行し、返事を順に返す。

        スクリプトが Redis に無ければ (再起動の後) 読み込んで、NOSCRIPT で断られた呼び出し (何も実行されていない)
        だけをもう一度送る。redis-py の接続の誤り (届かない、タイムアウト) はそのまま上げる。
        """
        replies = self.send([("EVALSHA", script.sha, len(k), *k, *a) for k, a in calls])
        retry = [i for i, reply in enumerate(replies) if is_noscript(reply)]
        if retry:
            script.sha = self.client.script_load(script.script)
            again = self.send([("EVALSHA", script.sha, len(calls[i][0]), *calls[i][0], *calls[i][1]) for i in retry])
            for i, reply in zip(retry, again, strict=True):
                replies[i] = reply
        return replies

    def send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """コマンドを 1 回の送信にまとめて送り、返事 (拒否は例外のオブジェクト) を順に返す。

        送る前に、古くなった接続 (Redis が再起動して切れたもの) なら繋ぎ直す。送った後で切れたら接続を捨てて
        誤りを上げる (どこまで書けたか分からないので、送り直さない)。
        """
        import redis

        with self.lock:
            conn = self._conn
            if conn is None:
                pool = self.client.connection_pool
                conn = self._conn = pool.connection_class(**pool.connection_kwargs)
            try:
                if conn._sock is not None and conn.can_read():
                    conn.disconnect()  # 切れている (EOF が読める) か、読み残しがある: 繋ぎ直す
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                conn.disconnect()
            conn.connect()
            self.round_trips += 1
            try:
                conn.send_packed_command([pack_commands(commands)])
                replies: list[Any] = []
                for _ in commands:
                    try:
                        replies.append(conn.read_response())
                    except redis.ResponseError as exc:
                        replies.append(exc)
            except BaseException:
                conn.disconnect()
                raise
            return replies

    def close(self) -> None:
        """専用の接続を閉じる (次の送信でまた繋ぐ)。"""
        with self.lock:
            if self._conn is not None:
                self._conn.disconnect()
                self._conn = None
