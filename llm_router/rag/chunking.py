"""チャンク分割: 段落 → 文 → (それでも長ければ) 文字数、の順に文章の切れ目を尊重して分ける。

- 大きさと重なりは **文字数** (日本語には単語の区切りの空白が無いので、単語数では測れない)。
- 1 つのチャンクは常に節 (見出しの下、PDF の 1 ページ) の中の **連続した一部分** で、節をまたがない。
  そのため位置 (ページ、見出しの階層、行範囲) がはっきり決まる。
- 段落 (空行で区切る) をできるだけまとめて詰め、入りきらない長い段落は文に分ける。文の終わりは
  日本語の ``。！？`` (閉じ括弧・引用符を含む)、英語の ``.!?`` (後ろに空白が続くもの)、改行。
  それでも ``chunk_size`` を超える文は文字数で切る (英語なら近くの空白で)。
- 重なり: 次のチャンクは前のチャンクの末尾 ``chunk_overlap`` 文字以内にある文の頭から始める
  (文の途中から始めないため)。その範囲に文の頭が無ければ、ちょうど ``chunk_overlap`` 文字前から
  (ただし次の段落が大きくて重ねられる幅が半分未満なら、断片は雑音なので重ねない)。
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from llm_router.rag.schemas import Chunk, Document, Section

CHUNKER_VERSION = 1

_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# 文の終わり: 日本語の句点類、英語の .!? (後ろに空白か終わり)、改行。閉じ括弧・引用符は文に含める
_SENTENCE_END = re.compile(r"[。！？!?]+[」』）)\]\"'”’]*|\.+[」』）)\]\"'”’]*(?=\s|$)|\n")


@dataclass(frozen=True)
class ChunkingConfig:
    """チャンクの大きさと重なり (文字数)。"""

    size: int
    overlap: int

    def __post_init__(self) -> None:
        """大きさは正、重なりは大きさの半分未満でなければならない。"""
        if self.size < 20:
            raise ValueError("rag.chunk_size must be at least 20 characters (rag.chunk_size は 20 文字以上)")
        if not 0 <= self.overlap < self.size // 2 + 1:
            raise ValueError(
                "rag.chunk_overlap must be between 0 and half of rag.chunk_size (重なりは大きさの半分まで)"
            )

    @property
    def signature(self) -> str:
        """ストアに記録する分割方法の印 (変われば分割し直す)。"""
        return f"{self.size}/{self.overlap}/v{CHUNKER_VERSION}"


def content_hash(text: str) -> str:
    """チャンクのテキストの SHA-256 (16 進)。"""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- 切れ目を探す


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """``[start, end)`` の前後の空白を除いた範囲。"""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """空行で区切った段落の範囲 (前後の空白は除く)。"""
    spans = []
    position = 0
    for match in _PARAGRAPH_BREAK.finditer(text):
        spans.append(_trim(text, position, match.start()))
        position = match.end()
    spans.append(_trim(text, position, len(text)))
    return [(s, e) for s, e in spans if e > s]


def sentence_spans(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """``[start, end)`` を文の範囲に分ける (前後の空白は除く)。"""
    spans = []
    position = start
    for match in _SENTENCE_END.finditer(text, start, end):
        spans.append(_trim(text, position, match.end()))
        position = match.end()
    spans.append(_trim(text, position, end))
    return [(s, e) for s, e in spans if e > s]


def _hard_split(text: str, start: int, end: int, size: int) -> list[tuple[int, int]]:
    """文字数で切る。切れ目の近く (後ろ 1/5) に空白があればそこで切る (英単語を割らない)。"""
    pieces = []
    while end - start > size:
        cut = start + size
        space = text.rfind(" ", cut - size // 5, cut)
        if space > start:
            cut = space
        pieces.append(_trim(text, start, cut))
        start = cut
    pieces.append(_trim(text, start, end))
    return [(s, e) for s, e in pieces if e > s]


def _units(text: str, size: int) -> list[tuple[int, int]]:
    """詰め込みの単位: 入りきる段落はそのまま、長い段落は文、長い文は文字数で。"""
    units: list[tuple[int, int]] = []
    for p_start, p_end in paragraph_spans(text):
        if p_end - p_start <= size:
            units.append((p_start, p_end))
            continue
        for s_start, s_end in sentence_spans(text, p_start, p_end):
            if s_end - s_start <= size:
                units.append((s_start, s_end))
            else:
                units.extend(_hard_split(text, s_start, s_end, size))
    return units


def _overlap_start(text: str, chunk: tuple[int, int], overlap: int, must_end: int, size: int) -> int | None:
    """前のチャンク ``chunk`` の末尾から重なりの始まりを選ぶ (重ならないなら ``None``)。

    次のチャンクは ``must_end`` まで入る必要があるので、``must_end - size`` より前からは始められない。
    """
    if overlap <= 0:
        return None
    earliest = max(chunk[1] - overlap, must_end - size, chunk[0] + 1)
    if earliest >= chunk[1]:
        return None
    for s_start, _ in sentence_spans(text, chunk[0], chunk[1]):
        if s_start >= earliest:
            return s_start
    # 文の頭が無い (長い文の途中): 重なりに使える幅が十分なら文字数で切る。狭ければ断片は雑音なので重ねない
    if chunk[1] - earliest < max(1, overlap // 2):
        return None
    start, _ = _trim(text, earliest, chunk[1])
    return start if start < chunk[1] else None


def split_section(text: str, config: ChunkingConfig) -> list[tuple[int, int]]:
    """節のテキストをチャンクの範囲 ``(start, end)`` の並びにする。"""
    chunks: list[tuple[int, int]] = []
    current: tuple[int, int] | None = None
    for u_start, u_end in _units(text, config.size):
        if current is None:
            current = (u_start, u_end)
        elif u_end - current[0] <= config.size:
            current = (current[0], u_end)
        else:
            chunks.append(current)
            begin = _overlap_start(text, current, config.overlap, u_end, config.size)
            current = (begin if begin is not None else u_start, u_end)
    if current is not None:
        chunks.append(current)
    return chunks


# ---------------------------------------------------------------- 文書 → チャンク


def _location(section: Section, start_line: int | None, end_line: int | None) -> str:
    """人が読む位置: PDF はページ、見出しがあれば見出しの階層、無ければ行範囲。"""
    if section.page is not None:
        return f"p. {section.page}"
    if section.heading_path:
        return " > ".join(section.heading_path)
    if start_line is not None:
        return f"L{start_line}" if start_line == end_line else f"L{start_line}-{end_line}"
    return ""


def chunk_document(document: Document, config: ChunkingConfig) -> list[Chunk]:
    """文書のすべての節をチャンクにする (ファイルの中の順番を ``ordinal`` に振る)。"""
    chunks: list[Chunk] = []
    for section in document.sections:
        text = section.text
        for start, end in split_section(text, config):
            start_line = end_line = None
            if section.first_line is not None:
                start_line = section.first_line + text.count("\n", 0, start)
                end_line = start_line + text.count("\n", start, end)
            piece = text[start:end]
            chunks.append(
                Chunk(
                    source=document.source,
                    text=piece,
                    location=_location(section, start_line, end_line),
                    content_hash=content_hash(piece),
                    ordinal=len(chunks),
                    page=section.page,
                    heading_path=section.heading_path,
                    start_line=start_line,
                    end_line=end_line,
                )
            )
    return chunks
