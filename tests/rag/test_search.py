"""語彙検索 (文字 2-gram の BM25) とハイブリッド検索 (RRF) のテスト。"""

import numpy as np

from llm_router.config.schema import RagConfig
from llm_router.rag.chunking import content_hash
from llm_router.rag.embedding import normalize_rows
from llm_router.rag.lexical import LexicalIndex
from llm_router.rag.schemas import Chunk, SourceRecord
from llm_router.rag.search import hybrid_search, rrf_fuse
from llm_router.rag.store import VectorStore

TEXTS = [
    "ルーターの初期設定の手順を説明します。",
    "型番 XK-4471Q のファームウェアを更新するには管理画面を開きます。",
    "The router supports IPv6 and WPA3.",
    "無線 LAN の電波が弱いときは設置場所を見直します。",
    "保証期間は購入日から一年間です。",
]


def test_bm25_prefers_the_document_with_the_rare_term():
    """BM25: 珍しい語 (型番) を含む文書が最上位、語の無い文書は 0。"""
    index = LexicalIndex.empty().updated(None, TEXTS)
    scores = index.scores("xk-4471q")
    assert int(np.argmax(scores)) == 1
    assert scores[4] == 0


def test_bm25_works_for_japanese_without_a_tokenizer():
    """日本語の語句も文字 2-gram で見つかる。"""
    index = LexicalIndex.empty().updated(None, TEXTS)
    assert int(np.argmax(index.scores("保証期間"))) == 4
    assert int(np.argmax(index.scores("電波が弱い"))) == 3


def test_incremental_update_equals_a_full_rebuild():
    """文書を消して足した索引は、最初から作った索引と同じ値を出す。"""
    full = LexicalIndex.empty().updated(None, [TEXTS[0], TEXTS[2], TEXTS[3], "新しい文書の XK-4471Q"])
    step = LexicalIndex.empty().updated(None, TEXTS)
    keep = np.array([True, False, True, True, False])
    step = step.updated(keep, ["新しい文書の XK-4471Q"])
    for query in ("xk-4471q", "ルーター", "IPv6", "新しい"):
        np.testing.assert_allclose(step.scores(query), full.scores(query), rtol=1e-6)


def test_rrf_fuse_sums_reciprocal_ranks():
    """RRF: 各ランキングの 1 / (k + 順位) を足す。"""
    fused = rrf_fuse([np.array([3, 1]), np.array([1, 2])], 60)
    assert fused[1] == 1 / 62 + 1 / 61
    assert fused[3] == 1 / 61 and fused[2] == 1 / 62


def _store_with_blind_vectors() -> tuple[VectorStore, np.ndarray]:
    """型番の文書のベクトルだけが問い合わせと逆向きのストア (ベクトル検索では見つからない)。"""
    rng = np.random.default_rng(0)
    query = normalize_rows(rng.standard_normal((1, 16)))[0]
    filler = [f"関係のない文書 {i} です。" for i in range(60)]
    texts = [*filler, TEXTS[1]]
    vectors = normalize_rows(query + 0.3 * rng.standard_normal((len(texts), 16)))
    vectors[-1] = -query
    chunks = [Chunk("/a.txt", t, "", content_hash(t), ordinal=i) for i, t in enumerate(texts)]
    record = SourceRecord("/a.txt", "h", "s", len(texts), "txt", 0.0)
    return VectorStore.empty("m/m", 16).updated(set(), chunks, vectors, {"/a.txt": record}), query


def test_hybrid_search_finds_an_exact_product_code_that_the_vectors_miss():
    """ベクトルでは最下位の文書も、型番が完全一致すればハイブリッド検索で上位に入る。"""
    store, query = _store_with_blind_vectors()
    config = RagConfig()
    vector_only = hybrid_search(store, "XK-4471Q", query, 5, config, hybrid=False)
    assert all("XK-4471Q" not in hit.chunk.text for hit in vector_only)
    hybrid = hybrid_search(store, "XK-4471Q", query, 5, config, hybrid=True)
    found = [hit for hit in hybrid if "XK-4471Q" in hit.chunk.text]
    assert len(found) == 1
    assert found[0].lexical_score > 0 and found[0].vector_score < 0


def test_lexical_only_search_when_there_is_no_query_vector():
    """問い合わせベクトルが無い (埋め込みに失敗した) ときは語彙検索だけで答える。"""
    store, _ = _store_with_blind_vectors()
    hits = hybrid_search(store, "XK-4471Q", None, 10, RagConfig())
    # 型番の文書が最上位。ほかは "44" などの 2-gram が一致した文書だけで、一致の無い文書は返さない
    assert "XK-4471Q" in hits[0].chunk.text
    assert all(h.vector_score is None and h.score == h.lexical_score > 0 for h in hits)
    assert len(hits) < 10


def test_vector_only_scores_are_cosines():
    """hybrid=false ならスコアはコサイン類似度そのもの (大きい順)。"""
    store, query = _store_with_blind_vectors()
    hits = hybrid_search(store, "x", query, 4, RagConfig(hybrid=False))
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(abs(h.score - h.vector_score) < 1e-6 for h in hits)
