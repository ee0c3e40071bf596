/**
 * タブごとの保存 (sessionStorage): 開いていたスレッドの id、接続トークン、選んだモデルと設定。
 *
 * 接続トークンは sessionStorage にだけ置く (タブを閉じれば消え、他のタブとも共有しない)。
 * 会話の中身 (ユーザーの発言を含む) はここに置かない: サーバーが持つもの (get_history、run_started の message)
 * から描く。ここが覚えるのは「どのスレッドを開いていたか」だけ。
 */
const PREFIX = "llm_router.console.";

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
}
