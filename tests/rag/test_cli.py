"""CLI の端から端まで (サブプロセス): ingest → search → list → 取り込み直し → remove、モデルの不一致、失敗の報告。"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llm_router.rag.cli import split_overrides
from tests.fakes.openai_fake import OpenAIFake

ROOT = Path(__file__).resolve().parents[2]


def _run(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python -m llm_router.rag`` を別プロセスで動かす (開発者の .env は読ませない)。"""
    environment = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "LLM_ROUTER_API_TOKENS"}
    environment.update({"PYTHONPATH": str(ROOT), "LLM_ROUTER_ENV_FILE": str(cwd / "none.env"), **(env or {})})
    return subprocess.run(
        [sys.executable, "-m", "llm_router.rag", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("argv", "args", "overrides"),
    [
        (["search", "問い", "rag.top_k=3"], ["search", "問い"], ["rag.top_k=3"]),
        (["ingest", "docs", "+rag.x=1"], ["ingest", "docs"], ["+rag.x=1"]),
        (["search", "--", "a=b"], ["search", "--", "a=b"], []),
    ],
)
def test_split_overrides(argv, args, overrides):
    """key=value はオーバーライド、``--`` の後ろは検索語。"""
    assert split_overrides(argv) == (args, overrides)


def test_cli_end_to_end_with_demo_hashing(tmp_path, docs):
    """キー無し (demo/hashing) で取り込み、検索、一覧、取り込み直し、削除まで。"""
    (docs / "broken.pdf").write_bytes(b"%PDF-1.7 not really")
    ingest = _run(tmp_path, "ingest", "docs", "rag.store_path=store")
    assert ingest.returncode == 1, ingest.stderr
    assert "追加 3" in ingest.stdout and "失敗 1" in ingest.stdout
    assert "docs/broken.pdf" in ingest.stderr
    assert "ファイル 4/4" in ingest.stderr and "バッチ" in ingest.stderr
    assert "lexical" in ingest.stderr

    search = _run(tmp_path, "search", "型番 XK-4471Q", "--json", "rag.store_path=store", "rag.top_k=2")
    assert search.returncode == 0, search.stderr
    payload = json.loads(search.stdout)
    assert payload["model"] == "demo/hashing"
    top = payload["results"][0]
    assert top["source"] == "docs/manual.md" and top["location"] == "製品マニュアル > 概要"
    assert "XK-4471Q" in top["text"] and len(payload["results"]) == 2

    listing = _run(tmp_path, "list", "rag.store_path=store")
    assert "demo/hashing" in listing.stdout and "3 ファイル" in listing.stdout

    again = _run(tmp_path, "ingest", "docs/manual.md", "docs/faq.txt", "rag.store_path=store")
    assert again.returncode == 0 and "変更なし 2" in again.stdout and "新たに埋め込み 0" in again.stdout

    removed = _run(tmp_path, "remove", "docs/manual.md", "rag.store_path=store")
    assert removed.returncode == 0 and "manual.md" in removed.stdout
    after = json.loads(_run(tmp_path, "search", "XK-4471Q", "--json", "rag.store_path=store").stdout)
    assert all(r["source"] != "docs/manual.md" for r in after["results"])
    assert _run(tmp_path, "remove", "docs/manual.md", "rag.store_path=store").returncode == 1


def test_cli_with_openai_and_a_changed_model(tmp_path, docs):
    """OpenAI の偽サーバーで取り込み、別のモデルを指定すると終了コード 2 とストアのモデル名。"""
    with OpenAIFake() as fake:
        env = {"OPENAI_API_KEY": "sk-cli"}
        base = [f"providers.openai.base_url={fake.base_url}", "rag.store_path=store"]
        ingest = _run(tmp_path, "ingest", "docs", "--quiet", *base, env=env)
        assert ingest.returncode == 0, ingest.stderr
        assert "openai/text-embedding-3-small" in ingest.stdout and ingest.stderr == ""
        assert any(r.path == "/v1/embeddings" for r in fake.requests)
        changed = _run(tmp_path, "search", "保証", *base, "rag.embedding_model=demo/hashing", env=env)
        assert changed.returncode == 2
        assert "openai/text-embedding-3-small" in changed.stderr
        assert "sk-cli" not in changed.stderr + changed.stdout


def test_cli_search_without_a_store_says_nothing_was_ingested(tmp_path):
    """ストアが無いときの検索は、取り込み方を案内する。"""
    result = _run(tmp_path, "search", "何か", "rag.store_path=nothing")
    assert result.returncode == 0
    assert "no documents have been ingested" in result.stderr


def test_cli_reports_a_bad_override(tmp_path):
    """未知の設定キーは設定の誤り (終了コード 2)。"""
    result = _run(tmp_path, "list", "rag.no_such_key=1")
    assert result.returncode == 2 and "no_such_key" in result.stderr
