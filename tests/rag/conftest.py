"""RAG のテストの共通部品: 設定の組み立てと、日本語・英語の文書フォルダ。"""

from pathlib import Path

import pytest

from llm_router.config.settings import load_settings


def rag_settings(store: Path, *overrides: str, environ: dict[str, str] | None = None):
    """ストアのパスとオーバーライドから設定を作る (開発者の .env と環境変数は読まない)。"""
    return load_settings([f"rag.store_path={store}", *overrides], env_file=None, environ=environ or {})


@pytest.fixture
def docs(tmp_path) -> Path:
    """日本語と英語の文書が入ったフォルダ (Markdown、テキスト、HTML)。"""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "manual.md").write_text(
        "# 製品マニュアル\n\n## 概要\n\nこのルーターは家庭向けの無線 LAN 機器です。型番は XK-4471Q です。\n\n"
        "## 設定\n\n管理画面を開き、初期パスワードを変更してください。\n",
        encoding="utf-8",
    )
    (folder / "faq.txt").write_text(
        "Warranty lasts one year from the date of purchase.\n\nThe device supports WPA3 encryption.\n",
        encoding="utf-8",
    )
    (folder / "notes.html").write_text(
        "<html><body><h1>メモ</h1><p>保証期間は購入日から一年間です。</p><script>ignored()</script></body></html>",
        encoding="utf-8",
    )
    return folder
