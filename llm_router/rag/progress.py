"""取り込みの進捗表示 (標準エラー、プレーンテキスト、依存ライブラリなし)。

端末ならキャリッジリターンで 1 行を書き換える進捗バー、端末でなければ (ログやパイプ) ファイルと
バッチごとに 1 行ずつ書く。
"""

from __future__ import annotations

import sys
from typing import TextIO

BAR_WIDTH = 24


class ProgressBar:
    """ファイル数、チャンク数、埋め込みバッチ数を表示する進捗バー。"""

    def __init__(self, stream: TextIO | None = None, enabled: bool = True) -> None:
        """出力先 (既定は標準エラー) と、表示するかどうかを受け取る。"""
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.interactive = bool(getattr(self.stream, "isatty", lambda: False)())
        self.files_done = 0
        self.files_total = 0
        self.chunk_count = 0
        self.batches_done = 0
        self.batches_total = 0
        self.current = ""
        self._width = 0

    # ------------------------------------------------------------ IngestProgress

    def file(self, done: int, total: int, name: str) -> None:
        """``done`` 個目のファイルを処理し始めた。"""
        self.files_done, self.files_total, self.current = done, total, name
        self._render(name)

    def chunks(self, count: int) -> None:
        """ここまでに作ったチャンクの数。"""
        self.chunk_count = count
        if self.interactive:
            self._render("")

    def batch(self, done: int, total: int) -> None:
        """埋め込みのバッチが ``done`` 個終わった。"""
        self.batches_done, self.batches_total = done, total
        self._render("埋め込み")

    def finish(self) -> None:
        """進捗バーの行を終える。"""
        if self.enabled and self.interactive and self._width:
            self.stream.write("\n")
            self.stream.flush()
            self._width = 0

    # ------------------------------------------------------------ 描画

    def line(self) -> str:
        """いまの状態の 1 行。"""
        if self.batches_total:
            done, total = self.batches_done, self.batches_total
        else:
            done, total = self.files_done, max(self.files_total, 1)
        filled = int(BAR_WIDTH * done / total) if total else 0
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        parts = [f"[{bar}]", f"ファイル {self.files_done}/{self.files_total}", f"チャンク {self.chunk_count}"]
        if self.batches_total:
            parts.append(f"埋め込み {self.batches_done}/{self.batches_total} バッチ")
        return "  ".join(parts)

    def _render(self, event: str) -> None:
        """端末なら行を書き換え、そうでなければ出来事を 1 行ずつ書く。"""
        if not self.enabled:
            return
        if self.interactive:
            text = self.line()
            if self.current and not self.batches_total:
                text += "  " + _shorten(self.current, 40)
            padding = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + padding)
            self._width = len(text)
        elif event:
            self.stream.write(f"{self.line()}  {event}\n")
        self.stream.flush()


def _shorten(text: str, width: int) -> str:
    """長いパスは末尾を残して省略する。"""
    return text if len(text) <= width else "…" + text[-(width - 1) :]
