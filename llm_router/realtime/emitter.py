"""スレッドのイベント送出: ``seq`` を付ける唯一の場所。ログへの追加とスレッドのルームへの送信を同じロックの下で行う。

エージェントループの ``EventSink`` を満たす (``emit(event_type, run_id, fields)``)。
1 イベントあたりの処理は、封筒の dict を 1 つ作る・deque に足す (バイト数の上限のためにそのイベントだけを
JSON にして長さを測る)・Socket.IO の送信キューに積む、だけ (履歴の JSON 化も INFO ログもしない)。Socket.IO の ``emit`` はソケットの送信キューに
積むだけでネットワーク I/O を待たないので、ロックを持ったまま呼んでよい。

再開 (:meth:`ThreadEmitter.attach`) も同じロックの下で「ルームへの参加」と「ログの再送」を行うので、
再送とライブのイベントの間に抜けも重複も生じない。
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from llm_router.realtime.event_log import EventLog
from llm_router.realtime.schemas import RUN_END_EVENTS

NAMESPACE = "/agent"


def room_name(thread_id: str) -> str:
    """スレッドのルーム名。"""
    return "thread:" + thread_id


class ThreadEmitter:
    """1 スレッド分のイベント送出口 (エージェントループの ``EventSink``)。

    Args:
        thread_id: スレッド ID。
        socketio: Flask-SocketIO の ``SocketIO`` (``emit`` と ``server.enter_room`` を使う)。
        log: このスレッドのイベントログ。
        on_run_end: ラン終了イベントを送る直前に、送出のロックの下で呼ぶ関数 (登録簿がアクティブなランを外す)。
            送る前に外すので、``run_finished`` を受け取ったクライアントがすぐ次の ``user_message`` を
            送っても ``run_in_progress`` にならない。
    """

    def __init__(
        self,
        thread_id: str,
        socketio: Any,
        log: EventLog,
        on_run_end: Callable[[str | None], None] | None = None,
    ) -> None:
        """送出口を作る。"""
        self.thread_id = thread_id
        self.room = room_name(thread_id)
        self._socketio = socketio
        self.log = log
        self._on_run_end = on_run_end
        self.lock = threading.Lock()

    def emit(self, event_type: str, run_id: str | None, fields: dict[str, Any]) -> None:
        """封筒 (``type`` / ``thread_id`` / ``run_id`` / ``seq`` / ``ts``) を付け、ログに足し、ルームへ送る。"""
        with self.lock:
            # アクティブなランを外すのも送出のロックの下で: 外れた直後に別のソケットが始めたランの
            # run_started は、このロックを待つので必ずこの終わりのイベントより後の seq になる
            if event_type in RUN_END_EVENTS and self._on_run_end is not None:
                self._on_run_end(run_id)
            event = {
                "type": event_type,
                "thread_id": self.thread_id,
                "run_id": run_id,
                "seq": self.log.last_seq + 1,
                "ts": time.time(),
            }
            event.update(fields)
            self.log.append(event)
            self._socketio.emit(event_type, event, to=self.room, namespace=NAMESPACE)

    def attach(self, sid: str, resume_after_seq: int | None) -> tuple[int, list[str]]:
        """ソケット ``sid`` をルームに入れ、必要ならログを再送する。``(last_seq, 警告)`` を返す。

        ルームへの参加と再送はイベントの送出と同じロックの下で行う: 再送の最後の ``seq`` の次の
        イベントから、ルーム経由のライブのイベントが続く。
        """
        warnings: list[str] = []
        with self.lock:
            self._socketio.server.enter_room(sid, self.room, namespace=NAMESPACE)
            last = self.log.last_seq
            if resume_after_seq is None:
                return last, warnings
            if resume_after_seq > last:
                warnings.append(
                    f"resume_after_seq {resume_after_seq} is ahead of this thread's last seq {last}; nothing to replay"
                )
                return last, warnings
            if self.log.missing_before(resume_after_seq):
                warnings.append(
                    f"events {resume_after_seq + 1}..{self.log.first_seq - 1} are no longer kept "
                    f"(server.event_log_max_events / event_log_max_age_s); replaying from {self.log.first_seq}"
                )
            for event in self.log.after(resume_after_seq):
                self._socketio.emit(event["type"], event, to=sid, namespace=NAMESPACE)
            return last, warnings

    def detach(self, sid: str) -> None:
        """ソケット ``sid`` をルームから出す。"""
        with self.lock:
            self._socketio.server.leave_room(sid, self.room, namespace=NAMESPACE)
