"""文字 n-gram の特徴ハッシングの再輸出 (定義は :mod:`llm_router.core.hashing_embedder`)。

デモのクライアント (core) と RAG の両方が使うので、定義は下の層の core に置く (RAG → core の向きだけになる)。
"""

from llm_router.core.hashing_embedder import codepoints, hash_embed, ngram_hashes, normalize_text

__all__ = ["codepoints", "hash_embed", "ngram_hashes", "normalize_text"]
