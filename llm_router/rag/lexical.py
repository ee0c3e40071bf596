"""語彙検索: 文字 2-gram の BM25 (日本語も形態素解析なしで扱える)。

- 語: 正規化 (NFKC + casefold + 空白の連続を 1 つに) したテキストの文字 2-gram。
  語の ID は 2-gram の 64 ビットハッシュの上位 32 ビット (:func:`hashing_embedder.ngram_hashes`)。
- 索引: 語の ID で並べた転置リスト (``terms`` / ``docs`` / ``tf``) と文書の長さ ``doc_len``。
  すべて numpy 配列なので、そのまま ``.npy`` に保存して memory map で読める。
- 採点: Okapi BM25 (Robertson & Zaragoza 2009, "The Probabilistic Relevance Framework: BM25 and Beyond")。
  IDF は Lucene と同じ ``log(1 + (N - df + 0.5) / (df + 0.5))`` で、負にならない。
- 差分更新: 消す文書の転置リストを落として番号を詰め、新しい文書の転置リストを足して並べ直す。
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llm_router.rag.hashing_embedder import codepoints, ngram_hashes

_BUILD_BATCH = 2000
FILES = ("lex_terms.npy", "lex_docs.npy", "lex_tf.npy", "lex_doc_len.npy")


def query_terms(text: str) -> np.ndarray:
    """検索語の 2-gram の ID (重複なし)。"""
    codes, owner = codepoints([text])
    hashes, _ = ngram_hashes(codes, owner, 2)
    return np.unique((hashes >> np.uint64(32)).astype(np.uint32))


def _postings(texts: list[str], first_doc: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """テキストの転置リストの材料 (語, 文書番号, 出現数) と各文書の長さ (2-gram の数)。"""
    codes, owner = codepoints(texts)
    hashes, where = ngram_hashes(codes, owner, 2)
    terms = (hashes >> np.uint64(32)).astype(np.uint64)
    keys, counts = np.unique((where.astype(np.uint64) << np.uint64(32)) | terms, return_counts=True)
    docs = (keys >> np.uint64(32)).astype(np.int64) + first_doc
    doc_len = np.bincount(where, minlength=len(texts)).astype(np.int32)
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.uint32), docs.astype(np.int32), counts.astype(np.float32), doc_len


@dataclass
class LexicalIndex:
    """文字 2-gram の転置索引 (語の ID で並べてある)。"""

    terms: np.ndarray
    docs: np.ndarray
    tf: np.ndarray
    doc_len: np.ndarray

    @classmethod
    def empty(cls) -> LexicalIndex:
        """空の索引。"""
        return cls(np.zeros(0, np.uint32), np.zeros(0, np.int32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    @property
    def count(self) -> int:
        """文書 (チャンク) の数。"""
        return len(self.doc_len)

    def updated(self, keep: np.ndarray | None, new_texts: list[str]) -> LexicalIndex:
        """``keep`` (真の文書だけ残す) を適用し、``new_texts`` を後ろに足した新しい索引を返す。"""
        terms, docs, tf, doc_len = self.terms, self.docs, self.tf, self.doc_len
        if keep is not None and not keep.all():
            new_ids = np.cumsum(keep, dtype=np.int64) - 1
            alive = keep[docs]
            terms, tf = terms[alive], tf[alive]
            docs = new_ids[docs[alive]].astype(np.int32)
            doc_len = doc_len[keep]
        parts_t, parts_d, parts_f, parts_l = [terms], [docs], [tf], [doc_len]
        first = len(doc_len)
        for start in range(0, len(new_texts), _BUILD_BATCH):
            t, d, f, lengths = _postings(new_texts[start : start + _BUILD_BATCH], first + start)
            parts_t.append(t)
            parts_d.append(d)
            parts_f.append(f)
            parts_l.append(lengths)
        terms = np.concatenate(parts_t)
        # 安定な並べ替え: 既存分も新規分もそれぞれ語の順に並んだ連なりなので、実質は併合になる
        order = np.argsort(terms, kind="stable")
        return LexicalIndex(
            terms[order],
            np.concatenate(parts_d)[order],
            np.concatenate(parts_f)[order],
            np.concatenate(parts_l).astype(np.int32),
        )

    def scores(self, query: str, k1: float = 1.2, b: float = 0.75) -> np.ndarray:
        """全文書の BM25 の値 (一致する語が無い文書は 0)。"""
        n = self.count
        out = np.zeros(n, dtype=np.float32)
        if n == 0:
            return out
        wanted = query_terms(query)
        lo = np.searchsorted(self.terms, wanted, side="left")
        hi = np.searchsorted(self.terms, wanted, side="right")
        present = hi > lo
        if not present.any():
            return out
        lo, hi = lo[present], hi[present]
        df = (hi - lo).astype(np.float64)
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        index = np.concatenate([np.arange(a, z) for a, z in zip(lo, hi, strict=True)])
        weights = np.repeat(idf, hi - lo)
        docs = self.docs[index]
        tf = self.tf[index].astype(np.float64)
        lengths = self.doc_len.astype(np.float64)
        average = max(float(lengths.mean()), 1.0)
        norm = k1 * (1.0 - b + b * lengths[docs] / average)
        contributions = weights * tf * (k1 + 1.0) / (tf + norm)
        return np.bincount(docs, weights=contributions, minlength=n).astype(np.float32)

    def save(self, folder: Path, writer) -> None:
        """4 つの配列を ``writer(path, array)`` で書く (ストアの原子的な保存の一部)。"""
        for name, array in zip(FILES, (self.terms, self.docs, self.tf, self.doc_len), strict=True):
            writer(folder / name, array)

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> LexicalIndex:
        """保存した索引を読む (既定は memory map)。"""
        return cls(*(_load_array(folder / name, mmap) for name in FILES))


def _load_array(path: Path, mmap: bool) -> np.ndarray:
    """``.npy`` を読む (``mmap`` なら読み取り専用の memory map、ndarray として返す)。"""
    return np.asarray(np.load(path, mmap_mode="r" if mmap else None))
