/**
 * 描画を requestAnimationFrame ごとにまとめる。
 *
 * 1 秒に数千の text_delta が届いても、DOM への書き込みは 1 フレームに 1 回、対象の要素ごとに
 * Text ノードを 1 つ足すだけにする (ログ全体を描き直さない)。これで 5,000 デルタでもページが固まらない。
 */
export class FrameBatcher {
  /** 空の待ち行列を作る。 */
  constructor() {
    /** @type {Map<Node, string[]>} 要素ごとの未描画の文字列 */
    this.pendingText = new Map();
    /** @type {Map<string, Function>} キーごとの最新の更新処理 (同じキーは最後の 1 回だけ実行) */
    this.pendingTasks = new Map();
    this.afterFlush = [];
    this.scheduled = false;
  }

  /** 要素の末尾に文字列を足す (次のフレームでまとめて)。 */
  appendText(el, text) {
    if (!text) return;
    const queue = this.pendingText.get(el);
    if (queue) queue.push(text);
    else this.pendingText.set(el, [text]);
    this.schedule();
  }

  /** キー付きの更新を予約する (同じキーなら前の予約を置き換える)。 */
  task(key, fn) {
    this.pendingTasks.set(key, fn);
    this.schedule();
  }

  /** フレームの最後に毎回呼ぶ処理を登録する (自動スクロールなど)。 */
  onFlush(fn) {
    this.afterFlush.push(fn);
  }

  /** 要素に溜まった未描画の文字列を捨てる (要素を作り直すとき)。 */
  discard(el) {
    this.pendingText.delete(el);
  }

  /** 要素の未描画分をいま書き出す (確定テキストで置き換える直前など)。 */
  flushElement(el) {
    const queue = this.pendingText.get(el);
    if (!queue) return;
    this.pendingText.delete(el);
    el.appendChild(document.createTextNode(queue.join("")));
  }

  /** 次のフレームで flush する。 */
  schedule() {
    if (this.scheduled) return;
    this.scheduled = true;
    // 背景タブでは requestAnimationFrame が止まるので、その間はタイマーで進める
    if (document.visibilityState === "hidden") setTimeout(() => this.flush(), 100);
    else requestAnimationFrame(() => this.flush());
  }

  /** 溜まった描画をすべて実行する。 */
  flush() {
    this.scheduled = false;
    const texts = this.pendingText;
    this.pendingText = new Map();
    for (const [el, parts] of texts) el.appendChild(document.createTextNode(parts.join("")));
    const tasks = this.pendingTasks;
    this.pendingTasks = new Map();
    for (const fn of tasks.values()) fn();
    for (const fn of this.afterFlush) fn();
  }
}
