/**
 * エージェントコンソールの入口: 画面の部品をつなぎ、サーバーのイベントを各ビューに配る。
 *
 * 流れ: /api/info を読む → /agent に接続 → (過去の会話なら get_history で描く) → start (ブラウザ側ツールを登録)
 * → user_message で実行 → イベントを会話ビュー・タイムライン・ブラウザ側ツールに配る。Esc / 停止ボタンで cancel。
 * 左の一覧 (list_threads) から過去の会話を開き、名前の変更・削除ができる。最後の発言は編集して答え直せる (rewind)。
 */
import { AckError, AgentConnection, RUN_END_EVENTS } from "./connection.js";
import { ClientToolRunner, clientToolDefinitions, trackSelection } from "./client_tools.js";
import { ConfirmDialog } from "./confirm_dialog.js";
import { ConversationView } from "./conversation.js";
import { bindEnterKeys, h, newId, setText } from "./dom.js";
import { FrameBatcher } from "./frame_batcher.js";
import { ModelPicker } from "./model_picker.js";
import { SessionStore } from "./session_store.js";
import { ThreadListView } from "./threads.js";
import { TimelineView } from "./timeline.js";
import { ClientToolBridge } from "./tool_bridge.js";

// 入力例 (デモモデルでも、それぞれテキスト・サーバー側ツール・ブラウザ側ツールの流れを見せる)
const SUGGESTIONS = [
  "こんにちは。何ができますか?",
  "12 * (3 + 4) を計算して",
  "今何時?",
  "私のブラウザのロケールを教えて",
  "確認してから進めて",
];

/** コンソール全体。 */
class ConsoleApp {
  /** 画面の要素を集め、部品を作る。 */
  constructor() {
    this.$ = (id) => document.getElementById(id);
    this.store = new SessionStore(window.sessionStorage);
    this.batcher = new FrameBatcher();
    this.conversation = new ConversationView(this.$("messages"), this.batcher);
    this.conversation.onResend = (text) => this.resend(text);
    this.conversation.onEdit = (runId, text) => this.editAndRegenerate(runId, text);
    this.timeline = new TimelineView(this.$("timeline"), this.batcher);
    this.dialog = new ConfirmDialog(this.$("confirm-dialog"));
    this.runner = new ClientToolRunner({ dialog: this.dialog });
    this.activeRunId = null;
    this.ownRuns = new Set(); // このタブが送って始めた実行 (会話を離れるときに止めるのはこれだけ)
    this.endedRuns = new Set(); // 終わりのイベントを見た実行
    this.connected = false;
    this.info = null;
    this.connection = new AgentConnection({
      getToken: () => this.store.token(),
      onEvent: (event) => this.dispatch(event),
      onStatus: (state, text) => this.showStatus(state, text),
      onStarted: (ack, opts) => this.started(ack, opts),
      onStartFailed: (err) => this.startFailed(err),
      onHistory: (ack) => this.showHistory(ack),
    });
    this.threads = new ThreadListView({
      list: this.$("thread-list"),
      more: this.$("thread-more"),
      status: this.$("thread-status"),
      request: (event, payload) => this.connection.request(event, payload),
      onOpen: (summary) => this.openPast(summary.thread_id),
      onDeleted: (threadId) => this.threadDeleted(threadId),
      onRefreshed: () => this.reconcileActiveRun(),
      knownEnded: (runId) => this.endedRuns.has(runId),
    });
    this.tools = new ClientToolBridge(this.connection, this.runner, this.timeline);
    this.models = new ModelPicker(this.$("model-select"), this.store);
    // テストと開発者ツールから様子を見るための窓口 (状態を変えるものは置かない)
    window.llmRouterConsole = this;
  }

  /** 起動: 公開情報を読み、画面を整え、接続する。 */
  async init() {
    this.bindComposer();
    this.bindControls();
    trackSelection((text) => setText(this.$("selection-hint"), text ? `選択中のテキスト: ${text.length.toLocaleString("ja-JP")} 文字` : ""));
    this.renderSuggestions();
    await this.loadInfo();
    this.models.render(this.info);
    this.renderToolsList();
    this.$("reasoning-select").value = this.store.get("reasoning") || "off";
    this.loadSettings();
    if (this.info.auth_required && !this.store.token()) this.showAuth("");
    this.openThread(this.store.get("thread_id"));
    this.connection.connect();
  }

  /**
   * /api/info を読む。トークンがあれば接続と同じトークンを Authorization: Bearer で送る (URL には載せない)。
   * 401 なら認証が必要という印だけを持ち (locked)、接続が認められた後で読み直す。
   */
  async loadInfo() {
    const headers = { Accept: "application/json" };
    const token = this.store.token();
    if (token) headers.Authorization = `Bearer ${token}`;
    const empty = { auth_required: false, models: [], server_tools: [], default_model: "", demo: false };
    try {
      const response = await fetch("/api/info", { headers });
      if (response.status === 401) {
        this.info = { ...empty, auth_required: true, locked: true };
        return;
      }
      this.info = await response.json();
    } catch {
      this.info = empty;
      this.showWarnings(["サーバーの情報 (/api/info) を読めませんでした。"]);
    }
  }

  /** 認証が通った後に、トークンつきで /api/info を読み直して画面に反映する。 */
  async refreshInfo() {
    await this.loadInfo();
    if (this.info.locked) return;
    this.models.render(this.info);
    this.renderToolsList();
  }

  /**
   * スレッドを使い始める (id が無ければ新しく作る)。サーバーにあるはずのスレッド (読み込み直し、一覧から開いた) は、
   * get_history で履歴を描いてから、その続きのイベントを受ける。そのとき start で送るのはブラウザ側ツールだけ
   * (スレッドのモデル・システムプロンプト・設定はサーバーにあるものをそのまま使う)。
   */
  openThread(threadId) {
    const known = Boolean(threadId);
    const id = threadId || newId("thread");
    this.store.set("thread_id", id);
    this.attached = known;
    this.connection.useThread(id, { known });
    this.connection.startParams = known ? { tools: clientToolDefinitions() } : this.startParams();
    this.threads.setCurrent(id);
    document.body.dataset.threadReady = "false";
    document.body.dataset.historyLoaded = "false";
  }

  /**
   * start で送る内容 (モデル、ブラウザ側ツール、設定)。
   * システムプロンプトは入っているときだけ送る (空のまま送るとスレッドのものを消してしまう)。
   * 詳細設定の「適用」(explicitSystem) では空でも送り、消せるようにする。
   */
  startParams({ explicitSystem = false } = {}) {
    const settings = { reasoning: this.$("reasoning-select").value };
    const temperature = this.store.get("temperature");
    const maxSteps = this.store.get("max_steps");
    if (temperature) settings.temperature = Number(temperature);
    if (maxSteps) settings.max_steps = Number(maxSteps);
    const params = { tools: clientToolDefinitions(), settings };
    const system = this.store.get("system") || "";
    if (system || explicitSystem) params.system = system;
    // 「自動」でもサーバーの既定を明示する (start で model を省くと、スレッドの前のモデルが引き継がれるため)
    const model = this.models.value() || this.info?.default_model;
    if (model) params.model = model;
    return params;
  }

  /** 設定 (モデル・思考) を変えたら、同じスレッドに入り直して以降の実行に効かせる。 */
  restart() {
    this.attached = false;
    this.connection.startParams = this.startParams();
    this.connection.start({ resumed: true }).catch(() => {});
  }

  /** start の ack: 実際のモデル、デモかどうか、警告を画面に出す。 */
  started(ack, { resumed, lost }) {
    this.$("auth-panel").hidden = true;
    if (this.info?.locked) this.refreshInfo();
    if (lost) this.threadLost();
    const model = ack.model || "";
    const demo = this.models.isDemo(model);
    this.$("demo-banner").hidden = !demo;
    this.$("demo-reason-nokey").hidden = !this.info?.demo;
    this.$("demo-reason-chosen").hidden = Boolean(this.info?.demo);
    setText(this.$("demo-model-name"), model);
    if (this.attached) this.models.showThreadModel(model);
    else if (!this.models.value()) this.models.showActive(model);
    if (!lost) this.showWarnings(ack.warnings || []);
    if (Array.isArray(ack.tools)) this.renderToolsList(ack.tools);
    this.tools.synced(resumed);
    this.updateControls();
    document.body.dataset.threadReady = "true";
    // 一覧はここで読み直す (start の後なので、一覧が「実行中」と言う実行の終わりは、もう届くか再開で送られてくる)
    this.threads.refreshSoon();
  }

  /**
   * 過去の会話の履歴 (get_history の ack) を描く。ユーザーの発言もサーバーの履歴から出す (このタブは何も覚えていない)。
   * まだ動いている実行は、続きのイベントか、start の後に読む一覧の active_run_id で分かる。
   */
  showHistory(ack) {
    this.conversation.clear();
    this.timeline.clear();
    const messages = Array.isArray(ack.messages) ? ack.messages : [];
    this.conversation.renderHistory(messages);
    this.timeline.addPastRuns(messages);
    document.body.dataset.historyLoaded = "true";
    this.updateControls();
  }

  /** 一覧を読み直した: 開いている会話で、この画面がまだ知らない実行が動いていれば、実行中として示す。 */
  reconcileActiveRun() {
    const summary = this.threads.get(this.connection.threadId);
    const runId = summary?.active_run_id;
    if (runId && !this.activeRunId && !this.endedRuns.has(runId)) this.markRunning(runId);
  }

  /**
   * 始まりを見ていない実行 (履歴を読む前から動いていたもの) を実行中として示し、その実行のイベントを始まりから
   * 送り直してもらう (いま動いているステップと、答えを待つブラウザ側ツールは、履歴には無いため)。
   * 送り直しが始まれば、その実行の表示 (発言以外) は一度空にして、イベントから描き直す。
   * @returns {boolean} 送り直しを頼んだか
   */
  markRunning(runId) {
    this.activeRunId = runId;
    const replaying = this.connection.catchUp(runId);
    if (replaying) {
      this.conversation.resetRun(runId);
      this.timeline.removeRuns([runId]);
      this.tools.forgetRuns([runId]);
    }
    this.conversation.markRunning(runId);
    this.timeline.markRunning(runId);
    this.updateControls();
    return replaying;
  }

  /** サーバーがスレッドを失っていた (再起動など): 実行中だったものは終わったと示し、そのことを知らせる。 */
  threadLost() {
    if (this.activeRunId) {
      const ts = Date.now() / 1000;
      this.dispatch({ type: "run_cancelled", run_id: this.activeRunId, thread_id: this.connection.threadId, seq: null, ts, reason: "shutdown", usage: null });
    }
    this.showWarnings(["サーバーが再起動したため、この会話のこれまでの履歴はサーバーに残っていません。続けて送ると、新しい履歴として扱われます。"]);
  }

  /** start が拒否された: 他人のスレッドなら新しい会話に切り替える。 */
  startFailed(err) {
    if (err.code === "forbidden" || err.code === "unknown_thread") {
      this.newConversation();
      return;
    }
    this.showWarnings([`スレッドに接続できません: ${err.message} (${err.code})`]);
  }

  /** 接続状態の表示。 */
  showStatus(state, text) {
    const el = this.$("conn-status");
    el.dataset.state = state;
    document.body.dataset.connection = state;
    setText(el.querySelector(".conn-text"), text);
    this.connected = state === "connected";
    if (state !== "connected") this.tools.unsynced();
    if (state === "unauthorized") this.showAuth(this.store.token() ? "トークンが違います。入力し直してください。" : "");
    this.updateControls();
  }

  /** 認証の欄を出す。 */
  showAuth(error) {
    this.$("auth-panel").hidden = false;
    setText(this.$("auth-error"), error);
    this.$("auth-token").focus();
  }

  /** 警告の帯 (start の warnings など)。 */
  showWarnings(warnings) {
    const banner = this.$("warnings-banner");
    const close = h("button.button.ghost.small", { type: "button", "aria-label": "注意を閉じる", text: "閉じる", onclick: () => { banner.hidden = true; } });
    const list = h("ul.warning-list", {}, ...warnings.map((w) => h("li", { text: w })));
    const head = h("div.warning-head", {}, h("strong", { text: `⚠ 注意 (${warnings.length} 件)` }), close);
    banner.replaceChildren(head, list);
    banner.hidden = warnings.length === 0;
  }

  /** サーバーのイベント (seq 順、重複なし) を各部品に配る。 */
  dispatch(event) {
    if (event.type === "thread_rewound") {
      // 別のタブの「編集」、または再開で送り直された巻き戻し: 消えた実行を画面からも外す
      this.applyRewind(event.removed_runs);
      this.threads.refreshSoon();
      return;
    }
    if (event.type === "run_started") this.activeRunId = event.run_id;
    else if (event.run_id && !RUN_END_EVENTS.has(event.type) && !this.endedRuns.has(event.run_id) && this.activeRunId !== event.run_id) {
      // 始まりを見ていない実行の続き (読み込み直す前から動いていた)。このイベントも送り直しの中でもう一度来る
      if (this.markRunning(event.run_id)) return;
    }
    this.conversation.handle(event);
    this.timeline.handle(event);
    this.tools.handle(event);
    if (RUN_END_EVENTS.has(event.type)) {
      this.endedRuns.add(event.run_id);
      if (event.run_id === this.activeRunId) this.activeRunId = null;
    }
    if (event.type === "run_started" || RUN_END_EVENTS.has(event.type)) {
      this.updateControls();
      this.threads.setActive(this.connection.threadId, this.activeRunId);
      this.threads.refreshSoon();
    }
  }

  /** 巻き戻された実行を会話・タイムライン・ブラウザ側ツールから外す (何度呼んでもよい)。 */
  applyRewind(runIds) {
    const removed = Array.isArray(runIds) ? runIds : [];
    this.conversation.removeRuns(removed);
    this.timeline.removeRuns(removed);
    this.tools.forgetRuns(removed);
    if (removed.includes(this.activeRunId)) this.activeRunId = null;
    this.updateControls();
  }

  /**
   * 最後の発言の「編集」: rewind でその実行から後を履歴から外し、直した文を新しい実行として送る。
   * 失敗したら AckError を投げる (編集欄にその理由が出る)。
   */
  async editAndRegenerate(runId, text) {
    if (this.activeRunId) throw new AckError({ code: "run_in_progress", message: "実行中は編集できません" });
    if (!this.connected) throw new AckError({ code: "disconnected", message: "接続されていません" });
    await this.connection.ready();
    const ack = await this.connection.rewind(runId);
    this.applyRewind(Array.isArray(ack.removed_runs) ? ack.removed_runs : [runId]);
    await this.send(text);
  }

  /** 入力欄: Enter で送信、Shift+Enter で改行 (日本語入力の変換中の Enter は送信しない)。 */
  bindComposer() {
    const prompt = this.$("prompt");
    bindEnterKeys(prompt, { onSubmit: () => this.send(), shiftNewline: true });
    this.$("composer").addEventListener("submit", (e) => {
      e.preventDefault();
      this.send();
    });
    this.$("stop").addEventListener("click", () => this.stop());
    this.$("stop-after-step").addEventListener("click", () => this.stop("after_step"));
    // Esc はどこにいても停止 (確認ダイアログが開いている間は、ダイアログの「いいえ」になる)
    document.addEventListener("keydown", (e) => {
      if (e.key === "Escape" && !this.dialog.isOpen() && this.activeRunId) {
        e.preventDefault();
        this.stop();
      }
    });
  }

  /** ヘッダの操作 (モデル、思考、新しい会話、認証、折りたたみ)。 */
  bindControls() {
    this.$("model-select").addEventListener("change", () => {
      this.models.remember();
      this.restart();
    });
    this.$("reasoning-select").addEventListener("change", (e) => {
      this.store.set("reasoning", e.target.value);
      this.restart();
    });
    this.$("new-thread").addEventListener("click", () => this.newConversation());
    // 別のタブで話した・名前を変えた会話も、このタブに戻ってきたら一覧に出す
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible" && this.connected) this.threads.refreshSoon();
    });
    this.$("settings-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.applySettings();
    });
    this.$("auth-form").addEventListener("submit", (e) => {
      e.preventDefault();
      this.store.setToken(this.$("auth-token").value.trim());
      setText(this.$("auth-error"), "");
      this.connection.reconnect();
    });
    this.$("expand-all").addEventListener("click", () => this.timeline.setAllOpen(true));
    this.$("collapse-all").addEventListener("click", () => this.timeline.setAllOpen(false));
  }

  /** 詳細設定の欄に、保存してある値を入れる。 */
  loadSettings() {
    this.$("system-prompt").value = this.store.get("system") || "";
    this.$("temperature").value = this.store.get("temperature") || "";
    this.$("max-steps").value = this.store.get("max_steps") || "";
  }

  /** 詳細設定を保存し、同じスレッドに入り直して次の実行から効かせる。 */
  async applySettings() {
    const keys = { system: "system-prompt", temperature: "temperature", max_steps: "max-steps" };
    const previous = Object.fromEntries(Object.keys(keys).map((k) => [k, this.store.get(k)]));
    for (const [key, id] of Object.entries(keys)) this.store.set(key, this.$(id).value.trim());
    this.attached = false;
    this.connection.startParams = this.startParams({ explicitSystem: true });
    const status = this.$("settings-status");
    try {
      await this.connection.start({ resumed: true });
      setText(status, "適用しました (次の実行から使われます)");
    } catch (err) {
      // 断られた値を残すと再接続のたびに start が失敗するので、前の値に戻す
      for (const [key, value] of Object.entries(previous)) this.store.set(key, value);
      this.connection.startParams = this.startParams();
      setText(status, `適用できませんでした: ${err.message}`);
    }
  }

  /** メッセージを送る (実行中は送らない)。text を渡せばそれを、無ければ入力欄の文を送る。 */
  async send(textArg) {
    const prompt = this.$("prompt");
    const fromPrompt = textArg === undefined;
    const text = (fromPrompt ? prompt.value : textArg).trim();
    if (!text || this.activeRunId || !this.connected) return;
    const runId = newId("run");
    this.activeRunId = runId;
    this.ownRuns.add(runId);
    this.conversation.addUserMessage(runId, text);
    if (fromPrompt) prompt.value = "";
    this.updateControls();
    try {
      await this.connection.ready();
      await this.connection.sendMessage(text, runId);
    } catch (err) {
      if (this.activeRunId === runId) this.activeRunId = null;
      // 実行は始まらなかった: 発言の吹き出しを取り下げ、文を入力欄に戻す
      if (!this.conversation.hasStarted(runId)) this.conversation.removeRun(runId);
      this.showWarnings([`送信できませんでした: ${err.message} (${err.code})`]);
      if (!prompt.value) prompt.value = text;
      this.updateControls();
    }
  }

  /** 巻き戻された発言の「再送信」: 同じ文を新しい実行として送る (実行中なら入力欄に戻すだけ)。 */
  resend(text) {
    const prompt = this.$("prompt");
    prompt.value = text;
    if (this.activeRunId || !this.connected) return;
    this.send();
  }

  /**
   * 実行中の run を止める。
   * @param {"now"|"after_step"} mode now: すぐに (生成中の応答も切る) / after_step: いまのステップとそのツールの後で
   */
  async stop(mode = "now") {
    const runId = this.activeRunId;
    if (!runId) return;
    const afterStep = this.$("stop-after-step");
    afterStep.disabled = true;
    if (mode === "now") {
      this.$("stop").disabled = true;
      setText(this.$("stop").firstChild, "停止中… ");
    } else {
      setText(afterStep, "このステップの後で停止します…");
    }
    try {
      await this.connection.cancel(runId, mode);
    } catch (err) {
      this.showWarnings([`停止できませんでした: ${err.message} (${err.code})`]);
      this.updateControls();
    }
  }

  /** いまの会話を離れる: このタブが始めた実行は止め (そのブラウザ側ツールに答える人がいなくなるので)、画面を空にする。 */
  leaveThread() {
    if (this.activeRunId && this.ownRuns.has(this.activeRunId)) this.connection.cancel(this.activeRunId, "now").catch(() => {});
    this.runner.abortAll();
    this.tools.reset();
    this.conversation.clear();
    this.timeline.clear();
    this.activeRunId = null;
    this.endedRuns.clear();
    this.$("warnings-banner").hidden = true;
  }

  /** 新しい会話 (新しいスレッド)。 */
  newConversation() {
    this.leaveThread();
    this.store.set("thread_id", "");
    this.openThread(null);
    this.connection.start().catch(() => {});
    this.updateControls();
    this.$("prompt").focus();
  }

  /**
   * 一覧から過去の会話を開く: 履歴を get_history で描き、続きのイベントを受ける。
   * 詳細設定の欄は前の会話のものなので空にする (開いた会話の設定はサーバーにある)。
   */
  openPast(threadId) {
    if (!threadId || threadId === this.connection.threadId) return;
    this.leaveThread();
    for (const key of ["system", "temperature", "max_steps"]) this.store.set(key, "");
    this.loadSettings();
    this.openThread(threadId);
    this.connection.start().catch(() => {});
    this.updateControls();
  }

  /** 一覧から会話を削除した: それが開いている会話なら、新しい会話に移る。 */
  threadDeleted(threadId) {
    if (threadId === this.connection.threadId) this.newConversation();
  }

  /** 送信・停止ボタンの有効 / 無効。 */
  updateControls() {
    const running = Boolean(this.activeRunId);
    this.$("send").disabled = running || !this.connected;
    this.$("stop").disabled = !running;
    setText(this.$("stop").firstChild, "停止 ");
    const afterStep = this.$("stop-after-step");
    afterStep.hidden = !running;
    if (!running) {
      afterStep.disabled = false;
      setText(afterStep, "このステップの後で停止");
    }
    document.body.dataset.running = running ? "true" : "false";
  }

  /** 空の会話に入力例を出す (押すとそのまま送る)。 */
  renderSuggestions() {
    const box = this.$("suggestions");
    for (const text of SUGGESTIONS) {
      box.appendChild(h("button.suggestion", { type: "button", text, onclick: () => {
        this.$("prompt").value = text;
        this.send();
      } }));
    }
  }

  /**
   * 使えるツールの一覧 (サーバー側とブラウザ側)。start の ack の tools (実際に有効なもの) があればそれを、
   * 無ければ /api/info の server_tools とこのページの定義を使う。
   */
  renderToolsList(tools) {
    // source は MCP のツールの出どころ ("mcp:<server>")。組み込みのサーバー側ツールとブラウザ側ツールには無い
    const list = this.$("tools-list");
    const entries = Array.isArray(tools)
      ? tools
      : [...(this.info.server_tools || []).map((name) => ({ name, executor: "server" })), ...clientToolDefinitions().map((t) => ({ name: t.name, executor: "client" }))];
    const item = ({ name, executor, source }) => h("span.tool-pill", { title: source ? `${name} (${source})` : name },
      h("span.mono", { text: name }),
      h("span.executor", { dataset: { executor }, text: executor === "client" ? "ブラウザ" : "サーバー" }),
      ...(source ? [h("span.tool-source.mono", { dataset: { source }, text: sourceLabel(source) })] : []));
    list.replaceChildren(...entries.map(item));
  }
}

/**
 * ツールの出どころの表示名 ("mcp:files" -> "MCP: files")。知らない形はそのまま。
 * @param {string} source
 * @returns {string}
 */
function sourceLabel(source) {
  return source.startsWith("mcp:") ? `MCP: ${source.slice(4)}` : source;
}

const app = new ConsoleApp();
app.init();
