"""エージェントループ: 1 回の実行 (run) = ユーザーメッセージ 1 つに対するステップの繰り返し。

流れ (図は README.md): ``run_started`` → ステップ (モデル呼び出し → ツール → 判定) を繰り返す →
``run_finished`` / ``run_error`` / ``run_cancelled`` のどれか 1 つ。

キャンセル (``now``) は呼んだ側のスレッドでそのまま ``run_cancelled`` を出す (止まった上流の読み取りを
待たない)。トークンのコールバックが上流のソケットを閉じ、クライアント側ツールの待ちと
サーバー側ツールに取り消しを伝える。実行スレッドは後からほどけるが、終わりのイベントは 1 回だけで、
その後は何も送らない (:class:`RunEvents`)。
Socket.IO も Flask も知らない。使うのは ``threading`` だけ (eventlet / gevent ではグリーンスレッドになる)。
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llm_router.agent.context import RunContext, logger
from llm_router.agent.errors import error_payload, unexpected_end_error
from llm_router.agent.events import RunEvents
from llm_router.agent.sink import EventSink
from llm_router.agent.steps import Cancelled, Continue, Failed, Finished, Outcome, run_step
from llm_router.agent.thread_state import ThreadState
from llm_router.agent.tool_execution import ClientCallBook
from llm_router.agent.toolbox import Toolbox
from llm_router.core.cancel import CancelToken
from llm_router.core.schemas.common import ContentPart, Message

if TYPE_CHECKING:  # 型のためだけ (Hydra の import を実行時に持ち込まない)
    from llm_router.config.schema import AgentConfig


class AgentRun:
    """1 回の実行。``run()`` はブロックし、その実行のイベントをすべてシンクへ送る。"""

    def __init__(
        self,
        run_id: str,
        thread: ThreadState,
        user_content: str | list[ContentPart],
        router: Any,
        registry: Any,
        sink: EventSink,
        agent_config: AgentConfig,
    ) -> None:
        """実行 ID、スレッド、ユーザーの入力、ルーター、ツールのレジストリ (``None`` 可)、シンク、設定を受け取る。"""
        self.run_id = run_id
        self.thread = thread
        self._user = Message.user(user_content)
        self._user_added = False
        self._started = False
        # 失敗でユーザーメッセージを履歴から外したか (run_error の rolled_back)
        self.rolled_back = False
        server_names = thread.server_tools if thread.server_tools is not None else list(agent_config.server_tools)
        settings = getattr(router, "settings", None)
        secrets = tuple(settings.secrets.all_values()) if settings is not None else ()
        self.ctx = RunContext(
            run_id=run_id,
            thread=thread,
            router=router,
            toolbox=Toolbox(registry, server_names, thread),
            events=RunEvents(sink, run_id, secrets),
            token=CancelToken(),
            agent_config=agent_config,
            max_steps=max(1, thread.settings.max_steps or agent_config.max_steps),
            secrets=secrets,
        )
        self.ctx.client_calls = ClientCallBook(self.ctx)
        self.ctx.token.add_callback(self.ctx.client_calls.close_all)

    # ------------------------------------------------------------ 外から見える状態と操作

    @property
    def done(self) -> bool:
        """終わりのイベントを送り終えていれば真 (履歴もそのときには確定している)。"""
        return self.ctx.events.closed

    @property
    def pending_client_calls(self) -> list[str]:
        """クライアントの答えを待っているツール呼び出しの ID。"""
        return self.ctx.client_calls.awaiting_ids()

    def submit_tool_result(self, tool_call_id: str, result: Any, is_error: bool = False) -> str | None:
        """クライアント側ツールの答え。``None`` (受理)、``unknown_tool_call``、``not_awaiting`` のどれかを返す。"""
        if self.done:
            # 実行が終わっていれば、既知の呼び出しはすべて closed (not_awaiting) になっている
            self.ctx.client_calls.close_all()
        try:
            return self.ctx.client_calls.submit(tool_call_id, result, is_error)
        except Exception as exc:
            # 結果のイベントを送れなかった (ストアが書き込みを拒んだなど): ランをその誤りで終え、待ちをほどく
            logger.exception("recording the tool result of run %s failed", self.run_id)
            self._end(Failed(error_payload(exc, "tool", "", self.ctx.secrets)))
            self.ctx.token.cancel("error")
            raise

    def cancel(self, mode: str = "now", reason: str = "client") -> bool:
        """実行を取り消す。``now`` は即座に、``after_step`` はいまのステップ (とそのツール) の後で。

        Returns:
            まだ終わっていない実行に取り消しを受け付けたら真 (何度呼んでもよい)。
        """
        with self.ctx.events.lock:
            # 終わったかどうかの判定と run_cancelled の送出を同じロックの下で行う: 真を返すなら、
            # このランの終わりのイベントは必ず run_cancelled (直前に run_finished が出ていることはない)
            if self.done:
                return False
            if mode == "after_step":
                if self.ctx.after_step is None:
                    self.ctx.after_step = reason
                return True
            self._end(Cancelled(reason))
        # 上流のソケットを閉じ、待ちをほどく (ロックの外で: コールバックが別のロックを取ってもよいように)
        self.ctx.token.cancel(reason)
        return True

    def ensure_ended(self) -> None:
        """終わりのイベントがまだ出ていなければ ``run_error`` (``internal``) で閉じる (登録簿の最後の守り)。"""
        phase = "tool" if self.ctx.progress.assistant else "before_output"
        self._end(Failed(unexpected_end_error(phase)))

    # ------------------------------------------------------------ ループ

    def run(self) -> None:
        """実行する (ブロックする)。終わりのイベントを必ず 1 つ送る。"""
        try:
            try:
                self._end(self._loop())
            except Exception as exc:
                logger.exception("agent run %s failed", self.run_id)
                phase = "tool" if self.ctx.progress.assistant else "before_output"
                self._end(Failed(error_payload(exc, phase, "", self.ctx.secrets)))
        finally:
            self.ctx.client_calls.close_all()

    def _loop(self) -> Outcome:
        """ステップを最大 ``max_steps`` 回繰り返し、終わり方を返す。"""
        try:
            self.ctx.chain = list(self.ctx.router.chain(self.thread.model))
        except Exception as exc:
            self._start(self.thread.model or "auto")
            return Failed(error_payload(exc, "before_output", "", self.ctx.secrets))
        if not self._start(self.ctx.route.spec):
            return Cancelled(self.ctx.token.reason or "client")
        outcome: Outcome = Continue()
        for step in range(1, self.ctx.max_steps + 1):
            outcome = run_step(self.ctx, step)
            if not isinstance(outcome, Continue):
                break
        return outcome

    def _start(self, model: str) -> bool:
        """ユーザーメッセージを履歴に入れ ``run_started`` を送る (キャンセル済みなら偽)。"""
        with self.ctx.events.lock:
            if self.done:
                return False
            self._add_user()
            self._started = True
            return self.ctx.events.run_started(model, self.ctx.max_steps)

    def _add_user(self) -> None:
        """(ロックの下で) ユーザーメッセージを 1 回だけ履歴に入れる。"""
        if not self._user_added:
            self.thread.history.append(self._user)
            self._user_added = True

    def _end(self, outcome: Outcome) -> None:
        """終わりのイベントを 1 回だけ送る。同じロックの下で履歴を確定し、使用量を数える。"""
        ctx = self.ctx
        with ctx.events.lock:
            if ctx.events.closed:
                return
            if isinstance(outcome, Finished):
                ctx.commit_progress("cancelled")
                ctx.events.run_finished(outcome.finish_reason, ctx.total_usage(), outcome.text)
            elif isinstance(outcome, Failed):
                ctx.discard_step()
                self.rolled_back = self._roll_back()
                ctx.events.run_error(outcome.error, ctx.total_usage(), self.rolled_back)
            elif isinstance(outcome, Cancelled):
                self._finalize_cancel()
                ctx.events.run_cancelled(outcome.reason, ctx.total_usage())

    def _roll_back(self) -> bool:
        """(ロックの下で) 完了したステップが 1 つも無ければ、この実行のユーザーメッセージを履歴から外す。

        そうすれば次の ``user_message`` は、プロバイダが前に受け付けた履歴の上で送られる
        (失敗した入力 — 大きすぎる画像や文脈のあふれ — が残ってスレッドが使えなくなることがない)。
        """
        if self.ctx.committed_steps:
            return False
        if not self._user_added:
            return True
        history = self.thread.history
        for index in range(len(history) - 1, -1, -1):
            if history[index] is self._user:
                del history[index]
                break
        self._user_added = False
        return True

    def _finalize_cancel(self) -> None:
        """(ロックの下で) 取り消し時の履歴: 部分テキストは ``interrupted``、答えの無い呼び出しには "cancelled"。"""
        if not self._started:
            self._add_user()
            self._started = True
            self.ctx.events.run_started(self.thread.model or "auto", self.ctx.max_steps)
        self.ctx.commit_progress("cancelled")
