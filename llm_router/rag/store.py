"""ベクトルストア: 正規化済みベクトルの float32 行列 1 つ + 横に置くメタデータ、原子的な保存、memory map での読み込み。

フォルダの形::

    <rag.store_path>/
      CURRENT                 いま有効な世代のフォルダ名 (1 行)
      .lock                   取り込み・削除の間だけ持つ排他ロック (fcntl.flock)
      gen-<時刻>-<乱数>/
        manifest.json         埋め込みモデル、次元、件数、形式の版
        vectors.npy           (件数, 次元) の float32。各行は L2 正規化済み
        chunks.jsonl          行ごとのチャンクのメタデータ (行列の行と同じ順)
        sources.json          ファイルごとの記録 (ハッシュ、チャンク数; 差分取り込みの判定)
        lex_*.npy             文字 2-gram の BM25 索引 (:mod:`lexical`)

保存は「一時フォルダにすべて書く → 各ファイルを fsync → フォルダを rename → ``CURRENT`` を一時ファイル +
fsync + ``os.replace`` で切り替える」。どこで止まっても ``CURRENT`` は前の世代の完全なフォルダを指したまま
(POSIX の rename は原子的)。読み手が読み込み中の世代を消さないよう、直前の世代は 1 つ残す。

検索は厳密なコサイン類似度: 正規化済みなので内積 = コサイン。1 件なら行列 × ベクトル、複数なら行列積 1 回、
上位 k 件は ``argpartition`` (O(n)) で選んでから、その k 件だけを並べる。
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from llm_router.rag.lexical import LexicalIndex
from llm_router.rag.schemas import (
    STORE_FORMAT_VERSION,
    Chunk,
    EmbeddingModelMismatchError,
    RagError,
    SourceRecord,
    StoreManifest,
)

CURRENT = "CURRENT"
LOCK = ".lock"


# ---------------------------------------------------------------- 上位 k 件


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """1 次元の値の大きい順に上位 ``k`` 件の番号。"""
    n = scores.shape[0]
    k = min(k, n)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        part = np.argpartition(scores, n - k)[n - k :]
    else:
        part = np.arange(n)
    return part[np.argsort(-scores[part], kind="stable")]


def top_k_rows(scores: np.ndarray, k: int) -> np.ndarray:
    """2 次元 (問い合わせ × 文書) の各行で上位 ``k`` 件の番号 (行ごとに値の大きい順)。"""
    n = scores.shape[1]
    k = min(k, n)
    if k <= 0:
        return np.zeros((scores.shape[0], 0), dtype=np.int64)
    part = np.argpartition(scores, n - k, axis=1)[:, n - k :] if k < n else np.tile(np.arange(n), (len(scores), 1))
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


# ---------------------------------------------------------------- 書き込みの道具 (fsync 付き)


def fsync_file(path: Path) -> None:
    """ファイルの中身をディスクへ書き出す。"""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """フォルダの項目 (rename の結果) をディスクへ書き出す。"""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_array(path: Path, array: np.ndarray) -> None:
    """``.npy`` を書いて fsync する。"""
    with open(path, "wb") as handle:
        np.save(handle, np.asarray(array), allow_pickle=False)
    fsync_file(path)


def write_text(path: Path, text: str) -> None:
    """UTF-8 のテキストを書いて fsync する。"""
    path.write_text(text, encoding="utf-8")
    fsync_file(path)


@contextlib.contextmanager
def store_lock(root: Path) -> Iterator[None]:
    """ストアを書き換える間の排他ロック (同時に 2 つの取り込みが走っても壊れないように)。"""
    import fcntl

    root.mkdir(parents=True, exist_ok=True)
    with open(root / LOCK, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def current_generation(root: Path) -> str | None:
    """``CURRENT`` が指す世代の名前 (ストアが無ければ ``None``)。"""
    try:
        return (root / CURRENT).read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------- ストア


@dataclass(eq=False, repr=False)
class VectorStore:
    """メモリ上 (または memory map) のストア 1 世代分。書き換えは新しいインスタンスを返す。

    各部分の形が合っていることは :meth:`load` が確かめる。
    """

    manifest: StoreManifest
    vectors: np.ndarray
    chunks: list[Chunk]
    sources: dict[str, SourceRecord]
    lexical: LexicalIndex
    generation: str | None = None

    @classmethod
    def empty(cls, model: str, dimension: int, semantic: bool = True) -> VectorStore:
        """空のストア。"""
        manifest = StoreManifest(model=model, dimension=dimension, semantic=semantic)
        return cls(manifest, np.zeros((0, dimension), np.float32), [], {}, LexicalIndex.empty())

    @property
    def count(self) -> int:
        """チャンクの数。"""
        return len(self.chunks)

    # ------------------------------------------------------------ モデルの確認

    def check_model(self, spec: str, dimension: int | None = None) -> None:
        """ストアを作ったモデル・次元と同じか確かめる。

        Raises:
            EmbeddingModelMismatchError: 違うとき (ストアのモデル名を含む)。
        """
        same_dimension = dimension is None or dimension == self.manifest.dimension
        if spec != self.manifest.model or not same_dimension:
            raise EmbeddingModelMismatchError(self.manifest.model, self.manifest.dimension, spec, dimension)

    # ------------------------------------------------------------ 検索

    def search(self, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """正規化済みの問い合わせベクトル 1 つで上位 ``k`` 件の (番号, コサイン類似度)。"""
        if self.count == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        scores = self.vectors @ np.asarray(query, dtype=np.float32)
        index = top_k(scores, k)
        return index, scores[index]

    def search_batch(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """複数の問い合わせを行列積 1 回で検索する。戻り値は (問い合わせ数, k) の番号と類似度。"""
        queries = np.asarray(queries, dtype=np.float32)
        if self.count == 0:
            empty = np.zeros((len(queries), 0))
            return empty.astype(np.int64), empty.astype(np.float32)
        scores = queries @ self.vectors.T
        index = top_k_rows(scores, k)
        return index, np.take_along_axis(scores, index, axis=1)

    # ------------------------------------------------------------ 書き換え

    def rows_by_hash(self) -> dict[str, int]:
        """チャンクのテキストのハッシュ → 行番号 (同じテキストの埋め込みを再利用するため)。"""
        return {chunk.content_hash: row for row, chunk in enumerate(self.chunks)}

    def updated(
        self,
        remove: set[str],
        new_chunks: list[Chunk],
        new_vectors: np.ndarray,
        records: dict[str, SourceRecord],
    ) -> VectorStore:
        """ファイル ``remove`` のチャンクを消し、新しいチャンクを足した新しいストアを返す。"""
        if len(new_chunks) != len(new_vectors):
            raise ValueError("new_chunks and new_vectors must have the same length")
        keep = np.fromiter((c.source not in remove for c in self.chunks), dtype=bool, count=self.count)
        chunks = [c for c, alive in zip(self.chunks, keep, strict=True) if alive] + list(new_chunks)
        vectors = np.concatenate([np.asarray(self.vectors)[keep], np.asarray(new_vectors, dtype=np.float32)])
        lexical = self.lexical.updated(keep, [c.text for c in new_chunks])
        sources = {s: r for s, r in self.sources.items() if s not in remove}
        sources.update(records)
        manifest = replace(self.manifest, count=len(chunks), updated_at=time.time())
        return VectorStore(manifest, vectors, chunks, sources, lexical)

    # ------------------------------------------------------------ 保存と読み込み

    def save(self, root: Path) -> str:
        """新しい世代として原子的に保存し、``CURRENT`` を切り替える。世代の名前を返す。"""
        root.mkdir(parents=True, exist_ok=True)
        previous = current_generation(root)
        name = f"gen-{time.time_ns():x}-{secrets.token_hex(3)}"
        temporary = root / f".tmp-{name}"
        temporary.mkdir()
        try:
            write_array(temporary / "vectors.npy", self.vectors)
            self.lexical.save(temporary, write_array)
            lines = "".join(json.dumps(c.to_dict(), ensure_ascii=False) + "\n" for c in self.chunks)
            write_text(temporary / "chunks.jsonl", lines)
            records = [vars(r) for r in self.sources.values()]
            write_text(temporary / "sources.json", json.dumps(records, ensure_ascii=False, indent=1))
            write_text(temporary / "manifest.json", json.dumps(self.manifest.to_dict(), ensure_ascii=False, indent=1))
            fsync_dir(temporary)
            os.rename(temporary, root / name)
            fsync_dir(root)
            pointer = root / f"{CURRENT}.tmp"
            write_text(pointer, name + "\n")
            os.replace(pointer, root / CURRENT)
            fsync_dir(root)
        except BaseException:
            # CURRENT はまだ前の世代を指している: 書きかけの世代 (一時フォルダか、置いたばかりのフォルダ) を消す
            shutil.rmtree(temporary, ignore_errors=True)
            if current_generation(root) != name:
                shutil.rmtree(root / name, ignore_errors=True)
            raise
        self.generation = name
        _remove_old_generations(root, keep={name, previous})
        return name

    @classmethod
    def load(cls, root: Path, mmap: bool = True) -> VectorStore | None:
        """``CURRENT`` の世代を読む (ストアが無ければ ``None``)。ベクトルと索引は memory map で読む。

        Raises:
            RagError: ストアが壊れている、または新しすぎる形式のとき。
        """
        for _ in range(3):
            name = current_generation(root)
            if name is None:
                return None
            try:
                return cls._load_generation(root / name, name, mmap)
            except FileNotFoundError:
                # 読んでいる間に書き手が世代を入れ替えて古いものを消した: CURRENT を読み直す
                if current_generation(root) == name:
                    raise RagError(
                        f"the store at {root} is damaged: generation {name} is missing "
                        f"(ストアが壊れています。取り込み直してください)"
                    ) from None
        raise RagError(f"the store at {root} keeps changing while loading (ストアの読み込み中に書き換えが続いています)")

    @classmethod
    def _load_generation(cls, folder: Path, name: str, mmap: bool) -> VectorStore:
        """1 世代のフォルダを読み、形が合っているか確かめる。"""
        try:
            manifest = StoreManifest.from_dict(json.loads((folder / "manifest.json").read_text(encoding="utf-8")))
            if manifest.format_version > STORE_FORMAT_VERSION:
                raise RagError(f"the store format {manifest.format_version} is newer than this program supports")
            vectors = np.asarray(np.load(folder / "vectors.npy", mmap_mode="r" if mmap else None))
            with open(folder / "chunks.jsonl", encoding="utf-8") as handle:
                chunks = [Chunk.from_dict(json.loads(line)) for line in handle if line.strip()]
            raw_sources = json.loads((folder / "sources.json").read_text(encoding="utf-8"))
            sources = {r["source"]: SourceRecord(**r) for r in raw_sources}
            lexical = LexicalIndex.load(folder, mmap=mmap)
        except FileNotFoundError:
            raise
        except (ValueError, KeyError, TypeError, OSError) as exc:
            raise RagError(
                f"the store at {folder} is damaged: {exc} (ストアが壊れています。取り込み直してください)"
            ) from exc
        expected = (manifest.count, manifest.dimension)
        if vectors.shape != expected or len(chunks) != manifest.count or lexical.count != manifest.count:
            raise RagError(
                f"the store at {folder} is inconsistent: vectors {vectors.shape}, {len(chunks)} chunks, "
                f"manifest {expected} (ストアが壊れています。取り込み直してください)"
            )
        return cls(manifest, vectors, chunks, sources, lexical, generation=name)


def _remove_old_generations(root: Path, keep: set[str | None]) -> None:
    """``keep`` 以外の世代と、途中で止まった保存の一時フォルダを消す (書き手がロックを持っている前提)。"""
    for entry in root.iterdir():
        if entry.is_dir() and (entry.name.startswith("gen-") or entry.name.startswith(".tmp-")):
            if entry.name not in keep:
                shutil.rmtree(entry, ignore_errors=True)
