"""チャンク分割のテスト (表): 日本語、英語、Markdown の見出し、長い段落、重なり、位置と行番号。"""

import itertools

import pytest

from llm_router.rag.chunking import ChunkingConfig, chunk_document, content_hash, sentence_spans, split_section
from llm_router.rag.schemas import Document, Section


def _pieces(text: str, size: int, overlap: int) -> list[str]:
    """節のテキストを分けたチャンクの文字列。"""
    return [text[s:e] for s, e in split_section(text, ChunkingConfig(size, overlap))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("今日は晴れ。明日は雨！本当に？", ["今日は晴れ。", "明日は雨！", "本当に？"]),
        ("「行こう。」と彼は言った。", ["「行こう。」", "と彼は言った。"]),
        ("It rains. Does it? Yes! Pi is 3.14 today.", ["It rains.", "Does it?", "Yes!", "Pi is 3.14 today."]),
        ("一行目\n二行目", ["一行目", "二行目"]),
        ("終わりの句点が無い文", ["終わりの句点が無い文"]),
    ],
)
def test_sentence_boundaries(text, expected):
    """文の終わり: 日本語の。！？ (閉じ括弧を含む)、英語の .!? (後ろに空白)、改行。小数点では切らない。"""
    assert [text[s:e] for s, e in sentence_spans(text, 0, len(text))] == expected


@pytest.mark.parametrize(
    ("text", "size", "overlap", "expected"),
    [
        # 短い段落はまとめて 1 つに詰める
        ("第一段落。\n\n第二段落。", 100, 0, ["第一段落。\n\n第二段落。"]),
        # 入りきらなければ段落の切れ目で分ける
        ("あ" * 30 + "。\n\n" + "い" * 30 + "。", 40, 0, ["あ" * 30 + "。", "い" * 30 + "。"]),
        # 長い段落は文の切れ目で分ける
        (
            "一つ目の文です。二つ目の文です。三つ目の文です。",
            20,
            0,
            ["一つ目の文です。二つ目の文です。", "三つ目の文です。"],
        ),
        # 英語も同じ
        (
            "First sentence here. Second sentence here. Third one.",
            45,
            0,
            ["First sentence here. Second sentence here.", "Third one."],
        ),
    ],
)
def test_packing_table(text, size, overlap, expected):
    """段落 → 文 の順に切れ目を尊重して詰める。"""
    assert _pieces(text, size, overlap) == expected


def test_a_sentence_longer_than_the_size_is_cut_by_characters():
    """区切りの無い長い文は文字数で切り、どのチャンクも大きさを超えない。"""
    text = "句点の無いとても長い文" * 30
    pieces = _pieces(text, 50, 0)
    assert all(len(p) <= 50 for p in pieces)
    assert "".join(pieces) == text


def test_english_hard_split_prefers_a_space():
    """英語の長い文を文字数で切るときは、近くの空白で切って単語を割らない。"""
    words = " ".join(f"word{i:03d}" for i in range(60))
    for piece in _pieces(words, 50, 0):
        assert len(piece) <= 50
        assert all(w.startswith("word") and len(w) == 7 for w in piece.split())


def test_overlap_starts_at_a_sentence_inside_the_previous_chunk():
    """重なり: 次のチャンクは前のチャンクの末尾の文から始まる (文の途中からではない)。"""
    text = "".join(f"これは{i}番目の文です。" for i in range(12))
    pieces = _pieces(text, 40, 15)
    assert len(pieces) > 2
    for previous, current in itertools.pairwise(pieces):
        assert len(current) <= 40
        head = current.split("。")[0] + "。"
        assert previous.endswith(head), (previous, current)


def test_no_overlap_when_zero():
    """重なり 0 ならチャンクは重ならず、つなぐと (空白以外は) 元どおり。"""
    text = "".join(f"文{i}。" for i in range(50))
    pieces = _pieces(text, 30, 0)
    assert "".join(pieces) == text


def test_every_chunk_respects_the_size_with_overlap():
    """重なりがあっても大きさを超えない (英語と日本語の混在)。"""
    text = "\n\n".join(
        ("日本語の段落です。" * 7) if i % 2 else ("An English paragraph goes here. " * 5).strip() for i in range(10)
    )
    for piece in _pieces(text, 120, 30):
        assert 0 < len(piece) <= 120


@pytest.mark.parametrize(("size", "overlap"), [(10, 0), (100, 60), (100, -1)])
def test_invalid_sizes_are_rejected(size, overlap):
    """小さすぎる大きさ、大きさの半分を超える重なり、負の重なりは設定の誤り。"""
    with pytest.raises(ValueError):
        ChunkingConfig(size, overlap)


def test_chunk_metadata_location_lines_and_hash():
    """チャンクはファイル名、位置 (見出し / ページ / 行範囲)、行番号、テキストのハッシュを持つ。"""
    doc = Document(
        source="/docs/a.md",
        kind="md",
        file_hash="h",
        sections=[
            Section("## 導入\n\n本文。\n", heading_path=("製品", "導入"), first_line=3),
            Section("一行目\n二行目\n", first_line=1),
            Section("ページの本文", page=4),
        ],
    )
    chunks = chunk_document(doc, ChunkingConfig(200, 0))
    assert [c.location for c in chunks] == ["製品 > 導入", "L1-2", "p. 4"]
    assert (chunks[0].start_line, chunks[0].end_line) == (3, 5)
    assert [c.ordinal for c in chunks] == [0, 1, 2]
    assert chunks[2].page == 4
    assert all(c.source == "/docs/a.md" and c.content_hash == content_hash(c.text) for c in chunks)
