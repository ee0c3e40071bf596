"""サーバー側ツール ``search_documents`` のテスト (ツールの登録簿を通して呼ぶ)。"""

import pytest

from llm_router.rag.ingest import ingest
from tests.fakes.openai_fake import OpenAIFake
from tests.rag.conftest import rag_settings
from tools.registry import ToolExecutionError, default_registry


def _call(settings, **arguments):
    """登録簿を作って search_documents を呼ぶ。"""
    return default_registry(settings).call("search_documents", arguments)


def test_the_tool_is_registered_with_a_schema_from_its_docstring(tmp_path):
    """登録簿に入り、引数 query (必須) と top_k (既定は rag.top_k) のスキーマを持つ。"""
    tool = default_registry(rag_settings(tmp_path, "rag.top_k=4")).get("search_documents")
    assert tool.parameters["required"] == ["query"]
    assert tool.parameters["properties"]["top_k"] == {"type": "integer", "description": "返す件数。", "default": 4}
    assert "文書" in tool.description


def test_a_missing_store_gives_a_clear_result_not_an_exception(tmp_path):
    """ストアが無ければ「まだ文書が取り込まれていない」という結果 (例外ではない)。"""
    result = _call(rag_settings(tmp_path / "none"), query="保証期間")
    assert result["results"] == []
    assert "no documents have been ingested" in result["message"]


def test_passages_carry_source_location_score_and_text(tmp_path, docs, monkeypatch):
    """結果の各件に source / location / score / text があり、件数は top_k。"""
    monkeypatch.chdir(tmp_path)
    settings = rag_settings(tmp_path / "store")
    ingest(settings, [docs])
    result = _call(settings, query="型番 XK-4471Q", top_k=2)
    assert len(result["results"]) == 2
    top = result["results"][0]
    assert set(top) >= {"source", "location", "score", "text"}
    assert top["source"] == "docs/manual.md" and top["location"] == "製品マニュアル > 概要"
    assert "XK-4471Q" in top["text"]
    assert result["embedding_model"] == "demo/hashing"


def test_top_k_is_clamped_to_the_configured_maximum(tmp_path, docs):
    """top_k は 1 以上 rag.max_top_k 以下に丸める。"""
    settings = rag_settings(tmp_path / "store", "rag.max_top_k=2", "rag.chunk_size=40", "rag.chunk_overlap=0")
    ingest(settings, [docs])
    assert len(_call(settings, query="保証", top_k=50)["results"]) == 2
    assert len(_call(settings, query="保証", top_k=0)["results"]) == 1


def test_the_tool_sees_documents_ingested_after_it_was_built(tmp_path, docs):
    """ツールを作った後に CLI などで取り込んだ文書も、サーバーを再起動せずに見える。"""
    settings = rag_settings(tmp_path / "store")
    registry = default_registry(settings)
    assert registry.call("search_documents", {"query": "保証"})["results"] == []
    ingest(settings, [docs])
    assert registry.call("search_documents", {"query": "保証"})["results"]


def test_a_query_embedding_failure_falls_back_to_lexical_search(tmp_path, docs):
    """問い合わせを埋め込めない (キーが無い) ときは語彙検索だけで答え、その旨を添える。"""
    with OpenAIFake() as fake:
        overrides = (f"providers.openai.base_url={fake.base_url}", "rag.embedding_model=auto")
        ingest(rag_settings(tmp_path / "s", *overrides, environ={"OPENAI_API_KEY": "sk-x"}), [docs])
        result = _call(rag_settings(tmp_path / "s", *overrides), query="XK-4471Q")
    assert "XK-4471Q" in result["results"][0]["text"]
    assert any("lexical search only" in n and "OPENAI_API_KEY" in n for n in result["notices"])


def test_a_model_mismatch_is_a_tool_error_naming_the_store_model(tmp_path, docs):
    """設定のモデルがストアと違えば、ストアのモデル名を含むツールのエラー。"""
    ingest(rag_settings(tmp_path / "s"), [docs])
    with pytest.raises(ToolExecutionError, match="demo/hashing"):
        _call(rag_settings(tmp_path / "s", "rag.embedding_model=openai/text-embedding-3-small"), query="保証")
