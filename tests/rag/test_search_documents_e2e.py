"""エンドツーエンド: 本物のサーバープロセスで、エージェントのランが ``search_documents`` を呼び、引用つきの結果が戻る。

1. OpenAI の偽サーバー (規則モード) をチャットと埋め込みの上流にし、その埋め込みで取り込んだストアを検索する。
2. API キーが無い (demo/scripted と demo/hashing) ときも、同じ流れで文書が見つかる。
"""

from __future__ import annotations

import pytest

from llm_router.rag.ingest import ingest
from tests.fakes.openai_fake import OpenAIFake
from tests.rag.conftest import rag_settings
from tests.realtime.harness import ProtocolClient, ServerProcess

KEY = "sk-test-rag-e2e-0123456789"


def _events(client: ProtocolClient, run_id: str) -> list[dict]:
    """ラン ``run_id`` のイベント (受信順)。"""
    return [d for _, d in client.events if isinstance(d, dict) and d.get("run_id") == run_id]


def _search_result(client: ProtocolClient, run_id: str) -> dict:
    """ランの中の search_documents の tool_result イベント。"""
    return next(e for e in _events(client, run_id) if e["type"] == "tool_result" and e["name"] == "search_documents")


@pytest.mark.timeout(90)
def test_an_agent_run_over_the_realtime_protocol_cites_the_ingested_document(tmp_path, docs):
    """OpenAI (偽) のモデルが search_documents を呼び、型番の文書が出典・位置つきで返り、答えに引用される。"""
    store = tmp_path / "store"
    with OpenAIFake(rules=True) as fake:
        overrides = [
            f"providers.openai.base_url={fake.base_url}",
            "providers.openai.retry.initial_backoff_s=0.01",
            "agent.model=openai/gpt-4.1-mini",
            f"rag.store_path={store}",
        ]
        report = ingest(rag_settings(store, *overrides, environ={"OPENAI_API_KEY": KEY}), [docs])
        assert report.model == "openai/text-embedding-3-small"
        fake.reset()
        with ServerProcess(overrides=overrides, secrets={"OPENAI_API_KEY": KEY}) as server:
            with ProtocolClient(server.url) as client:
                ack = client.start()
                assert {"name": "search_documents", "executor": "server"} in ack["tools"]
                run_id = client.send_message(ack["thread_id"], 'search_documents {"query": "XK-4471Q", "top_k": 2}')[
                    "run_id"
                ]
                end = client.wait_run_end(run_id, timeout=60)
                assert end["type"] == "run_finished", end
                result = _search_result(client, run_id)
                assert result["is_error"] is False
                passages = result["result"]["results"]
                assert len(passages) == 2
                top = passages[0]
                assert top["source"] == str(docs / "manual.md") and top["location"] == "製品マニュアル > 概要"
                assert "XK-4471Q" in top["text"] and isinstance(top["score"], float)
                assert "XK-4471Q" in end["text"]
            embeds = [r.json() for r in fake.requests if r.path == "/v1/embeddings"]
            assert embeds == [{"model": "text-embedding-3-small", "input": ["XK-4471Q"], "encoding_format": "float"}]
            assert KEY not in server.log_text()


@pytest.mark.timeout(90)
def test_the_demo_model_finds_documents_without_any_key(tmp_path, docs):
    """キーが 1 つも無くても (demo/scripted + demo/hashing)、ランが search_documents で文書を見つける。"""
    store = tmp_path / "store"
    ingest(rag_settings(store), [docs])
    with ServerProcess(overrides=[f"rag.store_path={store}"]) as server, ProtocolClient(server.url) as client:
        ack = client.start()
        run_id = client.send_message(ack["thread_id"], "保証期間について資料を検索して")["run_id"]
        end = client.wait_run_end(run_id, timeout=60)
        assert end["type"] == "run_finished", end
        result = _search_result(client, run_id)["result"]
        assert result["embedding_model"] == "demo/hashing"
        assert any("保証期間" in p["text"] for p in result["results"])
        assert "保証期間" in end["text"]
