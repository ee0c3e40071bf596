/**
 * ページ内の確認ダイアログ (<dialog> のモーダル)。window.confirm は使わない。
 *
 * confirm_action ツールが「はい / いいえ」を人に尋ねるのに使う。同時に複数の確認が来たら 1 つずつ順に出す。
 * Esc (dialog の cancel イベント) は「いいえ」として扱う。実行が止まるなどで不要になった確認は
 * AbortSignal で取り下げられる。
 */
export class ConfirmDialog {
  /** @param {HTMLDialogElement} dialog ページの <dialog id="confirm-dialog"> */
  constructor(dialog) {
    this.dialog = dialog;
    this.message = dialog.querySelector("#confirm-message");
    this.details = dialog.querySelector("#confirm-details");
    this.yes = dialog.querySelector("#confirm-yes");
    this.no = dialog.querySelector("#confirm-no");
    this.queue = [];
    this.current = null;
    this.yes.addEventListener("click", (e) => this.answer(e, true));
    this.no.addEventListener("click", (e) => this.answer(e, false));
    // Esc は「いいえ」: ダイアログは自分で閉じる (既定の閉じ方に任せると答えが記録されない)
    dialog.addEventListener("cancel", (e) => this.answer(e, false));
  }

  /** ダイアログが開いているか。 */
  isOpen() {
    return this.dialog.open;
  }

  /**
   * 人に尋ねる。
   * @param {string} message 確認の文
   * @param {{details?: string, signal?: AbortSignal}} [opts]
   * @returns {Promise<boolean>} はい なら true
   */
  ask(message, { details = "", signal } = {}) {
    return new Promise((resolve, reject) => {
      const request = { message, details, resolve, reject };
      if (signal) {
        if (signal.aborted) return reject(signal.reason);
        signal.addEventListener("abort", () => this.withdraw(request, signal.reason), { once: true });
      }
      this.queue.push(request);
      this.showNext();
    });
  }

  /** 次の確認を出す (いま何も出ていなければ)。 */
  showNext() {
    if (this.current || this.queue.length === 0) return;
    this.current = this.queue.shift();
    this.message.textContent = this.current.message;
    this.details.textContent = this.current.details || "";
    this.details.hidden = !this.current.details;
    if (!this.dialog.open) this.dialog.showModal();
    // 取り返しのつかない操作の確認なので、既定のフォーカスは「いいえ」
    this.no.focus();
  }

  /** ボタンか Esc で答えが出た。 */
  answer(event, value) {
    event.preventDefault();
    const request = this.current;
    if (!request) return;
    this.current = null;
    request.resolve(value);
    this.closeOrNext();
  }

  /** 不要になった確認を取り下げる (表示中なら閉じる)。 */
  withdraw(request, reason) {
    if (this.current === request) {
      this.current = null;
      this.closeOrNext();
    } else {
      this.queue = this.queue.filter((r) => r !== request);
    }
    request.reject(reason || new DOMException("取り下げられました", "AbortError"));
  }

  /** 待っている確認があれば出し、無ければ閉じる。 */
  closeOrNext() {
    if (this.queue.length > 0) this.showNext();
    else if (this.dialog.open) this.dialog.close();
  }
}
