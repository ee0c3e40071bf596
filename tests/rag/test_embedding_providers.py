"""各プロバイダの埋め込みリクエスト (ループバックの偽サーバー): バッチ、順序、Gemini の taskType、問い合わせ側。"""

import numpy as np

from llm_router.rag.ingest import ingest
from llm_router.rag.search import DocumentSearch
from llm_router.rag.store import VectorStore
from tests.fakes.gemini_fake import GeminiFake, hash_vector
from tests.fakes.ollama_fake import OllamaFake
from tests.fakes.openai_fake import OpenAIFake, embedding_vector
from tests.rag.conftest import rag_settings

FAST_RETRY = ("retry.initial_backoff_s=0.01", "retry.max_backoff_s=0.02")


def _provider_overrides(provider: str, base_url: str, batch: int) -> list[str]:
    """プロバイダの接続先、バッチの大きさ、短い再試行。"""
    return [
        f"providers.{provider}.base_url={base_url}",
        f"providers.{provider}.embedding_batch_size={batch}",
        *(f"providers.{provider}.{r}" for r in FAST_RETRY),
    ]


def _unit(text: str, dimension: int) -> np.ndarray:
    """偽サーバーが返すベクトルを正規化したもの。"""
    vector = np.asarray(embedding_vector(text, dimension), dtype=np.float32)
    return vector / np.linalg.norm(vector)


def test_openai_query_embedding_uses_the_same_model(tmp_path, docs):
    """OpenAI: 検索の問い合わせも同じモデルで 1 件だけ埋め込み、float で受け取る。"""
    with OpenAIFake() as fake:
        settings = rag_settings(
            tmp_path / "s",
            "rag.embedding_model=openai/text-embedding-3-small",
            *_provider_overrides("openai", fake.base_url, 4),
            environ={"OPENAI_API_KEY": "sk-q"},
        )
        ingest(settings, [docs])
        fake.reset()
        outcome = DocumentSearch(settings).search("WPA3 encryption", 3)
        (request,) = fake.requests
        assert request.json() == {
            "model": "text-embedding-3-small",
            "input": ["WPA3 encryption"],
            "encoding_format": "float",
        }
        assert "WPA3" in outcome.hits[0].chunk.text


def test_ollama_embed_is_batched_in_order(tmp_path, docs):
    """Ollama: ``/api/embed`` に ``input`` の配列をバッチごとに送り、行はチャンクの順。"""
    with OllamaFake() as fake:
        settings = rag_settings(
            tmp_path / "s",
            "rag.embedding_model=ollama/nomic-embed-text",
            *_provider_overrides("ollama", fake.base_url, 2),
        )
        report = ingest(settings, [docs])
        bodies = [r.json() for r in fake.requests if r.path == "/api/embed"]
        assert bodies and all(b["model"] == "nomic-embed-text" and len(b["input"]) <= 2 for b in bodies)
        sent = [text for b in bodies for text in b["input"]]
        store = VectorStore.load(tmp_path / "s")
        assert sent == [c.text for c in store.chunks]
        for row, chunk in enumerate(store.chunks):
            np.testing.assert_allclose(store.vectors[row], _unit(chunk.text, 8), rtol=1e-5)
        assert store.manifest.model == "ollama/nomic-embed-text" and report.tokens > 0
        fake.reset()
        DocumentSearch(settings).search("保証期間", 2)
        assert [r.json()["input"] for r in fake.requests] == [["保証期間"]]


def test_gemini_batch_embed_contents_with_task_types(tmp_path, docs):
    """Gemini: ``batchEmbedContents`` に ``models/M`` と taskType (文書は RETRIEVAL_DOCUMENT、問い合わせは RETRIEVAL_QUERY)。"""
    with GeminiFake(rule_based=True, api_key="g-key") as fake:
        settings = rag_settings(
            tmp_path / "s",
            "rag.embedding_model=gemini/gemini-embedding-001",
            *_provider_overrides("gemini", fake.base_url, 2),
            environ={"GEMINI_API_KEY": "g-key"},
        )
        ingest(settings, [docs])
        requests = fake.requests
        assert {r.path for r in requests} == {"/v1beta/models/gemini-embedding-001:batchEmbedContents"}
        assert all(r.headers["x-goog-api-key"] == "g-key" and "g-key" not in r.path for r in requests)
        items = [item for body in fake.bodies() for item in body["requests"]]
        assert all(len(body["requests"]) <= 2 for body in fake.bodies())
        assert {i["model"] for i in items} == {"models/gemini-embedding-001"}
        assert {i["taskType"] for i in items} == {"RETRIEVAL_DOCUMENT"}
        store = VectorStore.load(tmp_path / "s")
        assert [i["content"]["parts"][0]["text"] for i in items] == [c.text for c in store.chunks]
        for row, chunk in enumerate(store.chunks):
            expected = np.asarray(hash_vector(chunk.text + "RETRIEVAL_DOCUMENT", 8), dtype=np.float32)
            np.testing.assert_allclose(store.vectors[row], expected / np.linalg.norm(expected), rtol=1e-5)
        fake.server.requests.clear()
        DocumentSearch(settings).search("型番", 1)
        (query,) = fake.bodies()
        assert query["requests"][0]["taskType"] == "RETRIEVAL_QUERY"
