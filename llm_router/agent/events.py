"""1 回の実行のイベントを送る口。イベントの名前とフィールドは共有の語彙 (:mod:`llm_router.core.schemas.events`) にある。

- 呼び手はイベントの値 (``ev.TextDelta(message_id, delta)`` など) を作って :meth:`RunEvents.send` に渡す。
  ペイロードにするのは値の ``fields()`` だけ。シンクの口 (``emit(event_type, run_id, fields)``) は変えない。
- 終わりのイベント (``run_finished`` / ``run_error`` / ``run_cancelled``) は 1 回だけ。その後の
  イベントは黙って捨てる。キャンセル側のスレッドが ``run_cancelled`` を出した後に、まだほどけて
  いる途中のモデルのスレッドが何かを送ることはない (同じロックの下で判定して送るため)。
- ロックはこの実行の中だけで共有され、競合するのはキャンセルとツール結果の受け付けのときだけ。
- 推論の署名 (``ReasoningPart.signature``) や ``ProviderState`` はここを通らない: 推論は ``text`` だけを送る。
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from llm_router.agent.sink import EventSink
from llm_router.core.redaction import redact_value, secret_list
from llm_router.core.schemas.events import ServerEvent


class RunEvents:
    """1 回の実行のイベント送出 (終わりのイベントの後は何も送らない)。"""

    def __init__(self, sink: EventSink, run_id: str, secrets: Iterable[str] = ()) -> None:
        """送り先のシンク、実行 ID、伏せる秘密の値を受け取る。

        送るすべてのイベントの文字列 (ツールのエラー、再試行の理由、``step_reset`` の理由、``run_error``) は
        ``run_error`` と同じ :func:`llm_router.core.redaction.redact_value` を通る。
        """
        self._sink = sink
        self._secrets = secret_list(secrets)
        self.run_id = run_id
        self.lock = threading.RLock()
        self.closed = False

    def send(self, event: ServerEvent) -> bool:
        """イベントを送る。実行が既に終わっていれば送らずに偽を返す。

        終わりのイベント (``TERMINAL``) は送出が成功した後だけ ``closed`` にする。送出が例外を投げたら閉じずに
        その例外を上げるので、呼び手は別の終わりのイベント (``run_error``) を送り直せる
        (終わりのイベントの無いランを残さない)。履歴の確定は呼び手が同じロックの下で先に行う。
        """
        with self.lock:
            if self.closed:
                return False
            self._sink.emit(event.TYPE, self.run_id, redact_value(event.fields(), self._secrets))
            if event.TERMINAL:
                self.closed = True
            return True

    def sync_history(self) -> None:
        """履歴が変わった (ステップが完了した) ことをシンクに伝える。

        シンクが ``sync_history(run_id)`` を持てば呼ぶ (リアルタイム層はここで履歴をストアへ書く)。
        持たなければ何もしない (次のイベントと一緒に書かれる)。
        """
        with self.lock:
            hook = getattr(self._sink, "sync_history", None)
            if hook is not None and not self.closed:
                hook(self.run_id)
