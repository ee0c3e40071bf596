"""他のプロセスが動かすランのイベントを、スレッドの Redis Stream から追って自分のソケットへ届ける。

配送の設計 (README.md の「配送の設計の選択」): 持ち主のプロセスは自分のソケットへ直接送り、イベントごとの
PUBLISH はしない。そのスレッドのソケットを持つ他のプロセスは、この :class:`StreamFollower` で
ストリームを追う。

- 1 プロセスに 1 つ。見ているスレッドのストリームすべてと、自分の「起こし」用のストリーム
  (``<prefix>:wake:<process_id>``) を 1 回の ``XREAD BLOCK`` で待つ。:meth:`watch` は起こし用のストリームに
  1 件書いて、待っている ``XREAD`` をすぐ起こす (見るスレッドが増えたことを反映させるため)。
- 位置は「最後に届けた ``seq``」。``XREAD`` は ID ``<seq>-0`` より後を返すので、抜けも重複も無く
  ``seq`` 順に届く。Redis が落ちている間は間隔を伸ばしながら繋ぎ直し、戻れば同じ位置から続ける。
- ``deliver(thread_id, events)`` は追う側のスレッド (eventlet では緑スレッド) で呼ばれる。
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llm_router.cluster.connection import Backoff, Keys, unavailable_errors

if TYPE_CHECKING:
    import redis

log = logging.getLogger(__name__)


class StreamFollower:
    """見ているスレッドのストリームを追い、新しいイベントを ``deliver`` に渡す。

    Args:
        blocking_client: ``XREAD BLOCK`` に使うクライアント (読み取りのタイムアウトを ``block_s`` より長くしたもの)。
        process_id: このプロセスの id (起こし用のストリームの名前)。
        deliver: ``deliver(thread_id, events)`` (events は ``seq`` 付きで古い順)。
        block_s: 1 回の ``XREAD`` で待つ最大秒数。
        batch: 1 回の ``XREAD`` で 1 スレッドから読む最大件数。
        keys: キーの名前。
    """

    def __init__(
        self,
        blocking_client: redis.Redis,
        process_id: str,
        deliver: Callable[[str, list[dict[str, Any]]], Any],
        block_s: float = 1.0,
        batch: int = 500,
        keys: Keys | None = None,
    ) -> None:
        """まだ追い始めない (:meth:`start`)。"""
        self.client = blocking_client
        self.process_id = process_id
        self.deliver = deliver
        self.block_ms = max(1, int(block_s * 1000))
        self.batch = batch
        self.keys = keys or Keys()
        self._positions: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_key = self.keys.wake(process_id)
        self._wake_pos = "0-0"
        # 起こしを送ってから、追う側が見るスレッドを読み直すまで真 (その間の watch は起こさない)
        self._wake_pending = False

    def watch(self, thread_id: str, after_seq: int) -> None:
        """スレッドを ``after_seq`` より後から追う (既に追っていれば位置を変えない)。

        起こすのは、追う側がまだ前の起こしで見るスレッドを読み直していないときは 1 回だけ: ``XREAD`` は
        見ている全部のストリームを名指しするので、同時に開かれた N 本のスレッドそれぞれで起こすと、
        読み直しが N 回 (全体で N × 見ている数) になる。
        """
        with self._lock:
            if thread_id in self._positions:
                return
            self._positions[thread_id] = max(0, int(after_seq))
            if self._wake_pending:
                return
            self._wake_pending = True
        self._wake()

    def unwatch(self, thread_id: str) -> None:
        """スレッドを追うのをやめる。"""
        with self._lock:
            self._positions.pop(thread_id, None)

    def position(self, thread_id: str) -> int | None:
        """最後に届けた ``seq`` (追っていなければ ``None``)。"""
        with self._lock:
            return self._positions.get(thread_id)

    def _wake(self) -> None:
        """待っている ``XREAD`` を起こす (届かなくても、次の ``block_s`` で反映される)。"""
        try:
            with unavailable_errors(self.client, "stream follower wake"):
                self.client.xadd(self._wake_key, {"w": "1"}, maxlen=16, approximate=False)
        except Exception as exc:
            log.debug("stream follower: wake failed (%s)", type(exc).__name__)

    def start(self) -> None:
        """追う背景スレッドを起動する。"""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="stream-follower", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """止めて、終わるのを待つ。"""
        self._stop.set()
        self._wake()
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)
        self._thread = None
        try:
            self.client.delete(self._wake_key)
        except Exception:
            log.debug("stream follower: could not delete the wake stream", exc_info=True)

    def _loop(self) -> None:
        """止められるまで読み、届ける。Redis に届かない間は間隔を伸ばしながら繋ぎ直す。"""
        import redis

        backoff = Backoff("stream follower", self._stop)
        while not self._stop.is_set():
            with self._lock:
                streams = {self.keys.events(t): f"{seq}-0" for t, seq in self._positions.items()}
                self._wake_pending = False
            streams[self._wake_key] = self._wake_pos
            try:
                result = self.client.xread(streams, count=self.batch, block=self.block_ms)
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                backoff.failed(exc)
                continue
            backoff.reached()
            for key, entries in result or []:
                name = key.decode() if isinstance(key, bytes) else key
                if name == self._wake_key:
                    self._wake_pos = entries[-1][0].decode()
                    continue
                self._dispatch(name, entries)

    def _dispatch(self, key: str, entries: list[Any]) -> None:
        """1 スレッド分のエントリを ``seq`` 付きのイベントにして届け、位置を進める。"""
        thread_id = key[len(f"{self.keys.prefix}:t:") : -len(":events")]
        events = []
        for entry_id, fields in entries:
            event = json.loads(fields[b"e"])
            event["seq"] = int(entry_id.decode().split("-", 1)[0])
            events.append(event)
        with self._lock:
            if thread_id not in self._positions:
                return
            self._positions[thread_id] = events[-1]["seq"]
        try:
            self.deliver(thread_id, events)
        except Exception:
            log.exception("stream follower: deliver failed for %s", thread_id)
