/**
 * アシスタントの確定テキストを、Markdown の小さな部分集合として DOM に組み立てる。
 *
 * 対応: コードブロック (```)、見出し (#)、箇条書き (- * +)、番号付きリスト (1.)、引用 (>)、
 * 段落、インラインのコード (`x`)、太字 (**x**)、http(s) のリンク ([文](URL))。
 * HTML は一切解釈しない: すべて createElement と Text ノードで作るので、モデルの出力に <script> などが
 * 含まれていても文字として表示されるだけ (innerHTML は使わない)。
 * 流れている間は素のテキストのまま表示し、text_finished の全文が来てからこれで置き換える。
 */
import { h } from "./dom.js";

const FENCE = /^\s*```(.*)$/;
const HEADING = /^(#{1,6})\s+(.*)$/;
const BULLET = /^\s*[-*+]\s+(.*)$/;
const NUMBERED = /^\s*\d+[.)]\s+(.*)$/;
const QUOTE = /^\s*>\s?(.*)$/;
// インライン: コード、太字、リンク (http/https のみ)
const INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g;

/** 1 行の中のインライン記法を、Text ノードと要素の並びにする。 */
export function inline(text) {
  const out = [];
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) out.push(text.slice(last, m.index));
    if (m[1]) out.push(h("code.md-inline", { text: m[1].slice(1, -1) }));
    else if (m[2]) out.push(h("strong", { text: m[2].slice(2, -2) }));
    else out.push(h("a", { href: m[4], target: "_blank", rel: "noopener noreferrer", text: m[3] }));
    last = m.index + m[0].length;
  }
  if (last < text.length) out.push(text.slice(last));
  return out;
}

/** 行の並びを段落・リストなどのブロックに分けて組み立てる。 */
export function renderMarkdown(text) {
  const lines = String(text).split("\n");
  const blocks = [];
  let paragraph = [];
  let list = null;
  const flushParagraph = () => {
    if (paragraph.length) blocks.push(h("p.md-p", {}, ...inline(paragraph.join("\n"))));
    paragraph = [];
  };
  const flushList = () => {
    list = null;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    const fence = line.match(FENCE);
    if (fence) {
      flushParagraph();
      flushList();
      const body = [];
      while (++i < lines.length && !FENCE.test(lines[i])) body.push(lines[i]);
      const lang = fence[1].trim();
      blocks.push(h("pre.md-code.mono", lang ? { "data-lang": lang } : {}, h("code", { text: body.join("\n") })));
      continue;
    }
    const heading = line.match(HEADING);
    const bullet = line.match(BULLET);
    const numbered = !bullet && line.match(NUMBERED);
    const quote = line.match(QUOTE);
    if (heading) {
      flushParagraph();
      flushList();
      blocks.push(h(`p.md-heading.md-h${heading[1].length}`, {}, ...inline(heading[2])));
    } else if (bullet || numbered) {
      flushParagraph();
      const tag = bullet ? "ul" : "ol";
      if (!list || list.tagName.toLowerCase() !== tag) {
        list = h(`${tag}.md-list`);
        blocks.push(list);
      }
      list.appendChild(h("li", {}, ...inline((bullet || numbered)[1])));
    } else if (quote) {
      flushParagraph();
      flushList();
      blocks.push(h("blockquote.md-quote", {}, ...inline(quote[1])));
    } else if (!line.trim()) {
      flushParagraph();
      flushList();
    } else {
      flushList();
      paragraph.push(line);
    }
  }
  flushParagraph();
  return blocks;
}
