"""RAG: 文書の取り込み、チャンク分割、埋め込み、numpy のベクトルストア、ハイブリッド検索。

使い方は ``llm_router/rag/README.md``。コマンドラインは ``python -m llm_router.rag``。
取り込みの関数は ``llm_router.rag.ingest.ingest`` (同じ名前のモジュールを隠さないよう、ここでは出さない)。
"""

from llm_router.rag.hashing_embedder import hash_embed
from llm_router.rag.ingest import remove_sources
from llm_router.rag.schemas import (
    Chunk,
    Document,
    EmbeddingModelMismatchError,
    Hit,
    IngestReport,
    LoadError,
    RagError,
    Section,
    SourceRecord,
    StoreManifest,
)
from llm_router.rag.search import DocumentSearch, hybrid_search
from llm_router.rag.store import VectorStore

__all__ = [
    "Chunk",
    "Document",
    "DocumentSearch",
    "EmbeddingModelMismatchError",
    "Hit",
    "IngestReport",
    "LoadError",
    "RagError",
    "Section",
    "SourceRecord",
    "StoreManifest",
    "VectorStore",
    "hash_embed",
    "hybrid_search",
    "remove_sources",
]
