/**
 * スレッドの一覧 (左の欄): この接続の主体 (トークン) の会話を、更新の新しい順に並べる。
 *
 * - list_threads {limit, before} で読み、next_cursor があれば「さらに表示」で続きのページを足す。
 * - 各行: 題名 (無ければ「(無題)」)、更新時刻 (相対表示。正確な時刻は title 属性と <time datetime>)、
 *   実行中の印。押すとその会話を開く (onOpen)。
 * - 「名前を変更」は行の中の入力欄 (Enter で update_thread、Esc で取り消し)。
 * - 「削除」は行の中で確かめてから delete_thread (window.confirm は使わない。既定のフォーカスは「やめる」)。
 * - 中身の無いスレッド (seq が 0 で題名も無い: 開いただけの新しい会話) は出さない。
 */
import { bindEnterKeys, h, setText } from "./dom.js";

const PAGE_SIZE = 30;
// 読み直すときは、いま出ている件数まで 1 度に読む (「さらに表示」で足した分を畳まないため)。その上限
const MAX_REFRESH = 100;
// 実行の開始・終了が続いたときに、読み直しをまとめる時間
const REFRESH_DEBOUNCE_MS = 150;

/** 時刻 (秒の数値、ミリ秒の数値、ISO 8601 の文字列) を Date にする。読めなければ null。 */
export function toDate(value) {
  if (typeof value === "number" && isFinite(value)) return new Date(value > 1e12 ? value : value * 1000);
  if (typeof value === "string" && value) {
    const n = Number(value);
    if (isFinite(n)) return toDate(n);
    const t = Date.parse(value);
    return isNaN(t) ? null : new Date(t);
  }
  return null;
}

/** 「たった今」「5 分前」「3 時間前」「昨日 14:05」「2026/11/30 14:05」の形にする。 */
export function relativeTime(date, now = new Date()) {
  if (!date) return "";
  const seconds = Math.round((now - date) / 1000);
  if (seconds < 60) return "たった今";
  if (seconds < 3600) return `${Math.floor(seconds / 60)} 分前`;
  const clock = date.toLocaleTimeString("ja-JP", { hour: "2-digit", minute: "2-digit", hour12: false });
  const startOfToday = new Date(now.getFullYear(), now.getMonth(), now.getDate());
  if (date >= startOfToday) return `${Math.floor(seconds / 3600)} 時間前`;
  if (date >= new Date(startOfToday - 86400000)) return `昨日 ${clock}`;
  return `${date.toLocaleDateString("ja-JP", { year: "numeric", month: "2-digit", day: "2-digit" })} ${clock}`;
}

/** 正確な時刻 (title 属性用)。 */
function absoluteTime(date) {
  return date ? date.toLocaleString("ja-JP", { hour12: false }) : "";
}

/** スレッドの一覧の表示。 */
export class ThreadListView {
  /**
   * @param {Object} opts
   * @param {HTMLElement} opts.list 行を並べる <ul>
   * @param {HTMLButtonElement} opts.more 「さらに表示」
   * @param {HTMLElement} opts.status 状態・エラーの表示
   * @param {(event: string, payload: Object) => Promise<Object>} opts.request ack 付きでイベントを送る (ok でなければ投げる)
   * @param {(summary: Object) => void} opts.onOpen 行が押された (その会話を開く)
   * @param {(threadId: string) => void} opts.onDeleted スレッドを削除した
   * @param {() => void} [opts.onRefreshed] 最初のページを読み直した
   * @param {(runId: string) => boolean} [opts.knownEnded] 終わったと分かっている実行か (遅れて届いた一覧の「実行中」を出さない)
   */
  constructor({ list, more, status, request, onOpen, onDeleted, onRefreshed, knownEnded }) {
    this.list = list;
    this.more = more;
    this.status = status;
    this.request = request;
    this.onOpen = onOpen;
    this.onDeleted = onDeleted;
    this.onRefreshed = onRefreshed || (() => {});
    this.knownEnded = knownEnded || (() => false);
    /** @type {Map<string, Object>} thread_id → list_threads の 1 件 */
    this.threads = new Map();
    this.order = [];
    this.nextCursor = null;
    this.currentId = null;
    this.loading = null;
    this.timer = null;
    this.editing = null; // 名前を変更中、または削除を確認中の thread_id (その間は読み直しで行を作り直さない)
    this.loads = 0;
    more.addEventListener("click", () => this.loadMore());
  }

  /** いま開いている会話 (一覧で印を付ける)。 */
  setCurrent(threadId) {
    this.currentId = threadId;
    for (const li of this.list.children) {
      if (li.dataset.threadId === threadId) li.setAttribute("aria-current", "true");
      else li.removeAttribute("aria-current");
    }
  }

  /** 開いている会話の実行の始まり・終わりを、読み直しを待たずに行へ映す (「実行中」の印)。 */
  setActive(threadId, runId) {
    const t = this.threads.get(threadId);
    if (!t || (t.active_run_id || null) === (runId || null)) return;
    this.threads.set(threadId, { ...t, active_run_id: runId || null });
    if (this.editing !== threadId) this.render();
  }

  /** 少し後に最初のページから読み直す (続けて呼ばれたら 1 回にまとめる)。 */
  refreshSoon() {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.refresh().catch(() => {}), REFRESH_DEBOUNCE_MS);
  }

  /** 最初のページから読み直す (「さらに表示」で足した分も、上限までは同じ件数を読む)。 */
  async refresh() {
    clearTimeout(this.timer);
    const ack = await this.load({ limit: Math.min(MAX_REFRESH, Math.max(PAGE_SIZE, this.order.length)) });
    if (!ack) return;
    this.threads.clear();
    this.order = [];
    this.add(ack.threads || []);
    this.nextCursor = ack.next_cursor || null;
    this.render();
    this.onRefreshed();
  }

  /** 続きのページを足す。 */
  async loadMore() {
    if (!this.nextCursor) return;
    const ack = await this.load({ limit: PAGE_SIZE, before: this.nextCursor });
    if (!ack) return;
    this.add(ack.threads || []);
    this.nextCursor = ack.next_cursor || null;
    this.render();
  }

  /** list_threads を 1 回送る (失敗は状態の欄に出して null)。 */
  async load(payload) {
    try {
      const ack = await this.request("list_threads", payload);
      this.loads += 1;
      setText(this.status, "");
      return ack;
    } catch (err) {
      setText(this.status, `会話の一覧を読めませんでした: ${err.message} (${err.code})`);
      return null;
    }
  }

  /** 受け取った行を覚える (同じ id はあとのもので置き換える)。 */
  add(threads) {
    for (const t of threads) {
      if (!t || typeof t.thread_id !== "string") continue;
      if (!this.threads.has(t.thread_id)) this.order.push(t.thread_id);
      this.threads.set(t.thread_id, t);
    }
  }

  /** 覚えている 1 件 (無ければ null)。 */
  get(threadId) {
    return this.threads.get(threadId) || null;
  }

  /** 一覧に出すか (中身の無い会話 = 開いただけでまだ何も送っていないものは出さない)。 */
  visible(t) {
    return Boolean(t.title) || (t.last_seq || 0) > 0;
  }

  /** 行を作り直す (名前の変更・削除の確認の最中の行はそのまま残す)。 */
  render() {
    const keep = this.editing ? [...this.list.children].find((li) => li.dataset.threadId === this.editing) : null;
    const rows = this.order.map((id) => this.threads.get(id)).filter((t) => this.visible(t));
    this.list.replaceChildren(...rows.map((t) => (keep && t.thread_id === this.editing ? keep : this.row(t))));
    if (keep && !keep.isConnected) this.editing = null;
    this.more.hidden = !this.nextCursor;
    if (rows.length === 0) this.list.appendChild(h("li.thread-empty", { text: "まだ会話はありません" }));
    this.setCurrent(this.currentId);
  }

  /** 1 件の行。 */
  row(t) {
    const date = toDate(t.updated_at) || toDate(t.created_at);
    const title = t.title || "(無題)";
    const time = h("time.thread-time", { datetime: date ? date.toISOString() : "", title: absoluteTime(date), text: relativeTime(date) });
    const open = h("button.thread-open", { type: "button", title, onclick: () => this.onOpen(t) },
      h("span.thread-title", { text: title }), h("span.thread-sub", {}, time, t.active_run_id && !this.knownEnded(t.active_run_id) ? h("span.thread-active", { text: "実行中" }) : null));
    const rename = h("button.thread-rename.icon-button", { type: "button", "aria-label": `「${title}」の名前を変更`, title: "名前を変更", text: "✎", onclick: () => this.startRename(li, t) });
    const remove = h("button.thread-delete.icon-button", { type: "button", "aria-label": `「${title}」を削除`, title: "削除", text: "✕", onclick: () => this.askDelete(li, t) });
    const li = h("li.thread-item", { dataset: { threadId: t.thread_id } }, open, h("span.thread-actions", {}, rename, remove));
    return li;
  }

  /** 名前の変更: 行を入力欄にする。Enter で保存、Esc で取り消し。 */
  startRename(li, t) {
    this.editing = t.thread_id;
    const input = h("input.thread-rename-input", { type: "text", value: t.title || "", maxlength: "200", "aria-label": "会話の新しい名前" });
    const save = h("button.button.primary.small.thread-rename-save", { type: "button", text: "保存" });
    const cancel = h("button.button.ghost.small.thread-rename-cancel", { type: "button", text: "やめる" });
    const done = () => {
      this.editing = null;
      this.render();
    };
    const submit = async () => {
      const title = input.value.trim();
      if (!title) {
        input.setCustomValidity("名前を入れてください");
        input.reportValidity();
        return;
      }
      save.disabled = true;
      try {
        await this.request("update_thread", { thread_id: t.thread_id, title });
        this.threads.set(t.thread_id, { ...t, title });
        done();
        this.refreshSoon();
      } catch (err) {
        save.disabled = false;
        setText(this.status, `名前を変更できませんでした: ${err.message} (${err.code})`);
      }
    };
    input.addEventListener("input", () => input.setCustomValidity(""));
    bindEnterKeys(input, { onSubmit: submit, onCancel: done });
    save.addEventListener("click", submit);
    cancel.addEventListener("click", done);
    li.replaceChildren(h("form.thread-rename-form", { onsubmit: (e) => e.preventDefault() }, input, h("span.thread-edit-buttons", {}, save, cancel)));
    input.focus();
    input.select();
  }

  /** 削除: 行の中で確かめる (既定のフォーカスは「やめる」)。 */
  askDelete(li, t) {
    this.editing = t.thread_id;
    const title = t.title || "(無題)";
    const yes = h("button.button.danger.small.thread-delete-confirm", { type: "button", text: "削除する" });
    const no = h("button.button.ghost.small.thread-delete-cancel", { type: "button", text: "やめる" });
    const done = () => {
      this.editing = null;
      this.render();
    };
    no.addEventListener("click", done);
    li.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        done();
      }
    });
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try {
        await this.request("delete_thread", { thread_id: t.thread_id });
        this.threads.delete(t.thread_id);
        this.order = this.order.filter((id) => id !== t.thread_id);
        done();
        this.onDeleted(t.thread_id);
        this.refreshSoon();
      } catch (err) {
        yes.disabled = false;
        const why = err.code === "run_in_progress" ? "実行中の会話は削除できません。止めてからもう一度どうぞ" : err.message;
        setText(this.status, `削除できませんでした: ${why} (${err.code})`);
      }
    });
    li.replaceChildren(
      h("div.thread-delete-ask", { role: "group", "aria-label": "削除の確認" },
        h("span.thread-delete-text", { text: `「${title}」を削除しますか? 履歴はサーバーからも消え、元に戻せません。` }),
        h("span.thread-edit-buttons", {}, yes, no)),
    );
    no.focus();
  }
}
