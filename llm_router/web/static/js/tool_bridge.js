/**
 * サーバーのイベントとブラウザ側ツールの実行をつなぐ。
 *
 * - tool_call_ready (executor: "client") が来たら実行し、結果を tool_result で送る。error 付きは実行しない。
 * - 再接続・再読み込みの直後は、start の ack が来るまで実行を待つ。送り直されてくる古い呼び出しの後に
 *   その結果 (時間切れなど) も続いて届くことがあり、その場合は実行せずに済ませるため。
 * - 結果を送った呼び出しは、サーバーの tool_result イベントを見るまで覚えておき、接続が切れて届かなかった
 *   おそれがあれば、再接続後にもう一度送る (すでに受け取られていれば not_awaiting で断られるだけ)。
 * - 実行が終わった・止められた・結果が届いた呼び出しは、確認ダイアログごと取り下げる。
 */

import { RUN_END_EVENTS } from "./connection.js";

/** ブラウザ側ツールの受け持ち。 */
export class ClientToolBridge {
  /**
   * @param {import("./connection.js").AgentConnection} connection
   * @param {import("./client_tools.js").ClientToolRunner} runner
   * @param {import("./timeline.js").TimelineView} timeline
   */
  constructor(connection, runner, timeline) {
    this.connection = connection;
    this.runner = runner;
    this.timeline = timeline;
    /** @type {Map<string, {event: Object, state: string, outcome?: Object}>} */
    this.calls = new Map();
    this.isSynced = false;
    this.executed = 0;
  }

  /** イベントを見る。 */
  handle(event) {
    if (event.type === "tool_call_ready" && event.executor === "client") {
      if (event.error) return; // 引数が不正: 実行しない (サーバーがエラーの結果をモデルに返す)
      this.calls.set(event.tool_call_id, { event, state: "queued" });
      if (this.isSynced) this.run(event.tool_call_id);
    } else if (event.type === "tool_result") {
      this.settle(event.tool_call_id);
    } else if (RUN_END_EVENTS.has(event.type)) {
      for (const [id, call] of this.calls) if (call.event.run_id === event.run_id) this.settle(id);
    }
  }

  /** 呼び出しを片付ける (結果が届いた、実行が終わった)。 */
  settle(toolCallId) {
    if (!this.calls.has(toolCallId)) return;
    this.calls.delete(toolCallId);
    this.runner.abort(toolCallId);
  }

  /** start の ack が来た: 待たせていた呼び出しを実行し、届いたか分からない結果を送り直す。 */
  synced(resumed) {
    this.isSynced = true;
    for (const [id, call] of this.calls) {
      if (call.state === "queued") this.run(id);
      else if (call.state === "answered" && resumed) this.deliver(id);
    }
  }

  /** 接続が切れた: 次の start の ack まで新しい実行を待たせる。 */
  unsynced() {
    this.isSynced = false;
  }

  /** 巻き戻しで消えた実行の呼び出しを忘れる (動いていれば取り下げる)。 */
  forgetRuns(runIds) {
    for (const [id, call] of this.calls) if (runIds.includes(call.event.run_id)) this.settle(id);
  }

  /** すべて忘れる (新しい会話)。 */
  reset() {
    this.calls.clear();
  }

  /** ツールを実行して結果を送る。 */
  async run(toolCallId) {
    const call = this.calls.get(toolCallId);
    if (!call || call.state !== "queued") return;
    call.state = "running";
    const outcome = await this.runner.execute(call.event);
    if (outcome.aborted || this.calls.get(toolCallId) !== call) return;
    this.executed += 1;
    call.state = "answered";
    call.outcome = outcome;
    this.deliver(toolCallId);
  }

  /** 結果を tool_result で送る。 */
  async deliver(toolCallId) {
    const call = this.calls.get(toolCallId);
    if (!call?.outcome) return;
    const { event, outcome } = call;
    try {
      await this.connection.sendToolResult(event.run_id, toolCallId, outcome.result, outcome.isError);
    } catch (err) {
      if (err.code === "not_awaiting" || err.code === "unknown_tool_call") {
        this.calls.delete(toolCallId);
        this.timeline.noteClientResult(event.run_id, toolCallId, "この結果はサーバーに受け付けられませんでした (時間切れか、実行がすでに終わっています)。");
      }
      // それ以外 (切断による時間切れなど) は、再接続後の synced() で送り直す
    }
  }
}
