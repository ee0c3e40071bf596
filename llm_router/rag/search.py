"""検索: ベクトル (コサイン) と語彙 (文字 2-gram の BM25) を reciprocal rank fusion で合わせる。

RRF (Cormack, Clarke & Büttcher 2009, "Reciprocal Rank Fusion outperforms Condorcet and individual Rank
Learning Methods"): 各ランキングでの順位 r について ``1 / (rrf_k + r)`` を足し合わせる。値の尺度が違う
(コサインと BM25) ものを、順位だけで公平に混ぜられる。``rag.hybrid=false`` ならベクトルだけ。

:class:`DocumentSearch` はサーバーの ``search_documents`` と CLI が共有する入口: ストアを遅延して開き、
別のプロセス (CLI の取り込み) がストアを書き換えたら (``CURRENT`` が変わったら) 読み直す。
問い合わせの埋め込みに失敗したとき (キーが無い、プロバイダが落ちている) は語彙検索だけで答え、その旨を添える。
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llm_router.core.schemas.errors import LLMRouterError
from llm_router.rag.embedding import LEXICAL_NOTICE, ClientEmbedder, HashingEmbedder, make_embedder
from llm_router.rag.embedding import resolve_embedding_spec as resolve_spec
from llm_router.rag.schemas import EmbeddingModelMismatchError, Hit
from llm_router.rag.store import VectorStore, current_generation
from llm_router.rag.store import top_k as top_k_indices

if TYPE_CHECKING:
    from llm_router.config.schema import RagConfig
    from llm_router.config.settings import Settings

logger = logging.getLogger(__name__)

NO_DOCUMENTS = (
    "no documents have been ingested yet (まだ文書が取り込まれていません。"
    "`uv run python -m llm_router.rag ingest <フォルダ>` で取り込んでください)"
)


def candidate_count(top_k: int, config: RagConfig) -> int:
    """融合の前に各ランキングから取る候補の数。"""
    return max(top_k * config.candidate_multiplier, config.min_candidates)


def rrf_fuse(rankings: list[np.ndarray], rrf_k: int) -> dict[int, float]:
    """順位のリスト (行番号の配列、良い順) を RRF の値にまとめる。"""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, row in enumerate(ranking.tolist(), start=1):
            fused[row] = fused.get(row, 0.0) + 1.0 / (rrf_k + rank)
    return fused


def hybrid_search(
    store: VectorStore,
    query: str,
    query_vector: np.ndarray | None,
    top_k: int,
    config: RagConfig,
    hybrid: bool | None = None,
) -> list[Hit]:
    """ストアを検索する。``query_vector`` が ``None`` なら語彙検索だけ。

    Args:
        store: 検索するストア。
        query: 問い合わせの文字列 (語彙検索に使う)。
        query_vector: 正規化済みの問い合わせベクトル。
        top_k: 返す件数。
        config: ``rag`` の設定 (``hybrid``, ``rrf_k``, BM25 のパラメータ)。
        hybrid: ``config.hybrid`` の上書き。
    """
    if store.count == 0 or top_k <= 0:
        return []
    use_hybrid = config.hybrid if hybrid is None else hybrid
    candidates = candidate_count(top_k, config)
    lexical: np.ndarray | None = None
    if use_hybrid or query_vector is None:
        lexical = store.lexical.scores(query, config.bm25_k1, config.bm25_b)
        lexical_rows = top_k_indices(lexical, candidates)
        lexical_rows = lexical_rows[lexical[lexical_rows] > 0]
    if query_vector is None:
        ranked = [(int(r), float(lexical[r])) for r in lexical_rows[:top_k]]  # type: ignore[index]
    elif not use_hybrid:
        rows, scores = store.search(query_vector, top_k)
        ranked = [(int(r), float(v)) for r, v in zip(rows, scores, strict=True)]
    else:
        vector_rows, _ = store.search(query_vector, candidates)
        fused = rrf_fuse([vector_rows, lexical_rows], config.rrf_k)
        ranked = sorted(fused.items(), key=lambda item: (-item[1], item[0]))[:top_k]
    return [_hit(store, row, score, query_vector, lexical) for row, score in ranked]


def _hit(
    store: VectorStore, row: int, score: float, query_vector: np.ndarray | None, lexical: np.ndarray | None
) -> Hit:
    """行 ``row`` の検索結果 (ベクトルと語彙の値を、分かる方だけ添える)。"""
    vector_score = float(store.vectors[row] @ query_vector) if query_vector is not None else None
    lexical_score = float(lexical[row]) if lexical is not None else None
    return Hit(store.chunks[row], score, vector_score, lexical_score)


def display_source(source: str, base: Path | None = None) -> str:
    """表示用のパス: 作業フォルダの下なら相対パス、それ以外は絶対パス。"""
    base = base or Path.cwd()
    try:
        return str(Path(source).relative_to(base))
    except ValueError:
        return source


def hit_to_dict(hit: Hit, base: Path | None = None) -> dict[str, Any]:
    """検索結果 1 件を、引用を表示できる形 (``source``, ``location``, ``score``, ``text``) にする。"""
    out: dict[str, Any] = {
        "source": display_source(hit.chunk.source, base),
        "location": hit.chunk.location,
        "score": round(hit.score, 6),
        "text": hit.chunk.text,
    }
    if hit.chunk.page is not None:
        out["page"] = hit.chunk.page
    if hit.vector_score is not None:
        out["vector_score"] = round(hit.vector_score, 6)
    if hit.lexical_score is not None:
        out["lexical_score"] = round(hit.lexical_score, 6)
    return out


@dataclass
class SearchOutcome:
    """:meth:`DocumentSearch.search` の結果: 検索結果と、利用者に伝える注意書き。"""

    hits: list[Hit]
    model: str | None = None
    notices: list[str] = field(default_factory=list)
    empty_store: bool = False


class DocumentSearch:
    """ストアを開いて検索する入口 (サーバーのツールと CLI が共有)。スレッド安全。"""

    def __init__(self, settings: Settings, router: Any = None) -> None:
        """設定と (あれば) 共有のモデルルーターを受け取る。ストアはまだ開かない。"""
        self.settings = settings
        self.root = Path(settings.config.rag.store_path).expanduser()
        self._router = router
        self._lock = threading.Lock()
        self._store: VectorStore | None = None
        self._embedder: HashingEmbedder | ClientEmbedder | None = None
        self._embedder_spec: str | None = None

    def store(self) -> VectorStore | None:
        """いまのストア (書き換えられていれば読み直す。無ければ ``None``)。"""
        generation = current_generation(self.root)
        with self._lock:
            if generation is None:
                self._store = None
            elif self._store is None or self._store.generation != generation:
                self._store = VectorStore.load(self.root)
            return self._store

    def _query_embedder(self, store: VectorStore) -> HashingEmbedder | ClientEmbedder:
        """ストアのモデルで問い合わせを埋め込む器 (設定のモデルと違えば拒む)。"""
        spec = resolve_spec(self.settings, store.manifest.model)
        store.check_model(spec)
        if self._embedder is None or self._embedder_spec != spec:
            self._embedder = make_embedder(self.settings, spec, self._router)
            self._embedder_spec = spec
        store.check_model(spec, self._embedder.dimension)
        return self._embedder

    def search(self, query: str, top_k: int | None = None, *, lexical_fallback: bool = True) -> SearchOutcome:
        """問い合わせで検索する。

        Args:
            query: 問い合わせの文字列。
            top_k: 返す件数 (既定は ``rag.top_k``)。
            lexical_fallback: 問い合わせの埋め込みに失敗したら語彙検索だけで答える (偽なら例外を投げる)。

        Raises:
            EmbeddingModelMismatchError: 設定のモデルがストアのモデルと違うとき。
            RagError: ストアが壊れているとき。
        """
        config = self.settings.config.rag
        k = config.top_k if top_k is None else top_k
        store = self.store()
        if store is None or store.count == 0:
            return SearchOutcome([], None, [NO_DOCUMENTS], empty_store=True)
        notices = [] if store.manifest.semantic else [LEXICAL_NOTICE]
        vector = None
        try:
            embedder = self._query_embedder(store)
            vector = embedder.embed([query], "query").vectors[0]
            store.check_model(embedder.spec, int(vector.shape[0]))
        except EmbeddingModelMismatchError:
            raise
        except LLMRouterError as exc:
            if not lexical_fallback:
                raise
            logger.warning("query embedding failed, answering with lexical search only: %s", exc)
            notices.append(
                f"vector search unavailable, lexical search only (ベクトル検索を使えないため語彙検索のみ): {exc}"
            )
        hits = hybrid_search(store, query, vector, k, config)
        return SearchOutcome(hits, store.manifest.model, notices)
