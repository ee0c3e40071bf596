"""読み込みのテスト: 文字コード、Markdown の見出し、HTML の本文抽出、PDF のページ、読めないファイル。"""

import io

import pypdf
import pytest

from llm_router.rag.loaders import discover, load_document
from llm_router.rag.schemas import LoadError
from tests.rag.pdf_helper import make_pdf


def _write(tmp_path, name, data):
    """ファイルを書いてパスを返す。"""
    path = tmp_path / name
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("日本語のテキスト".encode(), "日本語のテキスト"),
        ("\ufeffBOM 付き".encode(), "BOM 付き"),
        ("シフトJISの文書".encode("cp932"), "シフトJISの文書"),
        ("日本語のテキストです。保証期間は一年。".encode("euc_jp"), "日本語のテキストです。保証期間は一年。"),
    ],
)
def test_text_encodings(tmp_path, data, expected):
    """UTF-8 (BOM 付き可)、Shift_JIS (cp932)、EUC-JP のテキストを読む。"""
    doc = load_document(_write(tmp_path, "a.txt", data))
    assert doc.kind == "txt"
    assert doc.sections[0].text == expected
    assert len(doc.file_hash) == 64


def test_markdown_sections_follow_the_heading_path(tmp_path):
    """Markdown は見出しごとの節になり、見出しの階層を持つ。コードブロックの # は見出しではない。"""
    text = (
        "# 製品\n\n前書き。\n\n## 導入\n\n導入の本文。\n\n```python\n# これはコメント\n```\n\n"
        "### 詳細\n\n詳細の本文。\n\n## 使い方\n\n使い方の本文。\n\nSetext\n======\n\n最後。\n"
    )
    doc = load_document(_write(tmp_path, "a.md", text))
    paths = [s.heading_path for s in doc.sections]
    assert paths == [("製品",), ("製品", "導入"), ("製品", "導入", "詳細"), ("製品", "使い方"), ("Setext",)]
    assert "# これはコメント" in doc.sections[1].text
    assert doc.sections[1].first_line == 5
    assert doc.sections[-1].text.startswith("Setext\n======")


def test_a_heading_only_section_is_dropped(tmp_path):
    """すぐ下に小見出しが続く見出しだけの節は作らない。"""
    doc = load_document(_write(tmp_path, "a.md", "# 上\n## 下\n\n本文。\n"))
    assert [s.heading_path for s in doc.sections] == [("上", "下")]


def test_html_drops_scripts_and_styles_and_splits_at_headings(tmp_path):
    """HTML は script / style / title を落とし、見出しで節に分け、空白をまとめる。"""
    html = (
        "<html><head><title>題</title><style>p{color:red}</style><script>var x = 1;</script></head>"
        "<body><h1>概要</h1><p>本文の   段落&amp;記号。</p><script>alert('x')</script>"
        "<h2>詳細</h2><ul><li>一つ目</li><li>二つ目</li></ul></body></html>"
    )
    doc = load_document(_write(tmp_path, "a.html", html))
    assert [s.heading_path for s in doc.sections] == [("概要",), ("概要", "詳細")]
    joined = "\n".join(s.text for s in doc.sections)
    assert "本文の 段落&記号。" in joined
    assert "一つ目\n二つ目" in joined
    for dropped in ("alert", "color:red", "var x", "題"):
        assert dropped not in joined


def test_pdf_pages_become_sections(tmp_path):
    """PDF はページごとの節になり、ページ番号を持つ。"""
    doc = load_document(_write(tmp_path, "a.pdf", make_pdf(["First page text", "Second page text"])))
    assert [(s.page, s.text) for s in doc.sections] == [(1, "First page text"), (2, "Second page text")]


def test_encrypted_pdf_is_refused_with_a_reason(tmp_path):
    """パスワード付きの PDF は理由つきで失敗する。"""
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(make_pdf(["secret"]))))
    writer.encrypt("password", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    with pytest.raises(LoadError, match="encrypted"):
        load_document(_write(tmp_path, "locked.pdf", buffer.getvalue()))


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("broken.pdf", b"%PDF-1.4\n garbage without a trailer", "PDF"),
        ("binary.txt", b"\x00\x01\x02binary", "binary"),
        ("latin.txt", bytes([0x82, 0xA0, 0xFF, 0xFE, 0x81]), "Shift_JIS"),
        ("empty.md", b"  \n\n", "no text"),
        ("table.docx", b"PK\x03\x04", "unsupported"),
    ],
)
def test_unreadable_files_raise_load_error(tmp_path, name, data, reason):
    """壊れた PDF、バイナリ、読めない文字コード、空、未対応の形式は LoadError (理由つき)。"""
    with pytest.raises(LoadError, match=reason):
        load_document(_write(tmp_path, name, data))


def test_unreadable_permissions_raise_load_error(tmp_path):
    """読み取り権限の無いファイルも LoadError (root で動くときは権限が効かないので飛ばす)。"""
    import os

    path = _write(tmp_path, "secret.txt", "本文")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as root: file permissions are not enforced")
        with pytest.raises(LoadError, match="cannot read"):
            load_document(path)
    finally:
        path.chmod(0o600)


def test_discover_walks_folders_and_reports_missing_paths(tmp_path):
    """フォルダは再帰的に対応形式だけを集め、隠しフォルダは飛ばし、無いパスは理由つきで返す。"""
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    a = _write(tmp_path, "a.md", "a")
    b = _write(tmp_path / "sub", "b.txt", "b")
    _write(tmp_path / ".git", "c.txt", "c")
    _write(tmp_path, "image.png", b"\x89PNG")
    explicit = _write(tmp_path, "notes.docx", b"PK")
    files, missing = discover([tmp_path, explicit, a, tmp_path / "nope.txt"])
    assert files == [a, b, explicit]
    assert missing == [(str(tmp_path / "nope.txt"), "not found (見つかりません)")]


def test_markdown_front_matter_is_not_a_heading(tmp_path):
    """先頭の YAML front matter の閉じ ``---`` を setext 見出しと取り違えない。"""
    doc = load_document(_write(tmp_path, "a.md", "---\ntitle: 手引き\n---\n\n# 本題\n\n本文。\n"))
    assert [s.heading_path for s in doc.sections] == [(), ("本題",)]
    assert doc.sections[0].text.startswith("---\ntitle: 手引き")
