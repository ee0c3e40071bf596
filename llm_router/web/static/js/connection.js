/**
 * /agent 名前空間への接続と、スレッドのイベント列の管理 (再接続・再開・重複排除)。
 *
 * - 公式の socket.io クライアント (window.io) を使う。Socket.IO のプロトコルは自分で書かない。
 * - サーバーのイベントはすべて {type, thread_id, run_id, seq, ts} の封筒を持つ (docs/protocol.md 4 章)。
 *   seq はスレッドごとに 1 から 1 ずつ増えるので、最後に処理した seq を覚えておき、
 *   再接続したら start の resume_after_seq でその続きから送り直してもらう。
 * - 過去の会話を開くとき (別のブラウザ、読み込み直し、一覧から) は、まず get_history で履歴を受け取り
 *   (onHistory)、その last_seq の続きから start {resume_after_seq} で生のイベントを受ける。
 * - 届いたイベントは seq で重複を捨て、飛びがあれば埋まるまで待ってから順に渡す。
 *   python-socketio には接続状態の復元が無いので (docs/design.md 1 章)、これはクライアント側の仕事。
 */

// ランの終わりのイベント (ランは必ずこのどれか 1 つで終わる)。サーバーの語彙 core/schemas/events.py と同じもの
// (tests/core/test_events.py が突き合わせる)
export const RUN_END_EVENTS = new Set(["run_finished", "run_error", "run_cancelled"]);

const ACK_TIMEOUT_MS = 15000;
// seq の飛びが埋まらないとき、再開を頼み直すまでの時間
const GAP_RESYNC_MS = 1500;

/** サーバーに拒否された応答を表す例外 (ack の error.code を持つ)。 */
export class AckError extends Error {
  /** ack の error オブジェクトから作る。 */
  constructor(error) {
    super(error?.message || error?.code || "エラー");
    this.code = error?.code || "error";
  }
}

/** 1 つのスレッドにつながる接続。 */
export class AgentConnection {
  /**
   * @param {Object} opts
   * @param {() => string|null} opts.getToken 接続トークン (無ければ null)
   * @param {(event: Object) => void} opts.onEvent seq 順に並んだ、重複のないイベントを受け取る
   * @param {(state: string, detail?: string) => void} opts.onStatus 接続状態の変化
   * @param {(ack: Object, info: {resumed: boolean, lost: boolean}) => void} opts.onStarted start の ack が ok だったとき
   *   (lost: サーバーがこのスレッドのログを失っていた。再起動など)
   * @param {(err: Error) => void} opts.onStartFailed start (または get_history) が失敗したとき
   * @param {(ack: Object) => void} opts.onHistory get_history の ack (履歴から会話を描く)
   */
  constructor({ getToken, onEvent, onStatus, onStarted, onStartFailed, onHistory }) {
    Object.assign(this, { getToken, onEvent, onStatus, onStarted, onStartFailed, onHistory });
    this.historyPending = false; // 次の start の前に get_history で履歴を読むか
    this.threadId = null;
    this.lastSeq = 0;
    this.knownThread = false; // サーバーにすでにあるかもしれないスレッドか (再読み込み後など)
    this.startParams = {};
    this.outOfOrder = new Map();
    this.gapTimer = null;
    this.duplicates = 0;
    this.connectedOnce = false;
    this.socket = null;
  }

  /** 接続を開く (再接続は socket.io の Manager が指数バックオフで自動で行う)。 */
  connect() {
    const socket = window.io("/agent", {
      // 接続のたびに最新のトークンを渡す (トークンを入れ直した後の再接続にも効く)
      auth: (cb) => {
        const token = this.getToken();
        this.attemptToken = token;
        cb(token ? { token } : {});
      },
      reconnectionDelay: 500,
      reconnectionDelayMax: 2000,
    });
    this.socket = socket;
    socket.on("connect", () => this.handleConnect());
    socket.on("disconnect", (reason) => this.handleDisconnect(reason));
    socket.on("connect_error", (err) => this.handleConnectError(err));
    socket.io.on("reconnect_attempt", (n) => this.onStatus("reconnecting", `再接続中… (${n} 回目)`));
    socket.onAny((name, payload) => this.receive(name, payload));
    this.onStatus("connecting", "接続中…");
  }

  /** 接続できた (初回と再接続のたび): スレッドに入り直し、途切れていた分を送ってもらう。 */
  handleConnect() {
    const resumed = this.connectedOnce;
    this.connectedOnce = true;
    this.connectCount = (this.connectCount || 0) + 1;
    this.onStatus("connected", "接続済み");
    this.start({ resumed }).catch(() => {});
  }

  /** 切断されたとき。サーバー側から切られた場合は socket.io が自動では再接続しないので、自分でつなぎ直す。 */
  handleDisconnect(reason) {
    this.onStatus("reconnecting", "切断されました。再接続中…");
    if (reason === "io server disconnect") this.socket.connect();
  }

  /** 接続が拒否されたとき (トークン違いなら "unauthorized")。 */
  handleConnectError(err) {
    const message = err?.message || "";
    // トークンを入れたのが、トークンなしの接続の試みの最中だった: 断られたのは前の試みなので、入れたトークンでつなぎ直す
    const token = this.getToken();
    if (message === "unauthorized" && token && token !== this.attemptToken) {
      this.socket.connect();
      return;
    }
    // トークンなしの試みの最中にトークンを入れると、2 つの試みが重なる (入れたトークンの試みが、前の試みへの
    // 拒否を受け取ることがある)。入れたトークンが初めて断られたときは、重なりの無い 1 回の試みでつなぎ直す
    if (message === "unauthorized" && token && token !== this.refusedToken) {
      this.refusedToken = token;
      this.socket.disconnect(); // 重なった試みを捨てて、新しい接続で 1 回だけ試す
      this.socket.connect();
      return;
    }
    if (message === "unauthorized") this.onStatus("unauthorized", "認証が必要です");
    else this.onStatus("reconnecting", "接続できません。再試行中…");
  }

  /** トークンを入れ直した後などに、もう一度つなぐ。 */
  reconnect() {
    if (this.socket.connected) this.socket.disconnect();
    this.socket.connect();
  }

  /**
   * 使うスレッドを決める (id はクライアントで作る。未知の id なら、サーバーがその id で作る)。
   * known: サーバーにすでにあるはずのスレッド。次の start の前に get_history で履歴を読む。
   */
  useThread(threadId, { known = false } = {}) {
    this.threadId = threadId;
    this.lastSeq = 0;
    this.knownThread = known;
    this.historyPending = known;
    this.historyLoading = null;
    this.catching = null;
    this.outOfOrder.clear();
    clearTimeout(this.gapTimer);
  }

  /**
   * スレッドに入る (初回)、入り直す (再接続・設定変更)。これまでに見た seq の続きから送ってもらう。
   * @returns {Promise<Object>} ok だった ack
   */
  start({ resumed = false } = {}) {
    const promise = this.startOnce(resumed);
    // 送信はこの start の ack を待つ (サーバーはハンドラを並行に動かすので、順番はこちらで守る)
    this.lastStart = promise.catch(() => null);
    return promise;
  }

  /** 直近の start が終わるまで待つ (失敗しても待つだけ)。 */
  ready() {
    return this.lastStart || Promise.resolve(null);
  }

  /** start を 1 回送り、ack を反映する。 */
  async startOnce(resumed) {
    if (!this.threadId || !this.socket?.connected) return null;
    const threadId = this.threadId;
    try {
      if (this.historyPending) {
        // 同時に 2 つの start が来ても (接続と設定の変更など)、履歴は 1 度だけ読んで描く
        if (this.historyLoading?.threadId !== threadId) {
          const promise = this.loadHistory().catch((err) => {
            if (this.historyLoading?.promise === promise) this.historyLoading = null; // 次の接続で読み直す
            throw err;
          });
          this.historyLoading = { threadId, promise };
        }
        if (!(await this.historyLoading.promise)) return null;
      }
      if (threadId !== this.threadId) return null;
      const payload = { thread_id: this.threadId, ...this.startParams };
      // 初めて作るスレッドでは再開するものが無い。それ以外は、見た所の続きから送り直してもらう
      if (this.lastSeq > 0 || this.knownThread) payload.resume_after_seq = this.lastSeq;
      const ack = await this.request("start", payload);
      if (threadId !== this.threadId) return ack; // 待つ間に別の会話へ切り替わった
      this.knownThread = true;
      const lost = typeof ack.last_seq === "number" && ack.last_seq < this.lastSeq;
      if (lost) {
        // サーバーがスレッドのログを失った (再起動など): 新しいログの seq に合わせ直す
        this.lastSeq = ack.last_seq;
        this.outOfOrder.clear();
      }
      this.onStarted(ack, { resumed, lost });
      return ack;
    } catch (err) {
      this.onStartFailed(err);
      throw err;
    }
  }

  /**
   * get_history で履歴を受け取り、その last_seq を最後に処理した seq とする (続きは start の再開で受ける)。
   * サーバーに無いスレッド (unknown_thread: 削除された、メモリのストアで再起動した) は新しいスレッドとして始める。
   * @returns {Promise<boolean>} start へ進んでよいか (待つ間に別の会話へ切り替わったら false)
   */
  async loadHistory() {
    const threadId = this.threadId;
    let ack = null;
    try {
      ack = await this.request("get_history", { thread_id: threadId });
    } catch (err) {
      if (err.code !== "unknown_thread") throw err;
    }
    if (threadId !== this.threadId) return false;
    this.historyPending = false;
    if (!ack) {
      this.knownThread = false;
      this.lastSeq = 0;
      this.onHistory({ messages: [], last_seq: 0, unknown: true });
      return true;
    }
    this.lastSeq = typeof ack.last_seq === "number" ? ack.last_seq : 0;
    this.outOfOrder.clear();
    this.onHistory(ack);
    return true;
  }

  /**
   * 始まりを見ていない実行 (履歴を読んだときにはもう動いていた) を、その始まりから送り直してもらう。
   * 履歴には終わったステップしか無いので、いま動いているステップ (流れているテキスト、答えを待つブラウザ側ツール) は
   * イベントからしか描けない。start {resume_after_seq: 0} を送り、最後の seq までのうちその実行のイベントだけを
   * もう一度 onEvent に渡す (ほかの実行の古いイベントは捨てる)。送り直しが終わる (ack) までは新しいイベントを待たせ、
   * 順序を保つ。
   * @returns {boolean} 送り直しを頼んだか (接続していなければ頼めない)
   */
  catchUp(runId) {
    if (this.catching || !this.socket?.connected) return false;
    const catching = { runId, limit: this.lastSeq, seen: new Set() };
    this.catching = catching;
    const payload = { thread_id: this.threadId, ...this.startParams, resume_after_seq: 0 };
    this.request("start", payload)
      .catch(() => null)
      .finally(() => {
        if (this.catching === catching) this.catching = null;
        this.drain();
      });
    return true;
  }

  /** 実行 run_id とその後の実行を、モデルに見える履歴から取り除く (編集して答え直す前に)。 */
  rewind(runId) {
    return this.request("rewind", { thread_id: this.threadId, run_id: runId });
  }

  /** ack 付きでイベントを送る。ok でなければ AckError を投げる。 */
  request(event, payload, timeoutMs = ACK_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      this.socket.timeout(timeoutMs).emit(event, payload, (err, ack) => {
        if (err) reject(new AckError({ code: "timeout", message: "サーバーから応答がありません" }));
        else if (!ack || ack.ok !== true) reject(new AckError(ack?.error));
        else resolve(ack);
      });
    });
  }

  /** ユーザーのメッセージを送り、実行を始める。 */
  sendMessage(content, runId) {
    return this.request("user_message", { thread_id: this.threadId, content, run_id: runId });
  }

  /** ブラウザ側ツールの結果を返す。 */
  sendToolResult(runId, toolCallId, result, isError) {
    return this.request("tool_result", {
      thread_id: this.threadId,
      run_id: runId,
      tool_call_id: toolCallId,
      result,
      is_error: Boolean(isError),
    });
  }

  /** 実行を止める (mode: "now" | "after_step")。 */
  cancel(runId, mode = "now") {
    const payload = { thread_id: this.threadId, mode };
    if (runId) payload.run_id = runId;
    return this.request("cancel", payload);
  }

  /** サーバーからのイベントを受け取り、seq で並べ、重複を捨ててから渡す。 */
  receive(name, payload) {
    if (!payload || typeof payload !== "object" || payload.thread_id !== this.threadId) return;
    const seq = payload.seq;
    if (typeof seq !== "number") return;
    const catching = this.catching;
    if (catching && seq <= catching.limit) {
      // 始まりから送り直してもらっている実行のイベントだけを、もう一度渡す (1 回ずつ)
      if (payload.run_id === catching.runId && !catching.seen.has(seq)) {
        catching.seen.add(seq);
        this.deliver({ ...payload, type: payload.type || name });
      }
      return;
    }
    if (seq <= this.lastSeq || this.outOfOrder.has(seq)) {
      this.duplicates += 1;
      return;
    }
    this.outOfOrder.set(seq, { ...payload, type: payload.type || name });
    this.drain();
  }

  /** 次の seq が揃っている限り順に渡す。飛びが残れば、しばらく待って再開を頼み直す。 */
  drain() {
    if (this.catching) return; // 送り直しの最中は、新しいイベントをその後まで待たせる
    while (this.outOfOrder.has(this.lastSeq + 1)) {
      const event = this.outOfOrder.get(this.lastSeq + 1);
      this.outOfOrder.delete(this.lastSeq + 1);
      this.lastSeq += 1;
      this.deliver(event);
      if (this.catching) return;
    }
    clearTimeout(this.gapTimer);
    if (this.outOfOrder.size === 0) {
      this.gapAttempts = 0;
      return;
    }
    this.gapTimer = setTimeout(() => this.resolveGap(), GAP_RESYNC_MS);
  }

  /** イベントを 1 つ渡す (処理の失敗で列を止めない)。 */
  deliver(event) {
    try {
      this.onEvent(event);
    } catch (err) {
      console.error("イベントの処理に失敗しました", event, err);
    }
  }

  /** seq の飛びが埋まらない: 1 度は再開を頼み直し、それでも駄目なら (ログが上限で切られた) 先へ進む。 */
  resolveGap() {
    if (this.outOfOrder.size === 0) return;
    this.gapAttempts = (this.gapAttempts || 0) + 1;
    if (this.gapAttempts === 1) {
      this.start({ resumed: true }).catch(() => {});
      this.gapTimer = setTimeout(() => this.resolveGap(), GAP_RESYNC_MS * 2);
      return;
    }
    console.warn("イベントの一部がサーバーのログに残っていないため、飛ばして続けます");
    this.lastSeq = Math.min(...this.outOfOrder.keys()) - 1;
    this.drain();
  }
}
