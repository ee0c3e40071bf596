/**
 * モデルの選択欄: /api/info の models (設定されたモデルと別名) から作る。
 *
 * キーの無いプロバイダのモデルは「キー未設定」として印を付け、選べないようにする
 * (選んでも実行時に MissingCredentialError になるだけなので)。提供終了のモデルも同様。
 * 先頭の「自動」はモデルを指定しない (サーバーの agent.model に任せる)。
 */
import { h } from "./dom.js";

/** モデルの選択欄。 */
export class ModelPicker {
  /**
   * @param {HTMLSelectElement} select
   * @param {import("./session_store.js").SessionStore} store
   */
  constructor(select, store) {
    this.select = select;
    this.store = store;
    this.models = [];
    this.defaultModel = "";
  }

  /** 選択肢を作る。 */
  render(info) {
    this.models = info.models || [];
    this.defaultModel = info.default_model || "";
    this.auto = h("option", { value: "", text: `自動 (${this.defaultModel || "サーバーの既定"})` });
    const usable = h("optgroup", { label: "使えるモデル" });
    const noKey = h("optgroup", { label: "API キー未設定" });
    const retired = h("optgroup", { label: "提供終了" });
    for (const m of this.models) {
      const aliases = (m.aliases || []).length ? ` — 別名: ${m.aliases.join(", ")}` : "";
      const flags = [m.demo ? "デモ" : "", !m.has_key ? "キー未設定" : "", m.retired ? "提供終了" : ""].filter(Boolean);
      const label = `${m.id}${aliases}${flags.length ? ` (${flags.join("・")})` : ""}`;
      const option = h("option", { value: m.id, text: label, disabled: !m.has_key || m.retired, dataset: { hasKey: String(Boolean(m.has_key)) } });
      (m.retired ? retired : m.has_key ? usable : noKey).appendChild(option);
    }
    this.select.replaceChildren(this.auto, ...[usable, noKey, retired].filter((g) => g.children.length));
    const saved = this.store.get("model");
    const option = saved && [...this.select.options].find((o) => o.value === saved && !o.disabled);
    this.select.value = option ? saved : "";
  }

  /** 選ばれているモデル (「自動」なら空文字)。 */
  value() {
    return this.select.value;
  }

  /** 選択を覚えておく (再読み込み後も同じモデル)。 */
  remember() {
    this.store.set("model", this.select.value);
  }

  /** 実際に使われるモデルを「自動」の表示に反映する。 */
  showActive(model) {
    if (this.auto && model) this.auto.textContent = `自動 (${model})`;
  }

  /**
   * 開いた過去の会話のモデルを欄に出す (選べるモデルならそれを選ぶ。覚えはしない: タブの選択は変えない)。
   * 一覧に無いモデルなら「自動」の表示にそのモデルを添える。
   */
  showThreadModel(model) {
    if (!model) return;
    const option = [...this.select.options].find((o) => o.value === model && !o.disabled);
    this.select.value = option ? model : "";
    if (!option) this.showActive(model);
  }

  /** モデルがデモ・プロバイダのものか。 */
  isDemo(model) {
    if (!model) return false;
    const entry = this.models.find((m) => m.id === model || (m.aliases || []).includes(model));
    return entry ? Boolean(entry.demo) : model.startsWith("demo/");
  }
}
