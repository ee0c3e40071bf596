"""進捗バーのテスト: 端末では 1 行を書き換え、端末でなければ出来事ごとに 1 行。"""

import io

from llm_router.rag.progress import ProgressBar


class _Terminal(io.StringIO):
    """端末のふりをする出力先。"""

    def isatty(self) -> bool:
        """端末である。"""
        return True


def test_terminal_rewrites_one_line_and_ends_with_a_newline():
    """端末ではキャリッジリターンで同じ行を書き換え、最後に改行する。"""
    out = _Terminal()
    bar = ProgressBar(out)
    bar.file(1, 2, "/docs/a.md")
    bar.chunks(5)
    bar.file(2, 2, "/docs/b.md")
    bar.batch(1, 1)
    bar.finish()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    last = text.rstrip("\n").split("\r")[-1]
    assert "[########################]" in last
    assert "ファイル 2/2" in last and "チャンク 5" in last and "埋め込み 1/1 バッチ" in last


def test_a_pipe_gets_one_line_per_event():
    """端末でなければファイルとバッチごとに 1 行 (ログに残る形)。"""
    out = io.StringIO()
    bar = ProgressBar(out)
    bar.file(1, 1, "/docs/a.md")
    bar.chunks(3)
    bar.batch(1, 2)
    bar.batch(2, 2)
    bar.finish()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].endswith("/docs/a.md") and "\r" not in out.getvalue()
    assert "埋め込み 2/2 バッチ" in lines[-1]


def test_disabled_writes_nothing():
    """--quiet では何も書かない。"""
    out = _Terminal()
    bar = ProgressBar(out, enabled=False)
    bar.file(1, 1, "x")
    bar.finish()
    assert out.getvalue() == ""
