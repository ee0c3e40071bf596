"""ファイルの読み込み: ``.txt`` / ``.md`` / ``.html`` / ``.pdf`` を節 (:class:`Section`) の並びにする。

- 文字コード: UTF-8 (BOM 付き可) を試し、だめなら Windows の日本語 (cp932 = Shift_JIS の上位集合)、EUC-JP を試す。
  NUL を含むものはバイナリとして拒む。
- Markdown: ATX 見出し (``#``) と setext 見出し (``===`` / ``---``) で節に分ける。コードブロック
  (````` / ``~~~``) の中の ``#`` は見出しではない (CommonMark 仕様 4.2, 4.3, 4.5)。
- HTML: 標準ライブラリの ``html.parser`` でテキストだけを取り出す。``script`` / ``style`` などは落とし、
  ``h1``-``h6`` で節に分ける。
- PDF: ``pypdf`` でページごとにテキストを取り出す (1 ページ = 1 節)。暗号化 (パスワード付き) や
  テキストの無い (画像だけの) PDF は理由つきで失敗にする。
読めないファイルは :class:`LoadError` を投げる。ファイル名の報告と続行は呼び手 (取り込み) が行う。
"""

from __future__ import annotations

import hashlib
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import ClassVar

from llm_router.rag.schemas import Document, LoadError, Section

# 拡張子 → 形式
SUPPORTED_SUFFIXES: dict[str, str] = {
    ".txt": "txt",
    ".text": "txt",
    ".md": "md",
    ".markdown": "md",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")


def kind_of(path: Path) -> str | None:
    """拡張子から形式を返す (未対応なら ``None``)。"""
    return SUPPORTED_SUFFIXES.get(path.suffix.lower())


def decode_text(data: bytes) -> str:
    """バイト列をテキストにする (UTF-8 → cp932 → EUC-JP の順)。

    Raises:
        LoadError: バイナリ (NUL を含む) か、どちらの文字コードでも読めないとき。
    """
    if b"\x00" in data:
        raise LoadError("binary file (バイナリファイルです)")
    for encoding in ("utf-8-sig", "cp932", "euc_jp"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    raise LoadError("not UTF-8, Shift_JIS or EUC-JP text (UTF-8 でも Shift_JIS でも EUC-JP でもありません)")


def load_document(path: Path) -> Document:
    """1 ファイルを読み、節に分けた :class:`Document` を返す。

    Raises:
        LoadError: 未対応の形式、読めない、テキストが無いとき。
    """
    kind = kind_of(path)
    if kind is None:
        supported = " ".join(sorted(set(SUPPORTED_SUFFIXES)))
        raise LoadError(f"unsupported file type '{path.suffix}' (未対応の形式です。対応: {supported})")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read the file: {exc.strerror or exc} (ファイルを読めません)") from exc
    sections = _LOADERS[kind](data)
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise LoadError("no text in the file (テキストがありません)")
    return Document(source=str(path), kind=kind, file_hash=hashlib.sha256(data).hexdigest(), sections=sections)


# ---------------------------------------------------------------- テキストと Markdown


def _load_txt(data: bytes) -> list[Section]:
    """プレーンテキストは全体で 1 節。"""
    return [Section(text=decode_text(data), first_line=1)]


def _load_markdown(data: bytes) -> list[Section]:
    """Markdown を見出しごとの節に分ける (見出しの行は節の先頭に残す)。"""
    lines = decode_text(data).splitlines(keepends=True)
    sections: list[Section] = []
    path: list[tuple[int, str]] = []
    start = 0
    fence: str | None = None

    def close(end: int) -> None:
        """``start`` から ``end`` の手前までの行を、今の見出しの節として閉じる。"""
        text = "".join(lines[start:end])
        if text.strip():
            sections.append(Section(text=text, heading_path=tuple(t for _, t in path), first_line=start + 1))

    front = _front_matter_end(lines)
    for i, line in enumerate(lines):
        if i <= front:
            continue
        stripped = line.rstrip("\r\n")
        fence_match = _FENCE.match(stripped)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
            continue
        if fence is not None:
            continue
        heading = _heading_at(lines, i)
        if heading is None:
            continue
        level, title, first = heading
        close(first)
        path = [(lvl, t) for lvl, t in path if lvl < level] + [(level, title)]
        start = first
    close(len(lines))
    return _drop_heading_only(sections)


def _front_matter_end(lines: list[str]) -> int:
    """先頭の YAML front matter (``---`` で囲まれた部分) の最後の行番号 (無ければ -1)。

    閉じの ``---`` が setext 見出しと誤解されないよう、この範囲では見出しを探さない。
    """
    if not lines or lines[0].strip() != "---":
        return -1
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            return i
    return -1


def _heading_at(lines: list[str], i: int) -> tuple[int, str, int] | None:
    """``i`` 行目で見出しが終わるなら (レベル, 見出し, 見出しの最初の行) を返す。"""
    stripped = lines[i].rstrip("\r\n")
    atx = _ATX.match(stripped)
    if atx:
        return len(atx.group(1)), (atx.group(2) or "").strip(), i
    setext = _SETEXT.match(stripped)
    if setext and i > 0:
        previous = lines[i - 1].rstrip("\r\n")
        # 直前が空行でない普通の行なら setext 見出し (``---`` だけの行は区切り線)
        if previous.strip() and not _ATX.match(previous) and not _SETEXT.match(previous):
            return (1 if setext.group(1)[0] == "=" else 2), previous.strip(), i - 1
    return None


def _drop_heading_only(sections: list[Section]) -> list[Section]:
    """見出しの行しかない節 (すぐ下に小見出しが続く) は検索の役に立たないので落とす。"""
    kept = []
    for section in sections:
        body_lines = [ln for ln in section.text.splitlines() if ln.strip()]
        if section.heading_path and len(body_lines) <= 1 and _ATX.match(body_lines[0] if body_lines else ""):
            continue
        kept.append(section)
    return kept


# ---------------------------------------------------------------- HTML


class _HTMLText(HTMLParser):
    """HTML から本文のテキストだけを取り出し、見出しごとに節へ分けるパーサ。"""

    SKIP = frozenset({"script", "style", "noscript", "template", "title", "svg", "iframe", "object"})
    BLOCK = frozenset(
        {"p", "div", "section", "article", "main", "header", "footer", "nav", "aside", "blockquote", "pre", "ul"}
        | {"ol", "li", "dl", "dt", "dd", "table", "tr", "br", "hr", "figure", "figcaption", "form", "details"}
    )
    # 行だけを区切る要素 (前に改行 1 つ、後ろには何も足さない)
    LINE = frozenset({"li", "br", "tr", "dt", "dd"})
    HEADINGS: ClassVar[dict[str, int]] = {f"h{n}": n for n in range(1, 7)}

    def __init__(self) -> None:
        """空の状態で始める。"""
        super().__init__(convert_charrefs=True)
        self.sections: list[Section] = []
        self._buffer: list[str] = []
        self._path: list[tuple[int, str]] = []
        self._skip_depth = 0
        self._pre_depth = 0
        self._heading: list[str] | None = None
        self._heading_level = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """開始タグ: 落とす要素、見出し、ブロック要素の区切りを扱う。"""
        if tag in self.SKIP:
            self._skip_depth += 1
        elif tag in self.HEADINGS and not self._skip_depth:
            self._flush()
            self._heading, self._heading_level = [], self.HEADINGS[tag]
        elif tag in self.BLOCK:
            self._buffer.append("\n" if tag in self.LINE else "\n\n")
            if tag == "pre":
                self._pre_depth += 1

    def handle_endtag(self, tag: str) -> None:
        """終了タグ: 見出しを閉じて節の階層を更新する。"""
        if tag in self.SKIP:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag in self.HEADINGS and self._heading is not None:
            title = " ".join("".join(self._heading).split())
            level = self._heading_level
            self._path = [(lvl, t) for lvl, t in self._path if lvl < level] + [(level, title)]
            self._heading = None
            self._buffer.append(title + "\n\n")
        elif tag in self.BLOCK and tag not in self.LINE:
            self._buffer.append("\n\n")
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        """テキスト: HTML の空白は (``pre`` の外では) 意味を持たないので 1 つにまとめる。"""
        if self._skip_depth:
            return
        if self._heading is not None:
            self._heading.append(data)
            return
        if self._pre_depth:
            self._buffer.append(data)
            return
        collapsed = re.sub(r"\s+", " ", data)
        if collapsed.strip() or (self._buffer and not self._buffer[-1].endswith((" ", "\n"))):
            self._buffer.append(collapsed)

    def _flush(self) -> None:
        """たまったテキストを今の見出しの節にする。"""
        raw = "".join(self._buffer)
        self._buffer = []
        text = re.sub(r"[ \t]*\n[ \t]*", "\n", raw)
        text = re.sub(r"\n{3,}", "\n\n", text).strip()
        if text:
            self.sections.append(Section(text=text, heading_path=tuple(t for _, t in self._path)))

    def close(self) -> None:
        """最後の節を閉じる。"""
        super().close()
        self._flush()


def _load_html(data: bytes) -> list[Section]:
    """HTML の本文テキストを見出しごとの節にする。"""
    parser = _HTMLText()
    parser.feed(decode_text(data))
    parser.close()
    return parser.sections


# ---------------------------------------------------------------- PDF


def _load_pdf(data: bytes) -> list[Section]:
    """PDF をページごとの節にする (``pypdf``; 重いので使うときだけ import する)。"""
    import io

    from pypdf import PdfReader

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("encrypted PDF (パスワード付きの PDF です)")
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            sections.append(Section(text=text, page=number))
    except LoadError:
        raise
    except Exception as exc:
        # pypdf は壊れたファイルで PdfReadError 以外 (ValueError, KeyError など) も投げる
        raise LoadError(f"cannot read the PDF: {type(exc).__name__}: {exc} (PDF を読めません)") from exc
    if not any(s.text.strip() for s in sections):
        raise LoadError(
            "no text in the PDF, perhaps scanned images (テキストがありません。画像だけの PDF かもしれません)"
        )
    return sections


_LOADERS = {"txt": _load_txt, "md": _load_markdown, "html": _load_html, "pdf": _load_pdf}


# ---------------------------------------------------------------- ファイルを集める


def discover(paths: list[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """引数のファイルとフォルダから取り込むファイルを集める。

    フォルダは再帰的にたどり、対応する拡張子のファイルだけを取る (``.`` で始まるものは飛ばす)。
    明示されたファイルは形式にかかわらず返す (未対応なら読み込みで理由つきの失敗になる)。

    Returns:
        (解決済みの絶対パスの一覧 (重複なし、順序どおり), 見つからなかったパスと理由の一覧)
    """
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw).expanduser().resolve()
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file() and kind_of(p) and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
        elif path.exists():
            found = [path]
        else:
            missing.append((str(path), "not found (見つかりません)"))
            continue
        for p in found:
            if p not in seen:
                seen.add(p)
                files.append(p)
    return files, missing
