"""取り込みのテスト (demo/hashing と OpenAI の偽サーバー): 差分取り込み、置き換え、削除、モデルの不一致、部分的な失敗。"""

import numpy as np
import pytest

from llm_router.core.schemas.errors import MissingCredentialError, ProviderAuthError
from llm_router.rag.embedding import HASHING_SPEC, resolve_embedding_spec
from llm_router.rag.ingest import ingest, remove_sources
from llm_router.rag.schemas import EmbeddingModelMismatchError
from llm_router.rag.search import DocumentSearch
from llm_router.rag.store import VectorStore
from tests.fakes.openai_fake import OpenAIFake, embedding_vector
from tests.rag.conftest import rag_settings

OPENAI_MODEL = "openai/text-embedding-3-small"
KEY = {"OPENAI_API_KEY": "sk-test-rag"}


@pytest.fixture
def openai():
    """OpenAI の偽サーバー。"""
    with OpenAIFake() as fake:
        yield fake


def _openai_settings(store, fake, *overrides):
    """偽の OpenAI に向けた設定 (バッチは 2 件、再試行の待ちは短く)。"""
    return rag_settings(
        store,
        f"providers.openai.base_url={fake.base_url}",
        f"rag.embedding_model={OPENAI_MODEL}",
        "providers.openai.embedding_batch_size=2",
        "providers.openai.retry.initial_backoff_s=0.01",
        "providers.openai.retry.max_backoff_s=0.02",
        *overrides,
        environ=KEY,
    )


def _embedding_inputs(fake) -> list[str]:
    """偽サーバーに届いた埋め込みの入力 (届いた順)。"""
    return [text for r in fake.requests if r.path.endswith("/embeddings") for text in r.json()["input"]]


def test_demo_hashing_ingest_and_search(tmp_path, docs):
    """キーが無ければ demo/hashing で取り込み、検索でき、ストアは語彙的 (semantic=false) と記録される。"""
    settings = rag_settings(tmp_path / "store")
    report = ingest(settings, [docs])
    assert report.model == HASHING_SPEC
    assert len(report.added) == 3 and not report.failed
    store = VectorStore.load(tmp_path / "store")
    assert store.manifest.model == HASHING_SPEC and not store.manifest.semantic
    assert store.manifest.dimension == settings.config.rag.hashing_dimension
    outcome = DocumentSearch(settings).search("XK-4471Q の型番", 2)
    assert "XK-4471Q" in outcome.hits[0].chunk.text
    assert outcome.hits[0].chunk.location == "製品マニュアル > 概要"
    assert any("lexical" in n for n in outcome.notices)


def test_openai_embeddings_are_batched_in_order(tmp_path, docs, openai):
    """OpenAI: バッチの大きさごとに送り、行列の行はチャンクの順 (偽サーバーの決定的なベクトルと一致)。"""
    report = ingest(_openai_settings(tmp_path / "s", openai), [docs])
    requests = [r for r in openai.requests if r.path == "/v1/embeddings"]
    assert all(len(r.json()["input"]) <= 2 for r in requests)
    assert all(r.json()["model"] == "text-embedding-3-small" for r in requests)
    assert all(r.headers["authorization"] == "Bearer sk-test-rag" for r in requests)
    store = VectorStore.load(tmp_path / "s")
    assert store.manifest.model == OPENAI_MODEL and store.manifest.dimension == 8
    assert report.embedded_chunks == store.count == len(_embedding_inputs(openai))
    for row, chunk in enumerate(store.chunks):
        expected = np.asarray(embedding_vector(chunk.text, 8), dtype=np.float32)
        np.testing.assert_allclose(store.vectors[row], expected / np.linalg.norm(expected), rtol=1e-5)
    assert report.tokens > 0 and not report.tokens_estimated


def test_reingesting_unchanged_files_makes_no_embedding_request(tmp_path, docs, openai):
    """変わっていないファイルの取り込み直しは、埋め込みのリクエストを 1 つも送らない。"""
    settings = _openai_settings(tmp_path / "s", openai)
    ingest(settings, [docs])
    before = len(openai.requests)
    report = ingest(settings, [docs])
    assert len(openai.requests) == before
    assert len(report.unchanged) == 3 and not report.added and not report.updated


def test_a_changed_file_replaces_its_chunks_and_reuses_unchanged_paragraphs(tmp_path, docs, openai):
    """変わったファイルはチャンクが入れ替わり、変わっていない段落の埋め込みは再利用する。"""
    settings = _openai_settings(tmp_path / "s", openai, "rag.chunk_size=60", "rag.chunk_overlap=0")
    ingest(settings, [docs])
    faq = docs / "faq.txt"
    faq.write_text(faq.read_text() + "\nNew paragraph about firmware updates.\n", encoding="utf-8")
    openai.reset()
    report = ingest(settings, [docs])
    assert report.updated == [str(faq)] and len(report.unchanged) == 2
    assert _embedding_inputs(openai) == ["New paragraph about firmware updates."]
    assert report.reused_chunks == 2
    store = VectorStore.load(tmp_path / "s")
    texts = [c.text for c in store.chunks if c.source == str(faq)]
    assert texts[-1] == "New paragraph about firmware updates."
    assert len(texts) == 3 and store.sources[str(faq)].chunks == 3


def test_remove_deletes_a_source_and_its_search_results(tmp_path, docs):
    """remove はファイルのチャンクを消し、検索に出なくなる。相対パスでもフォルダでも指定できる。"""
    settings = rag_settings(tmp_path / "store")
    ingest(settings, [docs])
    assert remove_sources(settings, [str(docs / "manual.md")]) == [str(docs / "manual.md")]
    hits = DocumentSearch(settings).search("XK-4471Q", 5).hits
    assert all(h.chunk.source != str(docs / "manual.md") for h in hits)
    assert remove_sources(settings, [str(docs)]) == sorted([str(docs / "faq.txt"), str(docs / "notes.html")])
    assert DocumentSearch(settings).search("保証", 5).empty_store
    assert remove_sources(settings, [str(docs)]) == []


def test_another_model_is_refused_for_ingest_and_search(tmp_path, docs, openai):
    """ストアと違う埋め込みモデルでの取り込みと検索は、ストアのモデル名を含むエラーで拒む。"""
    ingest(_openai_settings(tmp_path / "s", openai), [docs])
    other = rag_settings(tmp_path / "s", "rag.embedding_model=demo/hashing")
    with pytest.raises(EmbeddingModelMismatchError, match=OPENAI_MODEL):
        ingest(other, [docs])
    with pytest.raises(EmbeddingModelMismatchError, match=OPENAI_MODEL):
        DocumentSearch(other).search("保証")


def test_another_hashing_dimension_is_refused(tmp_path, docs):
    """demo/hashing でも次元が変われば拒む。"""
    ingest(rag_settings(tmp_path / "s"), [docs])
    with pytest.raises(EmbeddingModelMismatchError, match="512"):
        ingest(rag_settings(tmp_path / "s", "rag.hashing_dimension=256"), [docs])


def test_auto_resolution(tmp_path):
    """auto: ストアがあればそのモデル、無ければキーのあるプロバイダ、どれも無ければ demo/hashing。"""
    no_keys = rag_settings(tmp_path)
    assert resolve_embedding_spec(no_keys) == HASHING_SPEC
    assert resolve_embedding_spec(rag_settings(tmp_path, environ=KEY)) == OPENAI_MODEL
    gemini = rag_settings(tmp_path, environ={"GEMINI_API_KEY": "g"})
    assert resolve_embedding_spec(gemini) == "gemini/gemini-embedding-001"
    assert resolve_embedding_spec(rag_settings(tmp_path, environ=KEY), store_model=HASHING_SPEC) == HASHING_SPEC


def test_auto_keeps_the_store_model_when_a_key_appears(tmp_path, docs, openai):
    """demo/hashing で作ったストアは、後でキーを設定しても auto のまま黙って別のモデルに切り替わらない。"""
    ingest(rag_settings(tmp_path / "s"), [docs])
    with_key = rag_settings(tmp_path / "s", f"providers.openai.base_url={openai.base_url}", environ=KEY)
    assert DocumentSearch(with_key).search("保証").model == HASHING_SPEC
    assert not openai.requests


def test_missing_key_names_the_variable(tmp_path, docs):
    """キーの要るモデルでキーが無ければ、設定すべき .env の変数名を含むエラー。"""
    settings = rag_settings(tmp_path / "s", f"rag.embedding_model={OPENAI_MODEL}")
    with pytest.raises(MissingCredentialError, match="OPENAI_API_KEY"):
        ingest(settings, [docs])
    assert VectorStore.load(tmp_path / "s") is None


def test_unreadable_files_are_reported_by_name_and_the_rest_goes_on(tmp_path, docs):
    """壊れたファイルと存在しないパスは名前と理由が報告され、残りは取り込まれる。"""
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 this is not a pdf")
    report = ingest(rag_settings(tmp_path / "s"), [docs, tmp_path / "missing.md"])
    failed = dict(report.failed)
    assert set(failed) == {str(docs / "broken.pdf"), str(tmp_path / "missing.md")}
    assert "PDF" in failed[str(docs / "broken.pdf")]
    assert len(report.added) == 3


def test_a_provider_failure_midway_keeps_the_files_already_embedded(tmp_path, openai):
    """埋め込みの途中でプロバイダが失敗したら、埋め込みが揃ったファイルだけを保存し、残りは失敗として報告する。"""
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("alpha one.\n\nalpha two.\n", encoding="utf-8")
    (folder / "b.txt").write_text("beta one.\n\nbeta two.\n", encoding="utf-8")
    settings = _openai_settings(tmp_path / "s", openai, "rag.chunk_size=20", "rag.chunk_overlap=0")
    openai.add_embeddings()
    openai.add_error(401, "Incorrect API key provided", endpoint="embeddings")
    report = ingest(settings, [folder])
    assert report.added == [str(folder / "a.txt")]
    assert [s for s, _ in report.failed] == [str(folder / "b.txt")]
    assert "Incorrect API key" in report.failed[0][1] and "sk-test-rag" not in report.failed[0][1]
    store = VectorStore.load(tmp_path / "s")
    assert set(store.sources) == {str(folder / "a.txt")}
    openai.reset()
    again = ingest(settings, [folder])
    assert again.added == [str(folder / "b.txt")] and again.unchanged == [str(folder / "a.txt")]


def test_a_provider_failure_before_anything_is_embedded_raises(tmp_path, docs, openai):
    """最初のバッチから失敗すれば、何も保存せずにエラーを投げる。"""
    openai.add_error(401, "Incorrect API key provided", endpoint="embeddings")
    with pytest.raises(ProviderAuthError):
        ingest(_openai_settings(tmp_path / "s", openai), [docs])
    assert VectorStore.load(tmp_path / "s") is None


def test_a_transient_error_is_retried(tmp_path, docs, openai):
    """503 は再試行され、取り込みは成功する (クライアントの再試行と同じ規則)。"""
    openai.add_error(503, "overloaded", endpoint="embeddings")
    report = ingest(_openai_settings(tmp_path / "s", openai), [docs])
    assert not report.failed and len(report.added) == 3


def test_prune_removes_files_deleted_from_the_folder(tmp_path, docs):
    """--prune: 指定したフォルダの下で消えたファイルのチャンクをストアからも消す (prune なしでは残す)。"""
    settings = rag_settings(tmp_path / "s")
    ingest(settings, [docs])
    (docs / "faq.txt").unlink()
    kept = ingest(settings, [docs])
    assert not kept.removed and str(docs / "faq.txt") in VectorStore.load(tmp_path / "s").sources
    pruned = ingest(settings, [docs], prune=True)
    assert pruned.removed == [str(docs / "faq.txt")]
    assert str(docs / "faq.txt") not in VectorStore.load(tmp_path / "s").sources


def test_concurrent_ingests_into_one_store_keep_every_file(tmp_path, docs):
    """同じストアへ同時に 2 つの取り込みが走っても (排他ロックで順番に)、どちらのファイルも残る。

    A を最初のファイルで止めている間に B を始める。ロックが無ければ B は先に保存を終え、その後 A が
    (B を知らない古い世代から作った) ストアで上書きして B のファイルが消える。
    """
    import threading

    other = tmp_path / "other"
    other.mkdir()
    (other / "x.txt").write_text("別のフォルダの文書です。", encoding="utf-8")
    settings = rag_settings(tmp_path / "s")
    inside, release, b_done = threading.Event(), threading.Event(), threading.Event()

    class HoldFirstFile:
        """最初のファイルで止まる進み具合。"""

        def file(self, done, total, name):
            """A が中にいることを知らせ、解放されるまで待つ。"""
            inside.set()
            release.wait(30)

        def chunks(self, count):
            """何もしない。"""

        def batch(self, done, total):
            """何もしない。"""

    a = threading.Thread(target=ingest, args=(settings, [docs]), kwargs={"progress": HoldFirstFile()})
    b = threading.Thread(target=lambda: (ingest(settings, [other]), b_done.set()))
    a.start()
    assert inside.wait(30)
    b.start()
    # ロックがあれば B は A が終わるまで待つので、期限つきで B の完了を待ってから A を放す
    b_done.wait(1.0)
    release.set()
    a.join(60)
    b.join(60)
    assert b_done.is_set()
    assert len(VectorStore.load(tmp_path / "s").sources) == 4
