"""ツールの段階: 1 ステップのツール呼び出しを実行し、結果をそろえる。

- 実行してはいけない呼び出し (未知の名前、不正な引数) はエラーの結果をすぐに返す (実行しない)。
- サーバー側ツールは同時に動かす。待ち役はスレッド (eventlet / gevent ではグリーンスレッド) 1 本で、
  ツールの関数そのものは :func:`llm_router.core.offload.run_blocking` でハブの外の OS スレッドで動く
  (``agent.tool_executor`` / ``agent.tool_threads``)。CPU を使うツールもほかの実行のトークンを止めない。
  各ツールは実行のキャンセルトークンにつながった子トークンを受け取り、ツールが始まってから
  ``agent.server_tool_timeout_s`` を過ぎたら "timed out" のエラー結果にして子トークンを取り消す。
- 待ちは期限の早い順: サーバー側ツールの期限は、クライアント側ツールの待ちが続いていても守られる。
- クライアント側ツールはモデルの応答中に ``tool_call_ready`` で告知済み (そのとき待ち受けを登録する)。
  ここでは告知からの ``agent.client_tool_timeout_s`` まで待ち、来なければ "timed out"。
- ``end_on_client_tools`` の実行 (AG-UI) ではクライアント側ツールを待たない: サーバー側ツールだけを
  終わらせ、ステップ (:func:`steps.run_step`) が実行を ``client_tools`` で終える。
- キャンセル (``now``) はすべての待ちを起こす。結果は呼び出し順に履歴へ入る (:mod:`progress`)。
"""

from __future__ import annotations

import threading
import time
from typing import Any

from llm_router.agent.context import RunContext, logger
from llm_router.agent.toolbox import CLIENT, SERVER
from llm_router.core import json_codec
from llm_router.core.cancel import CancelToken
from llm_router.core.offload import run_blocking
from llm_router.core.schemas import events as ev
from llm_router.core.schemas.common import Message, ToolCall, ToolResult
from llm_router.core.schemas.errors import LLMRouterError

TIMED_OUT = "timed out"


class PendingClientCall:
    """クライアントの答えを待つツール呼び出し 1 つ。状態は awaiting → answered / closed の一方通行。"""

    def __init__(self, call: ToolCall, awaiting: bool = True) -> None:
        """呼び出しと、待ち受けるか (不正な呼び出しは最初から closed) を受け取る。"""
        self.call = call
        self.started = time.monotonic()
        self.state = "awaiting" if awaiting else "closed"
        self.voided = False
        self.done = threading.Event()
        if not awaiting:
            self.done.set()

    def duration_ms(self) -> int:
        """告知からの経過ミリ秒。"""
        return int((time.monotonic() - self.started) * 1000)


class ClientCallBook:
    """1 回の実行のクライアント側ツール呼び出しの台帳 (``tool_result`` の受け付け)。"""

    def __init__(self, ctx: RunContext) -> None:
        """実行の共有状態を受け取る。"""
        self._ctx = ctx
        self._calls: dict[str, PendingClientCall] = {}
        self._lock = threading.Lock()

    def register(self, call: ToolCall, awaiting: bool = True) -> PendingClientCall:
        """呼び出しを登録する (同じ ID の 2 度目は最初のものを返す。``step_reset`` で無効にしたものは作り直す)。"""
        with self._lock:
            pending = self._calls.get(call.id)
            if pending is None or pending.voided:
                pending = PendingClientCall(call, awaiting)
                self._calls[call.id] = pending
            return pending

    def awaiting_ids(self) -> list[str]:
        """まだ答えを待っている呼び出しの ID。"""
        with self._lock:
            return [i for i, p in self._calls.items() if p.state == "awaiting"]

    def submit(self, tool_call_id: str, result: Any, is_error: bool) -> str | None:
        """クライアントの答えを受け付ける。``None`` (受理)、``unknown_tool_call``、``not_awaiting`` のどれか。"""
        with self._lock:
            pending = self._calls.get(tool_call_id)
            if pending is None:
                return "unknown_tool_call"
            if pending.state != "awaiting":
                return "not_awaiting"
            pending.state = "answered"
        call = pending.call
        record_result(self._ctx, ToolResult(call.id, call.name, result, bool(is_error)), CLIENT, pending.duration_ms())
        pending.done.set()
        return None

    def close(self, pending: PendingClientCall) -> bool:
        """待ちを打ち切る (タイムアウト)。まだ待っていたときだけ真。"""
        with self._lock:
            if pending.state != "awaiting":
                return False
            pending.state = "closed"
        pending.done.set()
        return True

    def close_ids(self, ids: list[str]) -> None:
        """``step_reset`` で無効になった呼び出しの待ちを打ち切る (やり直しで同じ ID が来れば作り直す)。"""
        for tool_call_id in ids:
            pending = self._calls.get(tool_call_id)
            if pending is not None:
                self.close(pending)
                pending.voided = True

    def close_all(self) -> None:
        """すべての待ちを打ち切り、待っている者を起こす (キャンセルと実行の終わり)。"""
        with self._lock:
            calls = list(self._calls.values())
            for pending in calls:
                if pending.state == "awaiting":
                    pending.state = "closed"
        for pending in calls:
            pending.done.set()


def shorten_for_model(value: Any, limit: int) -> Any:
    """モデルに見せるツール結果を ``limit`` 文字までに縮める (``agent.max_tool_result_chars``)。

    文字列でない結果は JSON の文字列にして長さを測る。長すぎれば頭と尻尾を残し、間に省いた文字数の印
    (``[... 12345 characters omitted ...]``) を入れた文字列にする。収まる結果はそのまま返す。
    """
    if limit <= 0:
        return value
    text = value if isinstance(value, str) else None
    if text is None:
        if isinstance(value, int | float | bool) or value is None:
            return value
        text = json_codec.dumps(value, ensure_ascii=False, default=str)
    if len(text) <= limit:
        return value
    head = limit // 2
    tail = limit - head
    omitted = len(text) - head - tail
    return f"{text[:head]}\n[... {omitted} characters omitted ...]\n{text[len(text) - tail :]}"


def record_result(ctx: RunContext, result: ToolResult, executor: str, duration_ms: int) -> bool:
    """ツール結果を途中経過に記録し ``tool_result`` を送る (実行が終わっていれば何もしない)。

    ``tool_result`` イベントは全文、履歴 (モデルに見せる側) は :func:`shorten_for_model` で縮めたもの。
    """
    limit = ctx.agent_config.max_tool_result_chars
    for_model = ToolResult(result.tool_call_id, result.name, shorten_for_model(result.result, limit), result.is_error)
    with ctx.events.lock:
        if ctx.events.closed:
            return False
        ctx.progress.results[result.tool_call_id] = for_model
        return ctx.events.send(
            ev.ToolResult(result.tool_call_id, result.name, result.result, result.is_error, executor, duration_ms)
        )


class ServerJob:
    """サーバー側ツールの 1 回の実行 (スレッド 1 本)。完了とタイムアウトのどちらか一方だけが結果を記録する。"""

    def __init__(self, ctx: RunContext, call: ToolCall) -> None:
        """共有状態と呼び出しを受け取る。子トークンは実行のトークンにつなぐ。"""
        self.ctx = ctx
        self.call = call
        self.token = CancelToken()
        self.done = threading.Event()
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._recorded = False
        # 結果を記録しようとして起きた例外 (実行のスレッドが run_tools の最後に上げ直す)
        self.failure: Exception | None = None
        self._link = ctx.token.add_callback(self._on_run_cancel)

    def _on_run_cancel(self) -> None:
        """実行のキャンセルをツールに伝え、待っている実行スレッドを起こす。"""
        self.token.cancel(self.ctx.token.reason or "client")
        self.done.set()

    def start(self) -> None:
        """スレッドで実行を始める (タイムアウトはここから数える)。"""
        self.started = time.monotonic()
        threading.Thread(target=self._run, name=f"tool-{self.call.name}", daemon=True).start()

    def _run(self) -> None:
        """ツールを呼び、結果 (例外ならエラーの結果) を記録する。"""
        config = self.ctx.agent_config
        registry = self.ctx.toolbox.registry
        try:
            if registry.runs_off_hub(self.call.name):
                value = run_blocking(
                    config.tool_executor,
                    config.tool_threads,
                    registry.call,
                    self.call.name,
                    self.call.arguments,
                    self.token,
                    validated=True,
                )
            else:
                # I/O だけのツール (MCP): グリーンスレッドのまま呼ぶ (取り消しは子トークンで届く)
                value = registry.call(self.call.name, self.call.arguments, self.token, validated=True)
            is_error = False
        except Exception as exc:
            # ツールの失敗はエラーの結果としてモデルへ返す (実行は続く)
            logger.info(
                "server tool %s failed: %s", self.call.name, type(exc).__name__, exc_info=not _is_tool_error(exc)
            )
            value, is_error = str(exc) or type(exc).__name__, True
        try:
            self.finish(value, is_error)
        except Exception as exc:
            # 結果のイベントを記録できなかった (ストアが書き込みを拒んだなど): 待っている実行のスレッドで上げ直し、
            # ランをその誤り (store_unavailable) で終える (ツールの時間切れまで待たせない)
            self.failure = exc
        finally:
            self.ctx.token.remove_callback(self._link)
            self.done.set()

    def finish(self, value: Any, is_error: bool) -> bool:
        """結果を 1 回だけ記録する (2 回目以降は偽)。"""
        with self._lock:
            if self._recorded:
                return False
            self._recorded = True
        duration = int((time.monotonic() - self.started) * 1000)
        return record_result(self.ctx, ToolResult(self.call.id, self.call.name, value, is_error), SERVER, duration)

    def expire(self) -> None:
        """タイムアウト: "timed out" を記録し、ツールに取り消しを伝える。"""
        if self.finish(TIMED_OUT, True):
            self.token.cancel("timeout")


def _is_tool_error(exc: Exception) -> bool:
    """ツール自身が投げる想定内の失敗 (``ToolExecutionError`` など、トレース不要) なら真。"""
    return isinstance(exc, LLMRouterError | ValueError | TypeError | ArithmeticError)


def run_tools(ctx: RunContext, message: Message) -> bool:
    """ステップのツール呼び出しをすべて片付ける。キャンセルされたら偽を返す。"""
    jobs: list[ServerJob] = []
    waits: list[PendingClientCall] = []
    for call in message.tool_calls:
        problem = ctx.toolbox.problem(call)
        executor = ctx.toolbox.executor(call.name)
        announce(ctx, call, executor, problem)
        if problem is not None:
            # 実行しない呼び出しの誤りはサーバーが答える (クライアントには実行を頼まない: docs/protocol.md 6 章)
            record_result(ctx, ToolResult(call.id, call.name, problem, True), SERVER, 0)
        elif executor == SERVER:
            jobs.append(ServerJob(ctx, call))
        else:
            waits.append(ctx.client_calls.register(call))
    for job in jobs:
        job.start()
    # AG-UI の実行 (end_on_client_tools) はクライアント側ツールを待たない: サーバー側ツールだけを終わらせる
    _await_all(ctx, [] if ctx.end_on_client_tools else waits, jobs)
    for job in jobs:
        if job.failure is not None:
            raise job.failure
    return not ctx.token.cancelled


def announce(ctx: RunContext, call: ToolCall, executor: str, problem: str | None) -> None:
    """``tool_call_ready`` を 1 回だけ送る。クライアント側の正しい呼び出しは先に待ち受けを登録する。"""
    if call.id in ctx.progress.announced:
        return
    ctx.progress.announced.add(call.id)
    if executor == CLIENT:
        # 登録を告知より先に: 速いクライアントの答えが登録前に届いて迷子にならないように
        ctx.client_calls.register(call, awaiting=problem is None)
    # 不正な呼び出しはクライアントに実行を頼まない (docs/protocol.md 6 章): executor は server、理由は error に
    ctx.events.send(
        ev.ToolCallReady(call.id, call.name, call.arguments, executor if problem is None else SERVER, problem)
    )


def _await_all(ctx: RunContext, waits: list[PendingClientCall], jobs: list[ServerJob]) -> None:
    """クライアント側とサーバー側の呼び出しを、期限の早い順に待つ。

    クライアント側の期限は告知から ``client_tool_timeout_s``、サーバー側はツールの開始から
    ``server_tool_timeout_s``。期限の早い順に待つので、どの期限も自分の時刻に守られる (先に待つものの
    期限は後のものより早い)。完了は待ちの順番に関係なく、それぞれが自分で記録する。
    """
    agent = ctx.agent_config
    deadlines: list[tuple[float, int, PendingClientCall | ServerJob]] = []
    for index, pending in enumerate(waits):
        deadlines.append((pending.started + agent.client_tool_timeout_s, index, pending))
    for index, job in enumerate(jobs):
        deadlines.append((job.started + agent.server_tool_timeout_s, len(waits) + index, job))
    deadlines.sort(key=lambda item: (item[0], item[1]))
    for deadline, _, item in deadlines:
        if not item.done.wait(max(0.0, deadline - time.monotonic())) and not ctx.token.cancelled:
            if isinstance(item, ServerJob):
                item.expire()
            elif ctx.client_calls.close(item):
                call = item.call
                record_result(ctx, ToolResult(call.id, call.name, TIMED_OUT, True), CLIENT, item.duration_ms())
        if ctx.token.cancelled:
            return
