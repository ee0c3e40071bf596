/**
 * ブラウザで動くツール (クライアント側ツール) の定義と実行。
 *
 * 定義は start の tools で正規形 {name, description, parameters} のまま送る。
 * サーバーが tool_call_ready (executor: "client") を送ってきたら、ここで実行し、結果を tool_result で返す。
 * tool_call_ready に error が付いていれば (引数が不正など) 実行しない (docs/protocol.md 6 章)。
 */

// additionalProperties は書かない: 引数はサーバーが元のスキーマで検証し、余分な引数はここで無視する。
// 書くと Ollama や Gemini (OpenAPI 形式) 向けに落とされ、start の warnings が毎回出てしまう。
const NO_ARGS = { type: "object", properties: {} };

/** ページ上で選択中のテキスト (入力欄の外)。入力欄へ移ると選択は外れるので、そのときは直前のものを保つ。 */
let lastSelection = { text: "", at: 0 };

/** 選択の変化を追う。入力欄の外で選択が外れたら忘れ、入力欄へ移っただけなら覚えたままにする。 */
export function trackSelection(onChange) {
  document.addEventListener("selectionchange", () => {
    const selection = document.getSelection();
    const text = selection ? selection.toString() : "";
    const node = selection?.anchorNode;
    const el = node && (node.nodeType === Node.ELEMENT_NODE ? node : node.parentElement);
    if (el && el.closest("#composer")) return;
    if (!text.trim()) {
      if (lastSelection.text) {
        lastSelection = { text: "", at: 0 };
        onChange?.("");
      }
      return;
    }
    lastSelection = { text, at: Date.now() };
    onChange?.(text);
  });
}

/** ブラウザのロケールとタイムゾーン。 */
function getBrowserLocale() {
  const options = Intl.DateTimeFormat().resolvedOptions();
  return {
    locale: navigator.language || options.locale,
    languages: Array.from(navigator.languages || []),
    time_zone: options.timeZone,
    utc_offset_minutes: -new Date().getTimezoneOffset(),
    local_time: new Date().toString(),
  };
}

/** いま選択されているテキスト (入力欄にいるなら、その直前にページ上で選択していたテキスト)。 */
function getSelectedText() {
  const now = document.getSelection()?.toString() || "";
  const text = now.trim() ? now : lastSelection.text;
  return { text, length: text.length, has_selection: Boolean(text) };
}

/** ツールの一覧。run(args, ctx) が結果 (JSON にできる値) を返す。 */
export const CLIENT_TOOLS = [
  {
    name: "get_browser_locale",
    description:
      "ユーザーのブラウザの言語設定 (ロケール) とタイムゾーン、UTC からの時差 (分) を返す。" +
      "ユーザーの地域や現地時刻に合わせて答えるときに使う。",
    parameters: NO_ARGS,
    run: async () => getBrowserLocale(),
  },
  {
    name: "confirm_action",
    description:
      "操作を実行してよいかを、ページ上のダイアログでユーザー本人に尋ね、はい / いいえ を返す。" +
      "取り返しのつかない操作や、ユーザーの同意が要る操作の前に必ず使う。",
    parameters: {
      type: "object",
      properties: {
        message: { type: "string", description: "ユーザーに見せる確認の文 (例: 「ファイルを削除してよいですか?」)" },
        details: { type: "string", description: "補足の説明 (任意)" },
      },
      required: ["message"],
    },
    run: async (args, ctx) => {
      const confirmed = await ctx.dialog.ask(String(args.message), {
        details: args.details ? String(args.details) : "",
        signal: ctx.signal,
      });
      return { confirmed, answer: confirmed ? "yes" : "no" };
    },
  },
  {
    name: "get_selected_text",
    description: "ユーザーがこのページ上で選択しているテキストを返す (選択が無ければ空文字)。",
    parameters: NO_ARGS,
    run: async () => getSelectedText(),
  },
];

/** start で送る定義 (run を除いた正規形)。 */
export function clientToolDefinitions() {
  return CLIENT_TOOLS.map(({ name, description, parameters }) => ({ name, description, parameters }));
}

/** 実行中のクライアント側ツールを管理し、止められるようにする。 */
export class ClientToolRunner {
  /** @param {{dialog: import("./confirm_dialog.js").ConfirmDialog}} ctx ツールに渡す道具 */
  constructor(ctx) {
    this.ctx = ctx;
    /** @type {Map<string, {runId: string, controller: AbortController}>} */
    this.running = new Map();
  }

  /**
   * ツールを 1 つ実行する。
   * @returns {Promise<{result: any, isError: boolean, aborted?: boolean}>}
   */
  async execute(event) {
    const tool = CLIENT_TOOLS.find((t) => t.name === event.name);
    if (!tool) return { result: `このブラウザには ${event.name} というツールがありません`, isError: true };
    const controller = new AbortController();
    this.running.set(event.tool_call_id, { runId: event.run_id, controller });
    try {
      const args = event.arguments && typeof event.arguments === "object" ? event.arguments : {};
      const result = await tool.run(args, { ...this.ctx, signal: controller.signal });
      return { result, isError: false };
    } catch (err) {
      if (controller.signal.aborted) return { result: null, isError: true, aborted: true };
      return { result: `ツールの実行に失敗しました: ${err?.message || err}`, isError: true };
    } finally {
      this.running.delete(event.tool_call_id);
    }
  }

  /** 1 つの呼び出しを取り下げる (結果がすでに届いた、など)。 */
  abort(toolCallId) {
    this.running.get(toolCallId)?.controller.abort();
  }

  /** ある実行の呼び出しをすべて取り下げる (実行が終わった、止められた)。 */
  abortRun(runId) {
    for (const entry of this.running.values()) if (entry.runId === runId) entry.controller.abort();
  }

  /** すべて取り下げる (別の会話に切り替えた)。 */
  abortAll() {
    for (const entry of this.running.values()) entry.controller.abort();
  }
}
