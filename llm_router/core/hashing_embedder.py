"""オフラインの埋め込み: 文字 n-gram の特徴ハッシング (``demo/hashing``)。

API キーも Ollama も無いときに RAG を動かし続けるための埋め込み。意味ではなく **文字の並び** を
比べる (語彙的であって意味的ではない) ので、言い換えや翻訳には弱い。

- 前処理: NFKC 正規化 (全角英数字を半角に) + casefold + 空白の連続を 1 つに。
- 特徴: 文字 2-gram と 3-gram、および非 ASCII 文字 (日本語の漢字・かな) の 1-gram。
  日本語は単語の区切りが無いので、形態素解析の代わりに文字 n-gram を使う。
- ハッシュ: Python の ``hash()`` はプロセスごとに種が変わる (PYTHONHASHSEED) ので使わず、
  符号位置に対する FNV-1a 風の混合と splitmix64 の仕上げを numpy の uint64 演算で計算する。
  同じ入力はどのプロセスでも同じベクトルになる。
- 符号付きハッシング (Weinberger et al. 2009, "Feature Hashing for Large Scale Multitask Learning"):
  ハッシュの最上位ビットで +1/-1 を決め、衝突による偏りを打ち消す。
- 出力: float32、行ごとに L2 正規化 (全ゼロの行はゼロのまま)。
"""

from __future__ import annotations

import unicodedata

import numpy as np

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x100000001B3)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_NGRAM_SIZES = (1, 2, 3)


def normalize_text(text: str) -> str:
    """特徴を取る前の正規化 (NFKC、casefold、空白の連続を 1 つの空白に)。"""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def codepoints(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """全テキストの符号位置を 1 本の配列につなぎ、各文字がどのテキストに属するかを返す。"""
    normalized = [normalize_text(t) for t in texts]
    joined = "".join(normalized)
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    lengths = np.fromiter((len(t) for t in normalized), dtype=np.int64, count=len(normalized))
    owner = np.repeat(np.arange(len(normalized), dtype=np.int64), lengths)
    return codes, owner


def _splitmix(h: np.ndarray) -> np.ndarray:
    """splitmix64 の仕上げ (上位ビットまでよく混ぜる)。"""
    h = h ^ (h >> np.uint64(30))
    h = h * _MIX1
    h = h ^ (h >> np.uint64(27))
    h = h * _MIX2
    return h ^ (h >> np.uint64(31))


def ngram_hashes(codes: np.ndarray, owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """長さ ``n`` の文字 n-gram のハッシュ (uint64) と、その n-gram が属するテキストの番号。

    テキストの境目をまたぐ n-gram は除く。``n`` は種にも混ぜるので、1-gram と 2-gram は別の特徴になる。
    """
    count = len(codes) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64), np.empty(0, dtype=np.int64)
    with np.errstate(over="ignore"):
        h = np.full(count, _FNV_OFFSET ^ np.uint64(n), dtype=np.uint64)
        for k in range(n):
            h = (h ^ codes[k : k + count]) * _FNV_PRIME
        h = _splitmix(h)
    valid = owner[:count] == owner[n - 1 : n - 1 + count]
    return h[valid], owner[:count][valid]


def hash_embed(texts: list[str], dimension: int) -> np.ndarray:
    """テキストを文字 n-gram の特徴ハッシングで埋め込む。

    Args:
        texts: 埋め込むテキスト。
        dimension: ベクトルの次元 (``rag.hashing_dimension``)。

    Returns:
        ``(len(texts), dimension)`` の float32 行列。各行は L2 正規化済み (特徴が無い行はゼロ)。
    """
    if dimension <= 0:
        raise ValueError("dimension must be positive")
    rows = len(texts)
    if rows == 0:
        return np.zeros((0, dimension), dtype=np.float32)
    codes, owner = codepoints(texts)
    flat = np.zeros(rows * dimension, dtype=np.float64)
    for n in _NGRAM_SIZES:
        hashes, where = ngram_hashes(codes, owner, n)
        if n == 1:
            # 1 文字の特徴は日本語 (非 ASCII) だけ: 英字 1 文字は情報が少なく雑音になる
            # (1-gram はテキストの境目をまたがないので、ハッシュは ``codes`` と同じ並び)
            keep = codes >= 128
            hashes, where = hashes[keep], where[keep]
        buckets = (hashes % np.uint64(dimension)).astype(np.int64)
        signs = np.where((hashes >> np.uint64(63)) == 1, -1.0, 1.0)
        flat += np.bincount(where * dimension + buckets, weights=signs, minlength=rows * dimension)
    matrix = flat.reshape(rows, dimension)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    np.divide(matrix, norms, out=matrix, where=norms > 0)
    return matrix.astype(np.float32)
