/**
 * DOM を安全に組み立てる小さな道具。
 *
 * モデルやツールの出力は必ず textContent / Text ノードとして入れる (innerHTML は使わない)。
 * これによりモデルの出力に HTML が含まれていても、文字として表示されるだけになる。
 */

/**
 * 要素を作る。children の文字列は Text ノードになる (HTML として解釈されない)。
 * @param {string} tag タグ名 (例 "div.class-a.class-b")
 * @param {Object} [attrs] 属性。on* は addEventListener、dataset はまとめて設定する。
 * @param {...(Node|string|null|undefined|false)} children 子
 * @returns {HTMLElement}
 */
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.classList.add(...classes);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (value === true) {
      el.setAttribute(key, "");
    } else {
      el.setAttribute(key, String(value));
    }
  }
  for (const child of children) appendChild(el, child);
  return el;
}

/** 子を 1 つ足す (文字列は Text ノードとして)。 */
export function appendChild(el, child) {
  if (child === undefined || child === null || child === false) return;
  el.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
}

/**
 * 入力欄のキー: Enter で確定、(onCancel があれば) Escape で取り消し。日本語入力の変換を確定する Enter は確定にしない。
 * @param {HTMLElement} input 入力欄
 * @param {Object} opts
 * @param {() => void} opts.onSubmit Enter が押された
 * @param {() => void} [opts.onCancel] Escape が押された (外側へは伝えない)
 * @param {boolean} [opts.shiftNewline] 真なら Shift+Enter は改行 (確定しない)
 */
export function bindEnterKeys(input, { onSubmit, onCancel, shiftNewline = false }) {
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !(shiftNewline && e.shiftKey) && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      onSubmit();
    } else if (e.key === "Escape" && onCancel) {
      e.preventDefault();
      e.stopPropagation();
      onCancel();
    }
  });
}

/** 要素の中身を文字列で置き換える (HTML として解釈しない)。 */
export function setText(el, text) {
  el.textContent = text == null ? "" : String(text);
}

/** メッセージの content (文字列、または部品の配列) の文字の部分。 */
export function contentText(content) {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return content == null ? "" : String(content);
  return content.map((p) => (typeof p === "string" ? p : typeof p?.text === "string" ? p.text : "")).join("");
}

/** 任意の値を読みやすい文字列にする (JSON は 2 字下げ、文字列はそのまま)。 */
export function pretty(value) {
  if (typeof value === "string") return value;
  try {
    return JSON.stringify(value, null, 2);
  } catch {
    return String(value);
  }
}

/** ミリ秒を「1.23 秒」「850 ms」の形にする。 */
export function formatDuration(ms) {
  if (typeof ms !== "number" || !isFinite(ms)) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(2)} 秒`;
  const m = Math.floor(ms / 60000);
  return `${m} 分 ${Math.round((ms % 60000) / 1000)} 秒`;
}

/** usage オブジェクトを「入力 12 · 出力 34 · 思考 0」の形にする。 */
export function formatUsage(usage) {
  if (!usage) return "";
  const n = (v) => (typeof v === "number" ? v.toLocaleString("ja-JP") : "0");
  const parts = [`入力 ${n(usage.input_tokens)}`, `出力 ${n(usage.output_tokens)}`];
  if (usage.reasoning_tokens) parts.push(`思考 ${n(usage.reasoning_tokens)}`);
  return parts.join(" · ") + " トークン";
}

/** イベントの ts (秒) を「12:34:56」の形にする。 */
export function formatClock(ts) {
  if (typeof ts !== "number") return "";
  return new Date(ts * 1000).toLocaleTimeString("ja-JP", { hour12: false });
}

/** プロトコルの id 規則 (^[A-Za-z0-9_.:-]{1,128}$) に合う、衝突しにくい id を作る。 */
export function newId(prefix) {
  const rand = crypto.getRandomValues(new Uint32Array(2));
  return `${prefix}_${Date.now().toString(36)}${rand[0].toString(36)}${rand[1].toString(36)}`;
}
