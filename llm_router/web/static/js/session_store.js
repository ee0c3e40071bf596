/**
 * タブごとの保存 (sessionStorage): スレッド id、接続トークン、選んだモデル、ユーザーの発言。
 *
 * 接続トークンは sessionStorage にだけ置く (タブを閉じれば消え、他のタブとも共有しない)。
 * サーバーのイベントにはユーザーの発言が含まれないので、再読み込み後に会話を描き直せるよう
 * 発言だけはここに実行 id ごとに残す (スレッドごとに最新の一定数まで)。
 */
const PREFIX = "llm_router.console.";
const MAX_MESSAGES = 200;

/** sessionStorage の薄い包み。保存できない環境 (プライベートモードなど) では黙って記憶だけにする。 */
export class SessionStore {
  /** @param {Storage} storage 既定は window.sessionStorage */
  constructor(storage) {
    this.storage = storage;
    this.memory = new Map();
  }

  /** 値を読む。 */
  get(key) {
    try {
      return this.storage.getItem(PREFIX + key);
    } catch {
      return this.memory.get(key) ?? null;
    }
  }

  /** 値を書く (空文字なら消す)。 */
  set(key, value) {
    try {
      if (value) this.storage.setItem(PREFIX + key, value);
      else this.storage.removeItem(PREFIX + key);
    } catch {
      this.memory.set(key, value);
    }
  }

  /** 接続トークン。 */
  token() {
    return this.get("token");
  }

  /** 接続トークンを保存する。 */
  setToken(token) {
    this.set("token", token);
  }

  /** スレッドのユーザー発言 (実行 id → 文) を読む。 */
  messages(threadId) {
    try {
      return JSON.parse(this.get(`messages.${threadId}`) || "{}");
    } catch {
      return {};
    }
  }

  /** 実行 id に対応するユーザー発言。 */
  userMessage(threadId, runId) {
    return this.messages(threadId)[runId] || null;
  }

  /** ユーザー発言を残す。 */
  addUserMessage(threadId, runId, text) {
    const all = this.messages(threadId);
    all[runId] = text;
    const keys = Object.keys(all);
    for (const old of keys.slice(0, Math.max(0, keys.length - MAX_MESSAGES))) delete all[old];
    this.set(`messages.${threadId}`, JSON.stringify(all));
  }
}
