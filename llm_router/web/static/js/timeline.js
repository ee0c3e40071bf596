/**
 * 実行タイムライン: 1 回の実行 (run) を、ステップ (モデル呼び出し) ごとに、起きた順に並べる。
 *
 * 表示するもの: モデル呼び出し、思考 (折りたためる「思考」ブロック、届くそばから表示)、テキストの長さ、
 * ツール呼び出し (引数は届くそばから)、結果 (所要時間と実行場所)、再試行、ステップのやり直し、
 * 文脈の切り詰め (context_trimmed: そのリクエストから外した古いメッセージの数)、エラー (巻き戻しの有無)、停止。
 * 実行もステップも <details> で折りたためる。新しい実行が始まると前の実行を、ステップは直近 3 つを残して自動で畳む。
 * 頻繁に来るデルタは FrameBatcher で 1 フレームに 1 回だけ DOM に書く。
 * 読み込み直した会話の過去の実行は、サーバーの履歴 (get_history) から「履歴」として畳んで並べる
 * (履歴にはイベントの細部が無いので、テキストの長さとツール呼び出しの引数・結果だけ)。
 */
import { contentText, formatDuration, formatUsage, h, pretty, setText } from "./dom.js";

const EXECUTOR = { client: "ブラウザ", server: "サーバー" };
const RUN_STATE = { running: "実行中", finished: "完了", error: "エラー", cancelled: "停止", past: "履歴" };
// タイムラインのテキストの行に出す冒頭の文字数
const PREVIEW_CHARS = 80;
const PHASES = { before_output: "出力の前", mid_stream: "出力の途中", tool: "ツールの実行中" };

/** テキストの冒頭 (改行は空白に、長ければ … で切る)。 */
function preview(text, total) {
  const head = text.slice(0, PREVIEW_CHARS).replace(/\s+/g, " ");
  return total > PREVIEW_CHARS ? `${head}…` : head;
}

/** タイムラインの表示。 */
export class TimelineView {
  /**
   * @param {HTMLElement} container #timeline
   * @param {import("./frame_batcher.js").FrameBatcher} batcher
   */
  constructor(container, batcher) {
    this.container = container;
    this.batcher = batcher;
    this.runs = new Map();
    this.count = 0;
    this.stick = true;
    container.addEventListener("scroll", () => {
      this.stick = container.scrollHeight - container.scrollTop - container.clientHeight < 48;
    });
    batcher.onFlush(() => {
      if (this.stick) container.scrollTop = container.scrollHeight;
    });
  }

  /** すべて消す (新しい会話)。 */
  clear() {
    this.container.replaceChildren();
    this.runs.clear();
    this.count = 0;
  }

  /** 始まりを見ていない実行 (読み込み直す前から動いていたもの) を、実行中として示す。 */
  markRunning(runId) {
    const run = this.ensureRun({ run_id: runId, ts: null });
    this.setRunState(run, "running", null);
  }

  /** 巻き戻しで消えた実行を取り除く (何度呼んでもよい)。 */
  removeRuns(runIds) {
    for (const runId of runIds || []) {
      const run = this.runs.get(runId);
      if (!run) continue;
      for (const r of run.reasoning.values()) this.batcher.discard(r.text);
      for (const t of run.tools.values()) this.batcher.discard(t.args);
      run.el.remove();
      this.runs.delete(runId);
    }
  }

  /**
   * 履歴 (get_history の messages) の実行を「履歴」として畳んで並べる。
   * @param {Object[]} messages
   * @param {string|null} activeRunId まだ動いている実行 (続きのイベントがここに足される)
   */
  addPastRuns(messages, activeRunId = null) {
    const byRun = new Map();
    for (const m of messages || []) {
      if (!m.run_id) continue;
      if (!byRun.has(m.run_id)) byRun.set(m.run_id, []);
      byRun.get(m.run_id).push(m);
    }
    for (const [runId, items] of byRun) {
      const ts = typeof items[0].created_at === "number" ? items[0].created_at : null;
      const run = this.ensureRun({ run_id: runId, ts });
      run.el.open = false;
      for (const m of items) {
        if (m.role === "assistant") this.pastAssistant(run, m);
        else if (m.role === "tool") this.pastToolResult(run, m);
      }
      if (runId !== activeRunId) this.closeOpen(run, "結果なし");
      this.setRunState(run, runId === activeRunId ? "running" : "past", null);
      if (items.some((m) => m.interrupted)) this.addItem(run, { ts: null }, "cancel", h("span.item-label", { text: "■ 中断" }), "この実行は途中で終わっています");
    }
  }

  /** 履歴のアシスタントのメッセージ: 1 ステップとして数え、テキストの長さとツール呼び出しを出す。 */
  pastAssistant(run, m) {
    run.stepCount += 1;
    const text = contentText(m.content);
    if (text) this.addItem(run, { ts: null }, "text", h("span.item-label", { text: "テキスト" }), h("span.text-count", { text: `${text.length.toLocaleString("ja-JP")} 文字` }), h("div.text-preview", { text: preview(text, text.length) }));
    for (const call of m.tool_calls || []) {
      this.on_tool_call_started({ ...call, ts: null }, run);
      this.on_tool_call_ready({ ...call, ts: null }, run);
    }
  }

  /** 履歴のツールの結果。 */
  pastToolResult(run, m) {
    const t = run.tools.get(m.tool_call_id);
    if (!t) return;
    this.on_tool_result({ tool_call_id: m.tool_call_id, result: m.content, is_error: Boolean(m.is_error), executor: null, ts: null }, run);
  }

  /** すべての実行とステップを開く / 畳む。 */
  setAllOpen(open) {
    for (const el of this.container.querySelectorAll("details.run, details.step")) el.open = open;
  }

  /** イベントを 1 つ反映する (on_<type> があれば呼ぶ)。 */
  handle(event) {
    const fn = this[`on_${event.type}`];
    if (!fn || !event.run_id) return;
    fn.call(this, event, this.ensureRun(event));
  }

  /** 実行の表示を作る (無ければ)。 */
  ensureRun(event) {
    let run = this.runs.get(event.run_id);
    if (run) return run;
    for (const other of this.runs.values()) other.el.open = false;
    this.count += 1;
    const badge = h("span.badge", { dataset: { state: "running" }, text: RUN_STATE.running });
    const title = h("span.run-title", { text: `実行 ${this.count}` });
    const meta = h("span.run-meta");
    const usage = h("span.run-usage");
    const body = h("div.run-body");
    const el = h("details.run", { open: true, dataset: { runId: event.run_id, state: "running" } },
      h("summary", {}, badge, title, meta, usage), body);
    this.container.appendChild(el);
    run = { el, badge, meta, usage, body, t0: event.ts, steps: new Map(), step: null, tools: new Map(), reasoning: new Map(), texts: new Map(), toolCount: 0, stepCount: 0 };
    this.runs.set(event.run_id, run);
    return run;
  }

  /** 実行の開始からの経過 (+1.23 秒) を付けた 1 行を、いまのステップ (無ければ実行) に足す。 */
  addItem(run, event, kind, ...children) {
    const at = typeof event.ts === "number" && run.t0 ? `+${formatDuration((event.ts - run.t0) * 1000) || "0 ms"}` : "";
    const item = h(`div.item.item-${kind}`, { dataset: { seq: String(event.seq ?? "") } }, h("span.item-time", { text: at }), h("div.item-main", {}, ...children));
    // 実行全体の始まりと終わりは実行の直下に、それ以外は起きたステップの中に置く
    // context_trimmed はステップの前に届くので、そのステップの枠の前 (実行の直下) に置く
    const runLevel = kind === "run" || kind === "end" || kind === "trim";
    (run.step && !runLevel ? run.step.items : run.body).appendChild(item);
    this.batcher.schedule();
    return item;
  }

  /** 実行の見出しの状態を変える。 */
  setRunState(run, state, event) {
    run.el.dataset.state = state;
    run.badge.dataset.state = state;
    setText(run.badge, RUN_STATE[state]);
    if (event?.usage) setText(run.usage, formatUsage(event.usage));
    const took = state !== "running" && typeof event?.ts === "number" && run.t0 ? formatDuration((event.ts - run.t0) * 1000) : "";
    setText(run.meta, [run.model, `${run.stepCount} ステップ`, `ツール ${run.toolCount} 回`, took].filter(Boolean).join(" · "));
  }

  /** run_started: 使うモデルと上限を見出しに出す。 */
  on_run_started(event, run) {
    run.t0 = event.ts;
    run.model = event.model;
    this.setRunState(run, "running", event);
    this.addItem(run, event, "run", `開始: ${event.model || ""} (最大 ${event.max_steps ?? "?"} ステップ)`);
  }

  /** context_trimmed: このステップのリクエストから古いターンを外した (保存された履歴はそのまま)。 */
  on_context_trimmed(event, run) {
    const tokens = typeof event.estimated_tokens === "number" ? event.estimated_tokens.toLocaleString("ja-JP") : "?";
    this.addItem(run, event, "trim", h("span.item-label", { text: "文脈の切り詰め" }),
      `ステップ ${event.step}: 古いメッセージ ${event.dropped_messages ?? "?"} 件をこのリクエストから外しました (推定 ${tokens} トークン。会話の履歴はそのままです)`);
  }

  /** step_started: モデル呼び出し 1 回分の枠。前のステップは畳む。 */
  on_step_started(event, run) {
    const earlier = [...run.steps.values()];
    const again = earlier.some((s) => s.number === event.step);
    // 長い実行でも読めるよう、直近の 3 ステップだけを開いておく
    if (earlier.length >= 3) earlier[earlier.length - 3].el.open = false;
    const status = h("span.step-status", { text: "モデルを呼び出し中…" });
    const tools = h("span.step-tools.mono");
    const usage = h("span.step-usage");
    const items = h("div.step-items");
    const label = `ステップ ${event.step}${again ? " (やり直し)" : ""}`;
    const el = h("details.step", { open: true, dataset: { step: String(event.step), state: "running" } },
      h("summary", {}, h("span.step-title", { text: label }), h("span.step-model", { text: `モデル呼び出し: ${event.model || run.model || ""}` }), status, tools, usage), items);
    run.body.appendChild(el);
    run.step = { el, items, status, tools, toolNames: [], usage, number: event.step };
    run.steps.set(event.seq, run.step);
    run.stepCount = Math.max(run.stepCount, event.step || 0);
    this.setRunState(run, "running", event);
  }

  /** reasoning_started: 折りたためる「思考」ブロック (流れている間は開いておく)。 */
  on_reasoning_started(event, run) {
    const text = h("pre.reasoning-text");
    const count = h("span.reasoning-count", { text: "思考中…" });
    const block = h("details.reasoning", { open: true }, h("summary", {}, h("span.reasoning-label", { text: "思考" }), count), text);
    this.addItem(run, event, "reasoning", block);
    run.reasoning.set(event.message_id, { block, text, count, chars: 0 });
  }

  /** reasoning_delta: 思考の文字を足す。 */
  on_reasoning_delta(event, run) {
    const r = run.reasoning.get(event.message_id) || (this.on_reasoning_started(event, run), run.reasoning.get(event.message_id));
    r.chars += event.delta.length;
    this.batcher.appendText(r.text, event.delta);
    this.batcher.task(`reasoning:${event.message_id}`, () => setText(r.count, `思考中… ${r.chars.toLocaleString("ja-JP")} 文字`));
  }

  /** reasoning_finished: 確定した全文で置き換え、ブロックを畳む。 */
  on_reasoning_finished(event, run) {
    const r = run.reasoning.get(event.message_id);
    if (!r) return;
    this.batcher.discard(r.text);
    if (typeof event.text === "string") setText(r.text, event.text);
    const chars = typeof event.text === "string" ? event.text.length : r.chars;
    r.done = true;
    this.batcher.task(`reasoning:${event.message_id}`, () => setText(r.count, `${chars.toLocaleString("ja-JP")} 文字`));
    r.block.open = false;
  }

  /** text_started: 「テキスト」の行 (中身は会話ビューに出し、ここでは長さを数える)。 */
  on_text_started(event, run) {
    const count = h("span.text-count", { text: "0 文字" });
    const preview = h("div.text-preview");
    this.addItem(run, event, "text", h("span.item-label", { text: "テキスト" }), count, preview);
    run.texts.set(event.message_id, { count, preview, head: "", chars: 0 });
    if (run.step) setText(run.step.status, "テキストを生成中…");
  }

  /** text_delta: 文字数だけ更新する (1 フレームに 1 回)。 */
  on_text_delta(event, run) {
    const t = run.texts.get(event.message_id);
    if (!t) return;
    t.chars += event.delta.length;
    if (t.head.length < PREVIEW_CHARS) t.head += event.delta;
    this.batcher.task(`text:${event.message_id}`, () => {
      setText(t.count, `${t.chars.toLocaleString("ja-JP")} 文字 (生成中)`);
      setText(t.preview, preview(t.head, t.chars));
    });
  }

  /** text_finished: 確定した文字数。 */
  on_text_finished(event, run) {
    const t = run.texts.get(event.message_id);
    if (!t) return;
    const chars = typeof event.text === "string" ? event.text.length : t.chars;
    t.done = true;
    this.batcher.task(`text:${event.message_id}`, () => {
      setText(t.count, `${chars.toLocaleString("ja-JP")} 文字`);
      if (typeof event.text === "string") setText(t.preview, preview(event.text, chars));
    });
  }

  /** tool_call_started: ツール呼び出しのカード。引数はこれから流れてくる。 */
  on_tool_call_started(event, run) {
    const where = EXECUTOR[event.executor] || event.executor || "";
    const state = h("span.tool-state", { text: "引数を生成中…" });
    const args = h("pre.mono.tool-args", { "aria-label": "引数" });
    const result = h("div.tool-result", { hidden: true });
    const card = h("div.tool-card", { dataset: { state: "streaming", toolCallId: event.tool_call_id } },
      h("div.tool-head", {}, h("span.tool-name.mono", { text: event.name }), h("span.executor", { dataset: { executor: event.executor }, text: where }), state),
      h("div.tool-section-label", { text: "引数" }), args, result);
    this.addItem(run, event, "tool", card);
    run.tools.set(event.tool_call_id, { card, state, args, result, name: event.name });
    run.toolCount += 1;
    // 畳んだステップでも何を呼んだか分かるよう、見出しにツール名を並べる
    if (run.step) {
      run.step.toolNames.push(event.name);
      setText(run.step.tools, `ツール: ${run.step.toolNames.join(", ")}`);
    }
    this.setRunState(run, "running", event);
    if (run.step) setText(run.step.status, `ツール ${event.name} を呼び出し中…`);
  }

  /** tool_call_delta: 引数の JSON の断片を足す。 */
  on_tool_call_delta(event, run) {
    const t = run.tools.get(event.tool_call_id);
    if (t) this.batcher.appendText(t.args, event.delta);
  }

  /** tool_call_ready: 引数を整形して置き換える。エラー付きなら実行されないことを示す。 */
  on_tool_call_ready(event, run) {
    const t = run.tools.get(event.tool_call_id) || (this.on_tool_call_started(event, run), run.tools.get(event.tool_call_id));
    this.batcher.discard(t.args);
    setText(t.args, event.arguments === undefined ? t.args.textContent : pretty(event.arguments));
    if (event.error) {
      t.card.dataset.state = "error";
      setText(t.state, "引数が不正なため実行しません");
      t.result.hidden = false;
      t.result.replaceChildren(h("div.tool-section-label", { text: "エラー" }), h("pre.mono.tool-output.is-error", { text: pretty(event.error) }));
      return;
    }
    t.card.dataset.state = "waiting";
    setText(t.state, event.executor === "client" ? "ブラウザで実行中…" : "サーバーで実行中…");
  }

  /** ブラウザ側ツールの結果を送れなかったとき (時間切れ後など) の注記。 */
  noteClientResult(runId, toolCallId, text) {
    const t = this.runs.get(runId)?.tools.get(toolCallId);
    if (t) t.card.appendChild(h("div.tool-note", { text }));
  }

  /** tool_result: 結果、所要時間、実行場所。 */
  on_tool_result(event, run) {
    const t = run.tools.get(event.tool_call_id) || (this.on_tool_call_started(event, run), run.tools.get(event.tool_call_id));
    t.card.dataset.state = event.is_error ? "error" : "done";
    const where = EXECUTOR[event.executor] || event.executor || "";
    const took = typeof event.duration_ms === "number" ? formatDuration(event.duration_ms) : "";
    setText(t.state, `${event.is_error ? "エラー" : "完了"}${took ? ` · ${took}` : ""}${where ? ` · ${where}で実行` : ""}`);
    t.result.hidden = false;
    t.result.replaceChildren(
      h("div.tool-section-label", { text: event.is_error ? "エラー" : "結果" }),
      h(`pre.mono.tool-output${event.is_error ? ".is-error" : ""}`, { text: pretty(event.result) }),
    );
    this.batcher.schedule();
  }

  /** step_finished: 終了理由と使用量。 */
  on_step_finished(event, run) {
    const step = run.step;
    if (!step) return;
    step.el.dataset.state = "done";
    setText(step.status, `終了: ${event.finish_reason || ""}`);
    setText(step.usage, formatUsage(event.usage));
  }

  /** retry: 再試行の行。別のモデルへの切り替え (フォールバック) なら、そう示す。 */
  on_retry(event, run) {
    const fallback = Boolean(event.model && run.model && event.model !== run.model && event.model !== run.lastRetryModel);
    run.lastRetryModel = event.model;
    const wait = typeof event.wait_ms === "number" ? `${formatDuration(event.wait_ms)} 後` : "";
    const facts = [`${event.attempt ?? "?"} 回目`, wait, fallback ? `→ ${event.model}` : event.model, event.reason].filter(Boolean).join(" · ");
    this.addItem(run, event, "retry", h("span.item-label", { text: fallback ? "フォールバック" : "再試行" }), facts);
    if (run.step) setText(run.step.status, "再試行を待っています…");
  }

  /** 途中で終わったもの (流れていたテキスト・思考、完了していないツール呼び出し) に、終わり方を添える。 */
  closeOpen(run, label) {
    for (const [id, t] of run.texts) {
      if (t.done) continue;
      t.done = true;
      this.batcher.task(`text:${id}`, () => setText(t.count, `${t.chars.toLocaleString("ja-JP")} 文字 (${label})`));
    }
    for (const [id, r] of run.reasoning) {
      if (r.done) continue;
      r.done = true;
      this.batcher.task(`reasoning:${id}`, () => setText(r.count, `${r.chars.toLocaleString("ja-JP")} 文字 (${label})`));
    }
    for (const t of run.tools.values()) {
      if (t.card.dataset.state !== "streaming" && t.card.dataset.state !== "waiting") continue;
      t.card.dataset.state = "cancelled";
      setText(t.state, label);
    }
  }

  /** step_reset: そのステップのここまでの出力を無効として打ち消す。 */
  on_step_reset(event, run) {
    this.closeOpen(run, "無効");
    if (run.step) {
      for (const item of run.step.items.children) item.classList.add("void");
      setText(run.step.status, "やり直し");
      run.step.el.dataset.state = "reset";
    }
    this.addItem(run, event, "reset", h("span.item-label", { text: "ステップのやり直し" }), `ステップ ${event.step}: ${event.reason || ""} (ここまでの出力は無効)`);
  }

  /** run_finished: 完了。 */
  on_run_finished(event, run) {
    if (run.step && run.step.el.dataset.state === "running") run.step.el.dataset.state = "done";
    this.setRunState(run, "finished", event);
    this.addItem(run, event, "end", `完了 (${event.finish_reason || "stop"}) · ${formatUsage(event.usage)}`);
  }

  /** run_error: エラーの中身 (コード、プロバイダ、段階、再試行可能か)。 */
  on_run_error(event, run) {
    const err = event.error || {};
    this.closeOpen(run, "中断");
    if (run.step) {
      run.step.el.dataset.state = "error";
      setText(run.step.status, "エラー");
    }
    this.setRunState(run, "error", event);
    const facts = [err.code, err.provider, PHASES[err.phase] || err.phase, err.retryable ? "再試行可能" : "", event.rolled_back ? "発言は履歴から外されました" : ""].filter(Boolean).join(" · ");
    this.addItem(run, event, "error", h("span.item-label", { text: "エラー" }), `${err.message || ""}`, h("div.item-sub.mono", { text: facts }));
  }

  /** run_cancelled: どこで止まったか (ステップ、途中のツール) を示す。 */
  on_run_cancelled(event, run) {
    const finished = run.step?.el.dataset.state === "done";
    const where = !run.step ? "最初のステップの前に停止" : `ステップ ${run.step.number} の${finished ? "後" : "途中"}で停止`;
    if (run.step) {
      run.step.el.dataset.state = "cancelled";
      setText(run.step.status, "停止");
      run.step.el.open = true;
    }
    this.closeOpen(run, "中断");
    this.setRunState(run, "cancelled", event);
    this.addItem(run, event, "cancel", h("span.item-label", { text: "■ 停止" }), [`${where} (理由: ${event.reason || "client"})`, formatUsage(event.usage)].filter(Boolean).join(" · "));
  }
}
