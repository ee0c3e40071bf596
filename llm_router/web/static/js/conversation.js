/**
 * 会話ビュー: ユーザーの発言と、流れてくるアシスタントのテキスト。
 *
 * テキストは FrameBatcher で 1 フレームに 1 回、Text ノードとして足す (innerHTML は使わない)。
 * text_finished が来たら、その全文 (サーバーが確定したもの) を Markdown の小さな部分集合として組み立て直す。
 * step_reset で無効になった部分は消し、停止・エラーはその位置に印を付ける。
 * 巻き戻された実行 (run_error の rolled_back: true) の発言には印と「再送信」ボタンを付ける
 * (押すと onResend(text) が呼ばれ、同じ文を新しい実行として送る)。
 * 最後のユーザー発言には「編集」ボタンを付ける (直した文で onEdit(runId, text) を呼ぶ: rewind して送り直す)。
 * 読み込み直した会話は、サーバーの get_history の messages から描く (renderHistory)。
 */
import { bindEnterKeys, contentText, h, setText } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const FINISH_NOTES = {
  length: "最大トークン数に達したため、応答は途中で終わっています。",
  max_steps: "ステップ数の上限に達したため、ここで終わりました。",
};
const CANCEL_REASONS = {
  client: "停止しました",
  disconnect_timeout: "接続が切れたまま時間が過ぎたため、サーバーが停止しました",
  shutdown: "サーバーの停止により中断されました",
};

/** 会話の表示。 */
export class ConversationView {
  /**
   * @param {HTMLElement} container メッセージを並べる要素 (#messages)
   * @param {import("./frame_batcher.js").FrameBatcher} batcher
   */
  constructor(container, batcher) {
    this.container = container;
    this.batcher = batcher;
    this.emptyState = container.querySelector("#empty-state");
    this.runs = new Map();
    this.stick = true;
    this.mismatches = 0;
    /** @type {((text: string) => void) | null} 巻き戻された発言の「再送信」で呼ぶ関数 (main.js が設定する) */
    this.onResend = null;
    /** @type {((runId: string, text: string) => Promise<void>) | null} 最後の発言の「編集」で呼ぶ関数 (main.js が設定する) */
    this.onEdit = null;
    container.addEventListener("scroll", () => {
      this.stick = container.scrollHeight - container.scrollTop - container.clientHeight < 48;
    });
    batcher.onFlush(() => this.followBottom());
  }

  /** 末尾を見ていたなら、新しい内容に合わせてスクロールする。 */
  followBottom() {
    if (this.stick) this.container.scrollTop = this.container.scrollHeight;
  }

  /** すべて消す (新しい会話)。 */
  clear() {
    for (const el of [...this.container.children]) if (el !== this.emptyState) el.remove();
    this.runs.clear();
    this.emptyState.hidden = false;
    this.stick = true;
  }

  /** ユーザーの発言を足す (実行ごとに 1 つ。同じ実行なら 2 度足さない)。 */
  addUserMessage(runId, text) {
    const run = this.ensureRun(runId);
    if (run.user) return;
    run.userText = text;
    run.user = h("div.msg.user", { dataset: { runId } }, h("div.msg-role", { text: "あなた" }), h("div.msg-text", { text }));
    this.container.insertBefore(run.user, run.assistant);
    this.stick = true;
    this.markEditable();
    this.batcher.schedule();
  }

  /** 「編集」ボタンを、最後のユーザー発言 (巻き戻されていないもの) にだけ付ける。 */
  markEditable() {
    const runs = [...this.runs.values()].filter((r) => r.user);
    const last = runs[runs.length - 1];
    for (const run of runs) {
      const editable = run === last && !run.user.classList.contains("rolled-back");
      if (editable && !run.edit) {
        run.edit = h("button.edit-button", { type: "button", text: "編集", "aria-label": "この発言を直して、ここから答え直させる", onclick: () => this.startEdit(run) });
        run.user.appendChild(run.edit);
      } else if (!editable && run.edit) {
        run.edit.remove();
        run.edit = null;
      }
    }
  }

  /** 発言の編集: 文を入力欄にし、「送信して答え直す」で onEdit を呼ぶ。Esc か「やめる」で元に戻す。 */
  startEdit(run) {
    if (!run.user || run.editor) return;
    const runId = run.user.dataset.runId;
    const input = h("textarea.edit-input", { rows: "3", "aria-label": "発言を編集" });
    input.value = run.userText || "";
    const submit = h("button.button.primary.small.edit-submit", { type: "button", text: "送信して答え直す" });
    const cancel = h("button.button.ghost.small.edit-cancel", { type: "button", text: "やめる" });
    const error = h("div.edit-error", { role: "alert" });
    const close = () => {
      run.editor?.remove();
      run.editor = null;
      run.user.classList.remove("editing");
    };
    const send = async () => {
      const text = input.value.trim();
      if (!text || !this.onEdit) return;
      submit.disabled = true;
      try {
        await this.onEdit(runId, text);
        close();
      } catch (err) {
        submit.disabled = false;
        setText(error, `答え直せませんでした: ${err.message} (${err.code || "error"})`);
      }
    };
    bindEnterKeys(input, { onSubmit: send, onCancel: close, shiftNewline: true });
    submit.addEventListener("click", send);
    cancel.addEventListener("click", close);
    run.editor = h("div.edit-box", {}, input, h("div.edit-buttons", {}, submit, cancel), error);
    run.user.classList.add("editing");
    run.user.appendChild(run.editor);
    input.focus();
  }

  /** 実行の表示のうち、発言以外 (テキスト、ツールの札、印) を空にする (イベントから描き直す前に)。 */
  resetRun(runId) {
    const run = this.runs.get(runId);
    if (!run) return;
    for (const block of run.texts.values()) this.batcher.discard(block);
    run.body.replaceChildren();
    run.texts.clear();
    run.chips.clear();
    run.copy?.remove();
    run.copy = null;
    run.hasText = false;
    run.step = 0;
    this.setStatus(run, "");
  }

  /** 始まりを見ていない実行 (読み込み直す前から動いていたもの) を、動いているものとして示す。 */
  markRunning(runId) {
    const run = this.ensureRun(runId);
    run.started = true;
    run.assistant.hidden = false;
    run.assistant.setAttribute("aria-busy", "true");
    if (!run.status.textContent) this.setStatus(run, "実行中です…");
    this.batcher.schedule();
  }

  /** 巻き戻しで消えた実行を会話から取り除く (rewind の ack、thread_rewound のどちらからでも。2 度目は何もしない)。 */
  removeRuns(runIds) {
    for (const runId of runIds || []) this.removeRun(runId);
  }

  /**
   * サーバーの履歴 (get_history の messages) から会話を描く。
   * user → 発言、assistant → テキストとツールの札 (interrupted なら止まった印)、tool → 札の成否。
   * @param {Object[]} messages
   * @param {string|null} activeRunId まだ動いている実行 (終わりの印を付けない)
   */
  renderHistory(messages, activeRunId = null) {
    const seen = [];
    for (const m of messages || []) {
      const runId = m.run_id || `history_${m.message_id || seen.length}`;
      if (!seen.includes(runId)) seen.push(runId);
      if (m.role === "user") {
        this.addUserMessage(runId, contentText(m.content));
        continue;
      }
      const run = this.ensureRun(runId);
      run.started = true;
      run.assistant.hidden = false;
      if (m.role === "assistant") this.historyAssistant(run, m);
      else if (m.role === "tool") {
        const chip = run.chips.get(m.tool_call_id);
        if (chip) chip.dataset.state = m.is_error ? "error" : "done";
      }
    }
    for (const runId of seen) {
      const run = this.runs.get(runId);
      if (runId === activeRunId) {
        run.started = true;
        run.assistant.hidden = false;
        run.assistant.setAttribute("aria-busy", "true");
        this.setStatus(run, "実行中です…");
        continue;
      }
      if (run.assistant.hidden && !run.body.childElementCount) continue;
      this.finish(run);
      if (run.body.childElementCount === 0) run.assistant.hidden = true;
    }
    this.stick = true;
    this.batcher.schedule();
  }

  /** 履歴のアシスタントのメッセージ 1 つ (テキスト、ツール呼び出し、中断の印)。 */
  historyAssistant(run, m) {
    const text = contentText(m.content);
    if (text) {
      const block = this.textBlock(run, m.message_id || `history_${run.texts.size}`);
      block.rawText = text;
      block.replaceChildren(...renderMarkdown(text));
      block.classList.add("md");
      run.hasText = true;
    }
    for (const call of m.tool_calls || []) {
      this.on_tool_call_started({ ...call, type: "tool_call_started" }, run);
    }
    if (m.interrupted && !run.assistant.querySelector(".msg-stopped")) {
      run.body.appendChild(h("div.msg-stopped", { text: "■ 中断されました — 出力はここまでです" }));
    }
    this.setStatus(run, "", "done");
  }

  /** 実行がサーバーで始まった (run_started を受け取った) か。 */
  hasStarted(runId) {
    return Boolean(this.runs.get(runId)?.started);
  }

  /** 始まらなかった実行の表示を取り除く (送信が断られたとき)。 */
  removeRun(runId) {
    const run = this.runs.get(runId);
    if (!run) return;
    run.user?.remove();
    run.assistant.remove();
    for (const block of run.texts.values()) this.batcher.discard(block);
    this.runs.delete(runId);
    if (this.runs.size === 0) this.emptyState.hidden = false;
    this.markEditable();
  }

  /** 実行の表示を作る (無ければ)。 */
  ensureRun(runId) {
    let run = this.runs.get(runId);
    if (run) return run;
    this.emptyState.hidden = true;
    const status = h("div.msg-status", { "aria-live": "off" });
    const body = h("div.msg-body");
    const assistant = h("div.msg.assistant", { dataset: { runId }, hidden: true }, h("div.msg-role", { text: "エージェント" }), body, status);
    this.container.appendChild(assistant);
    run = { user: null, assistant, body, status, texts: new Map(), chips: new Map(), step: 0, hasText: false };
    this.runs.set(runId, run);
    return run;
  }

  /** イベントを 1 つ反映する (on_<type> があれば呼ぶ)。 */
  handle(event) {
    const fn = this[`on_${event.type}`];
    if (fn && event.run_id) fn.call(this, event, this.ensureRun(event.run_id));
  }

  /** 実行の状態表示を変える。 */
  setStatus(run, text, kind = "working") {
    run.status.dataset.kind = kind;
    setText(run.status, text);
  }

  /** run_started: アシスタントの枠を出し、考え中の表示にする。 */
  on_run_started(event, run) {
    // 実行を始めた発言はサーバーが run_started に載せる (別のタブ・読み込み直しでも見える。送ったタブでは同じ実行 id なので 2 度出ない)
    if (event.message) this.addUserMessage(event.run_id, contentText(event.message.content));
    run.started = true;
    run.assistant.hidden = false;
    run.assistant.setAttribute("aria-busy", "true");
    this.setStatus(run, "考えています…");
    this.batcher.schedule();
  }

  /** step_started: 以降のテキストはこのステップのもの (step_reset で消すため)。 */
  on_step_started(event, run) {
    run.step = event.step;
    this.setStatus(run, "考えています…");
  }

  /** reasoning_started: 思考中の表示 (中身はタイムラインに出す)。 */
  on_reasoning_started(event, run) {
    this.setStatus(run, "思考中… (内容はタイムラインの「思考」に表示されます)");
  }

  /** text_started: テキストのブロックを作る。 */
  on_text_started(event, run) {
    this.textBlock(run, event.message_id);
    this.setStatus(run, "書いています…");
  }

  /** テキストのブロックを返す (無ければ作る)。 */
  textBlock(run, messageId) {
    let block = run.texts.get(messageId);
    if (!block) {
      block = h("div.msg-text", { dataset: { messageId, step: String(run.step) } });
      run.texts.set(messageId, block);
      run.body.appendChild(block);
      run.assistant.hidden = false;
    }
    return block;
  }

  /** text_delta: 次のフレームでまとめて Text ノードを足す。 */
  on_text_delta(event, run) {
    run.hasText = true;
    this.batcher.appendText(this.textBlock(run, event.message_id), event.delta);
  }

  /** text_finished: サーバーが確定した全文で置き換える。 */
  on_text_finished(event, run) {
    const block = this.textBlock(run, event.message_id);
    this.batcher.flushElement(block);
    if (typeof event.text === "string") {
      // 流れてきた断片の和が確定テキストと違えば (取りこぼし・重複)、数えておき確定テキストを正とする
      if (block.textContent !== event.text) this.mismatches += 1;
      block.rawText = event.text;
      block.replaceChildren(...renderMarkdown(event.text));
      block.classList.add("md");
    }
    run.hasText = run.hasText || Boolean(event.text);
  }

  /** tool_call_started: ツールの呼び出しを小さな札で示す。 */
  on_tool_call_started(event, run) {
    const where = event.executor === "client" ? "ブラウザ" : "サーバー";
    const chip = h("span.chip", { dataset: { state: "running", step: String(run.step) } }, `${event.name} (${where})`);
    run.chips.set(event.tool_call_id, chip);
    let row = run.body.lastElementChild;
    if (!row || !row.classList.contains("chip-row")) {
      row = h("div.chip-row", { "aria-label": "ツール呼び出し" });
      run.body.appendChild(row);
    }
    row.appendChild(chip);
    run.assistant.hidden = false;
    this.setStatus(run, `ツール ${event.name} を呼び出しています…`);
  }

  /** tool_call_ready: ブラウザで実行するものは、その旨を出す。 */
  on_tool_call_ready(event, run) {
    if (event.executor === "client" && !event.error) this.setStatus(run, `ブラウザでツール ${event.name} を実行しています…`);
  }

  /** tool_result: 札を成功 / 失敗の色にする。 */
  on_tool_result(event, run) {
    const chip = run.chips.get(event.tool_call_id);
    if (chip) chip.dataset.state = event.is_error ? "error" : "done";
    this.setStatus(run, "結果をモデルに渡しています…");
  }

  /** step_reset: そのステップの途中までの出力を取り消す。 */
  on_step_reset(event, run) {
    for (const el of run.body.querySelectorAll(`[data-step="${CSS.escape(String(event.step))}"]`)) {
      el.classList.add("void");
    }
    for (const [id, block] of run.texts) {
      if (block.classList.contains("void")) {
        this.batcher.discard(block);
        run.texts.delete(id);
        block.remove();
      }
    }
    this.setStatus(run, "途中で失敗したため、このステップをやり直しています…", "warn");
  }

  /** retry: 再試行中であることを出す。 */
  on_retry(event, run) {
    this.setStatus(run, `再試行しています (${event.attempt} 回目)…`, "warn");
  }

  /** 実行の終わり (共通): 応答を写せるボタンを付ける。 */
  finish(run) {
    run.assistant.removeAttribute("aria-busy");
    run.assistant.hidden = false;
    if (run.texts.size > 0 && !run.copy) {
      run.copy = h("button.copy-button", { type: "button", text: "コピー", "aria-label": "この応答をコピー", onclick: () => this.copy(run) });
      run.assistant.appendChild(run.copy);
    }
    for (const chip of run.chips.values()) if (chip.dataset.state === "running") chip.dataset.state = "stopped";
  }

  /** 応答のテキスト (Markdown の元の文) をクリップボードに写す。 */
  async copy(run) {
    const text = [...run.texts.values()].map((b) => b.rawText ?? b.textContent).join("\n\n");
    try {
      await navigator.clipboard.writeText(text);
      setText(run.copy, "コピーしました");
    } catch {
      setText(run.copy, "コピーできませんでした");
    }
    setTimeout(() => setText(run.copy, "コピー"), 1500);
  }

  /** run_finished: 終わりの印 (途中で切れたなら注記)。 */
  on_run_finished(event, run) {
    this.finish(run);
    if (!run.hasText && event.text) setText(this.textBlock(run, "final"), event.text);
    const note = FINISH_NOTES[event.finish_reason];
    if (note) this.setStatus(run, note, "warn");
    else if (!run.hasText && !event.text) this.setStatus(run, "(テキストの応答はありません)", "done");
    else this.setStatus(run, "", "done");
  }

  /** run_error: エラーをその位置に出す。 */
  on_run_error(event, run) {
    this.finish(run);
    const err = event.error || {};
    run.body.appendChild(
      h("div.msg-error", { role: "alert" }, h("strong", { text: "エラー: " }), err.message || "不明なエラー", h("span.code", { text: ` (${err.code || "error"})` })),
    );
    this.setStatus(run, "", "error");
    if (event.rolled_back) this.markRolledBack(run);
  }

  /** 巻き戻された発言: モデルの履歴に残っていないことを示し、同じ文を送り直すボタンを付ける。 */
  markRolledBack(run) {
    if (!run.user || run.resend) return;
    const text = run.userText || run.user.querySelector(".msg-text")?.textContent || "";
    run.user.classList.add("rolled-back");
    this.markEditable();
    run.resend = h("button.resend-button", {
      type: "button",
      text: "再送信",
      "aria-label": "この発言をもう一度送る",
      onclick: () => {
        if (!this.onResend || !text) return;
        run.resend.disabled = true;
        setText(run.resend, "再送信しました");
        this.onResend(text);
      },
    });
    run.user.appendChild(
      h("div.rolled-back-note", {}, h("span", { text: "この発言は失敗したため会話の履歴から外されました (モデルには残っていません)。" }), run.resend),
    );
  }

  /** run_cancelled: 止まった位置に印を付ける。 */
  on_run_cancelled(event, run) {
    this.finish(run);
    const reason = CANCEL_REASONS[event.reason] || `停止しました (${event.reason})`;
    run.body.appendChild(h("div.msg-stopped", { text: `■ ${reason} — 出力はここまでです` }));
    this.setStatus(run, "", "cancelled");
  }
}
