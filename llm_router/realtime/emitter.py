"""スレッドのイベント送出 (先書き): イベントをストアにコミットしてから、スレッドのルームへ送る。

エージェントループの ``EventSink`` を満たす (``emit(event_type, run_id, fields)``)。流れ (図は README.md):

1. スレッドの送出のロックを取る (コミットから送信までずっと持つ: 送る順は必ず ``seq`` の順)。
2. 封筒 (``type`` / ``thread_id`` / ``run_id`` / ``ts``) を付ける。``seq`` はストアのログが配る。
3. エージェントの履歴 (``ThreadState.history``、メッセージのリスト) と、ストアに書いた履歴の控え
   (``entries``) を比べ、違えば :class:`~llm_router.store.base.HistoryChange` (ある位置から後ろを消す + 足す) を作る。
   ユーザーメッセージは ``run_started`` と、完了したステップは ``sync_history`` (ステップの確定) と、
   中断されたテキストと巻き戻しは終わりのイベントと、同じトランザクションに入る。
4. ``store.commit`` が返ったら (全部が保存されている) ルームへ送る。例外ならストアには何も残っていない:
   何も送らず、エージェントの履歴を控え (= ストアの中身) に戻して、例外を上げる (ランは ``store_unavailable``
   で終わる)。終わりのイベントさえ書けないときは、``seq: null`` の記録されない通知として送る
   (そのランは次の起動で ``interrupted`` として閉じられる)。

再開 (:meth:`ThreadEmitter.attach`) も同じロックの下で「ルームへの参加」と「ストアのログの再送」を行うので、
再送とライブのイベントの間に抜けも重複も生じない。
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from llm_router.core.schemas.common import Message
from llm_router.core.schemas.serialization import part_to_dict
from llm_router.core.schemas.thread_record import HistoryEntry
from llm_router.realtime.schemas import NAMESPACE, RUN_END_EVENTS
from llm_router.store.base import HistoryChange, Store
from llm_router.store.errors import RunAlreadyEnded, StoreUnavailable

TITLE_CHARS = 60
# まとめてコミットしてよいイベント (履歴を変えない差分) と、1 回のまとまりの上限
BATCHED_EVENTS = frozenset({"text_delta", "reasoning_delta", "tool_call_delta"})
MAX_BATCH = 64


def room_name(thread_id: str) -> str:
    """スレッドのルーム名。"""
    return "thread:" + thread_id


def new_message_id() -> str:
    """履歴の 1 件の ID。"""
    return "msg_" + uuid.uuid4().hex[:20]


def content_to_wire(content: Any) -> Any:
    """メッセージの ``content`` をプロトコルの形 (文字列か、パーツの dict のリスト) にする。"""
    if isinstance(content, str):
        return content
    return [part_to_dict(part) for part in content]


def run_event(event_type: str, thread_id: str, run_id: str | None, fields: dict[str, Any]) -> dict[str, Any]:
    """ストアへ書くイベントの dict: 封筒 (``type``・``thread_id``・``run_id``・``ts``) とフィールド (``seq`` はストアが入れる)。"""
    return {"type": event_type, "thread_id": thread_id, "run_id": run_id, "ts": time.time(), **fields}


def rollback_point(entries: Sequence[HistoryEntry], run_id: str | None) -> tuple[bool, int | None]:
    """失敗したランの巻き戻し: ``(完了したステップが無い, そのランの最初の項目の位置)``。"""
    first = next((i for i, e in enumerate(entries) if e.run_id == run_id), None)
    completed = any(e.run_id == run_id and e.message.role == "assistant" and not e.message.interrupted for e in entries)
    return not completed, first


def title_from(message: Message) -> str | None:
    """最初のユーザーメッセージから題名を作る (テキストの先頭 60 文字。テキストが無ければ ``None``)。"""
    text = " ".join(message.text().split())
    return text[:TITLE_CHARS] or None


class ThreadEmitter:
    """1 スレッド分のイベント送出口 (エージェントループの ``EventSink``)。

    Args:
        thread_id: スレッド ID。
        socketio: Flask-SocketIO の ``SocketIO`` (``emit`` と ``server.enter_room`` を使う)。
        store: スレッドとイベントログのストア。
        history: エージェントの履歴のリスト (``ThreadState.history``。同じオブジェクトを使い続ける)。
        entries: ストアにある履歴の控え (``history`` と同じ順)。
        title: ストアにある題名 (``None`` なら最初のユーザーメッセージから付ける)。
        on_run_end: ラン終了イベントを送る直前に、送出のロックの下で呼ぶ関数 (登録簿がアクティブなランを外す)。
            送る前に外すので、``run_finished`` を受け取ったクライアントがすぐ次の ``user_message`` を
            送っても ``run_in_progress`` にならない。
    """

    def __init__(
        self,
        thread_id: str,
        socketio: Any,
        store: Store,
        history: list[Message],
        entries: list[HistoryEntry],
        title: str | None = None,
        on_run_end: Callable[[str | None], None] | None = None,
        defer: Callable[[Callable[[], None]], Any] | None = None,
    ) -> None:
        """送出口を作る。

        ``defer`` (eventlet では ``eventlet.spawn_n``) があれば、差分のイベントをすぐにはコミットせず
        まとまりに溜め、呼んでいるグリーンスレッドがハブへ戻ったとき (上流の次の読み取りが待つとき) に
        1 回のコミットで書いてから送る。差分以外のイベント・再開・スレッドのイベントは、その前に必ず
        まとまりを書き出す。どのイベントもコミットより先には送らない。
        """
        self.thread_id = thread_id
        self.room = room_name(thread_id)
        self._socketio = socketio
        self.store = store
        self.history = history
        self.entries = entries
        self.title = title
        self._on_run_end = on_run_end
        # 書けなかった終わりのイベント (ストアが戻ったら最初に記録する): (run_id, 封筒を除いたフィールド)
        self.pending_end: tuple[str | None, str, dict[str, Any]] | None = None
        # 再入できるロック: rewind は送出のロックの下で履歴を変えてから emit する
        self.lock = threading.RLock()
        # ルームへ送った最後の seq (最初の attach で決まる)。複数のプロセスのとき、別のプロセスが書いた
        # イベント (deliver_logged) とこのプロセスが書いたイベントを、抜けも重複もなく seq の順に送るため
        self.delivered_seq: int | None = None
        self._defer = defer
        # まだコミットしていない差分 (seq はまだ無い) と、書き出しで起きた誤り (次の emit で上げる)
        self._batch: list[dict[str, Any]] = []
        self._batch_error: StoreUnavailable | None = None

    # ------------------------------------------------------------ 送出

    def emit(self, event_type: str, run_id: str | None, fields: dict[str, Any]) -> None:
        """封筒を付け、履歴の変更と一緒にストアへコミットしてから、ルームへ送る。

        Raises:
            StoreUnavailable: ストアが書き込みを拒んだ (終わりのイベント以外)。何も送らず、何も残らない。
        """
        if self._defer is not None and event_type in BATCHED_EVENTS:
            self._buffer(event_type, run_id, fields)
            return
        with self.lock:
            terminal = event_type in RUN_END_EVENTS
            try:
                self._raise_batch_error()
                self.flush()
            except StoreUnavailable:
                # 書けなかった差分は送られていない。終わりのイベントだけは下で必ず送る
                if not terminal:
                    raise
            if not terminal:
                self.settle()
            # アクティブなランを外すのも送出のロックの下で: 外れた直後に別のソケットが始めたランの
            # run_started は、このロックを待つので必ずこの終わりのイベントより後の seq になる
            if terminal and self._on_run_end is not None:
                self._on_run_end(run_id)
            event = run_event(event_type, self.thread_id, run_id, fields)
            keep, added = self._history_change(run_id)
            change = None if keep is None else HistoryChange(None if keep >= len(self.entries) else keep, added)
            title = None
            if event_type == "run_started":
                user = next((e for e in reversed(added) if e.message.role == "user"), None)
                if user is not None:
                    event["message"] = {"message_id": user.message_id, "content": content_to_wire(user.message.content)}
                    if self.title is None:
                        title = title_from(user.message)
            try:
                self.store.commit(
                    self.thread_id,
                    [event],
                    history=change,
                    title=title,
                    run_ended=run_id if terminal else None,
                )
            except StoreUnavailable:
                self._restore_history()
                if not terminal:
                    raise
                # 終わりのイベントさえ書けない: 記録されない通知 (seq: null) として送ってランを閉じ、
                # ストアが戻ったら最初に記録する (settle)
                event["seq"] = None
                if event_type == "run_error":
                    event["rolled_back"] = self._rollback_point(run_id)[0]
                self.pending_end = (run_id, event_type, {k: v for k, v in fields.items() if k != "seq"})
                if event_type == "run_error":
                    self.pending_end[2]["rolled_back"] = event["rolled_back"]
                self._socketio.emit(event_type, event, to=self.room, namespace=NAMESPACE)
                return
            if keep is not None:
                del self.entries[keep:]
                self.entries.extend(added)
            if title is not None:
                self.title = title
            self._to_room(event)

    def _to_room(self, event: dict[str, Any]) -> None:
        """(送出のロックの下で) コミットしたイベントをルームへ送る。

        ルームへ送った最後の ``seq`` との間に、別のプロセスが書いてまだ届けていないイベントがあれば
        (複数のプロセスのときだけ起きる)、先にそれをログから送る。1 プロセスでは比較 1 回だけ。
        """
        seq = event["seq"]
        delivered = self.delivered_seq
        if delivered is not None and seq > delivered + 1:
            for missed in self.store.after(self.thread_id, delivered, limit=seq - delivered - 1):
                if missed["seq"] < seq:
                    self._socketio.emit(missed["type"], missed, to=self.room, namespace=NAMESPACE)
        self.delivered_seq = seq
        self._socketio.emit(event["type"], event, to=self.room, namespace=NAMESPACE)

    def deliver_logged(self, events: list[dict[str, Any]]) -> int:
        """別のプロセスが書いたイベント (ログから読んだもの、``seq`` の順) をルームへ送る。送った件数を返す。

        ルームへ送った最後の ``seq`` より後のものだけを送る (このプロセスが書いて送ったもの、再送で送ったものは
        送らない)。まだ誰も attach していなければ何も送らない。
        """
        sent = 0
        with self.lock:
            for event in events:
                if self.delivered_seq is None or event["seq"] <= self.delivered_seq:
                    continue
                self.delivered_seq = event["seq"]
                self._socketio.emit(event["type"], event, to=self.room, namespace=NAMESPACE)
                sent += 1
        return sent

    def refresh(self, stored: Any) -> bool:
        """ストアの中身 (別のプロセスが変えたかもしれない) で、履歴の控えと題名を置き換える。変わっていたら真。

        複数のプロセスのとき、ランを始める前と ``rewind`` の前に (送出のロックの下で) 呼ぶ。
        """
        with self.lock:
            entries = list(stored.history)
            same = len(entries) == len(self.entries) and all(
                a.message_id == b.message_id for a, b in zip(entries, self.entries, strict=True)
            )
            self.title = stored.title
            if same:
                return False
            self.entries[:] = entries
            self.history[:] = [entry.message for entry in entries]
            return True

    def _buffer(self, event_type: str, run_id: str | None, fields: dict[str, Any]) -> None:
        """差分をまとまりに足す (まとまりの最初ならハブへ戻ったときの書き出しを仕掛ける)。

        Raises:
            StoreUnavailable: 前の書き出しが拒まれていた (ランはその誤りで終わる)。
        """
        with self.lock:
            self._raise_batch_error()
            event = run_event(event_type, self.thread_id, run_id, fields)
            self._batch.append(event)
            if len(self._batch) == 1:
                self._defer(self._flush_later)
            elif len(self._batch) >= MAX_BATCH:
                self.flush()

    def _raise_batch_error(self) -> None:
        """(ロックの下で) 前の書き出しが拒まれていたら、その誤りを一度だけ上げる。"""
        if self._batch_error is not None:
            error, self._batch_error = self._batch_error, None
            raise error

    def _flush_later(self) -> None:
        """(別のグリーンスレッドで) まとまりを書き出す。拒まれたら次の emit で上げるために取っておく。"""
        with self.lock:
            try:
                self.flush()
            except StoreUnavailable as exc:
                self._batch_error = exc

    def flush(self) -> None:
        """溜まった差分を 1 回でコミットしてから送る (溜まっていなければ何もしない)。

        Raises:
            StoreUnavailable: ストアが拒んだ (差分はどれも送られず、何も残らない)。
        """
        with self.lock:
            if not self._batch:
                return
            batch, self._batch = self._batch, []
            self.store.commit(self.thread_id, batch)
            for event in batch:
                self._to_room(event)

    def settle(self) -> None:
        """書けなかった終わりのイベントがあれば、いま記録する (ストアが書き込みを受け付けるようになった後)。

        ``run_error`` で完了したステップが無ければ、そのランのユーザーメッセージも同じトランザクションで
        履歴から外す (``rolled_back``)。記録したイベントは ``seq`` つきでルームへも送る。

        Raises:
            StoreUnavailable: まだ書けない (何も変わらない)。
        """
        with self.lock:
            if self.pending_end is None:
                return
            run_id, event_type, fields = self.pending_end
            rolled_back, first = self._rollback_point(run_id)
            keep = first if (event_type == "run_error" and rolled_back and first is not None) else None
            event = run_event(event_type, self.thread_id, run_id, fields)
            change = None if keep is None else HistoryChange(keep, [])
            try:
                self.store.commit(self.thread_id, [event], history=change, run_ended=run_id)
            except RunAlreadyEnded:
                # 複数のプロセス: 別のプロセスがもう interrupted で閉じた (終わりは 1 つだけ)
                self.pending_end = None
                return
            self.pending_end = None
            if keep is not None:
                del self.entries[keep:]
                self._restore_history()
            self._to_room(event)

    def _rollback_point(self, run_id: str | None) -> tuple[bool, int | None]:
        """失敗したランの巻き戻し (:func:`rollback_point` を控えの履歴に当てる)。"""
        return rollback_point(self.entries, run_id)

    def sync_history(self, run_id: str | None) -> None:
        """(ステップの確定で) 履歴の変更だけをストアへコミットする。変わっていなければ何もしない。

        Raises:
            StoreUnavailable: ストアが拒んだ (エージェントの履歴は控えに戻す)。
        """
        with self.lock:
            self.flush()
            keep, added = self._history_change(run_id)
            if keep is None:
                return
            change = HistoryChange(None if keep >= len(self.entries) else keep, added)
            try:
                self.store.commit(self.thread_id, (), history=change)
            except StoreUnavailable:
                self._restore_history()
                raise
            del self.entries[keep:]
            self.entries.extend(added)

    def _history_change(self, run_id: str | None) -> tuple[int | None, list[HistoryEntry]]:
        """エージェントの履歴と控えの違い: ``(残す件数, 足す項目)``。同じなら ``(None, [])``。

        履歴は末尾でしか変わらない (足す・後ろを消す) ので、長さと最後の要素が同じなら同じとみなす (O(1))。
        """
        history, entries = self.history, self.entries
        n, m = len(history), len(entries)
        if n == m and (n == 0 or history[-1] is entries[-1].message):
            return None, []
        keep = 0
        for message, entry in zip(history, entries, strict=False):
            if message is not entry.message:
                break
            keep += 1
        now = time.time()
        added = [HistoryEntry(message, new_message_id(), run_id, now) for message in history[keep:]]
        return keep, added

    def _restore_history(self) -> None:
        """エージェントの履歴をストアの中身 (控え) に戻す (書けなかった変更を忘れる)。"""
        self.history[:] = [entry.message for entry in self.entries]

    # ------------------------------------------------------------ 再開

    def attach(self, sid: str, resume_after_seq: int | None) -> tuple[int, list[str]]:
        """ソケット ``sid`` をルームに入れ、必要ならストアのログを再送する。``(last_seq, 警告)`` を返す。

        ルームへの参加と再送はイベントの送出と同じロックの下で行う: 再送の最後の ``seq`` の次の
        イベントから、ルーム経由のライブのイベントが続く。
        """
        warnings: list[str] = []
        with self.lock:
            self._flush_quietly()
            bounds = self.store.bounds(self.thread_id)
            last = bounds.last_seq
            if self.delivered_seq is not None and self.delivered_seq < last:
                # 別のプロセスが書いてまだルームへ届けていない分を、新しいソケットが入る前に送る
                for missed in self.store.after(self.thread_id, self.delivered_seq):
                    if missed["seq"] <= last:
                        self._socketio.emit(missed["type"], missed, to=self.room, namespace=NAMESPACE)
            self.delivered_seq = max(last, self.delivered_seq or 0)
            last = self.delivered_seq
            self._socketio.server.enter_room(sid, self.room, namespace=NAMESPACE)
            if resume_after_seq is None:
                return last, warnings
            if resume_after_seq > last:
                warnings.append(
                    f"resume_after_seq {resume_after_seq} is ahead of this thread's last seq {last}; nothing to replay"
                )
                return last, warnings
            if bounds.missing_before(resume_after_seq):
                warnings.append(
                    f"events {resume_after_seq + 1}..{bounds.first_seq - 1} are no longer kept "
                    f"(server.event_log_max_events / event_log_max_age_s); replaying from {bounds.first_seq}"
                )
            for event in self.store.after(self.thread_id, resume_after_seq):
                if event["seq"] > last:
                    break  # それより後はルームへのライブの配送で届く
                self._socketio.emit(event["type"], event, to=sid, namespace=NAMESPACE)
            return last, warnings

    def _flush_quietly(self) -> None:
        """(ロックの下で) まとまりを書き出す。拒まれたら誤りを次の emit のために取っておく。"""
        try:
            self.flush()
        except StoreUnavailable as exc:
            self._batch_error = exc

    def detach(self, sid: str) -> None:
        """ソケット ``sid`` をルームから出す。"""
        with self.lock:
            self._socketio.server.leave_room(sid, self.room, namespace=NAMESPACE)
