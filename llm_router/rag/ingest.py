"""取り込み: ファイルを集め、読み、チャンクに分け、埋め込み、ストアを差分で書き換える。

1. ストアの排他ロックを取り、今の世代を読む。埋め込みモデルを決め、ストアのモデルと違えば拒む。
2. ファイルごとに SHA-256 を計算し、ストアの記録と同じ (かつ分割設定も同じ) なら「変更なし」で何もしない。
   変わったファイル・新しいファイルは読んでチャンクに分ける。読めないファイルは名前と理由を記録して続ける。
3. 埋め込みが必要なのは、ストアにも今回の中にも同じテキスト (content hash) が無いチャンクだけ。
   変わったファイルでも、変わっていない段落の埋め込みは再利用する。
4. 埋め込みはバッチごと。途中でプロバイダが失敗したら、それまでに埋め込みが揃ったファイルだけを保存し、
   残りは失敗として報告する (取り込み直せば続きから)。
5. 新しい世代として原子的に保存する (:meth:`VectorStore.save`)。
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from llm_router.core.schemas.errors import ConfigurationError, LLMRouterError
from llm_router.rag.chunking import ChunkingConfig, chunk_document
from llm_router.rag.embedding import embed_in_batches, make_embedder, resolve_embedding_spec
from llm_router.rag.loaders import discover, load_document
from llm_router.rag.schemas import Chunk, IngestReport, LoadError, SourceRecord
from llm_router.rag.store import VectorStore, store_lock

if TYPE_CHECKING:
    from llm_router.config.settings import Settings
    from llm_router.core.cancel import CancelToken


class IngestProgress(Protocol):
    """取り込みの進み具合を受け取る側 (CLI の進捗バー)。"""

    def file(self, done: int, total: int, name: str) -> None:
        """``done`` 個目のファイルを処理し始めた。"""

    def chunks(self, count: int) -> None:
        """ここまでに作ったチャンクの数。"""

    def batch(self, done: int, total: int) -> None:
        """埋め込みのバッチが ``done`` 個終わった。"""


class _Silent:
    """何も表示しない進み具合。"""

    def file(self, done: int, total: int, name: str) -> None:
        """何もしない。"""

    def chunks(self, count: int) -> None:
        """何もしない。"""

    def batch(self, done: int, total: int) -> None:
        """何もしない。"""


def store_root(settings: Settings) -> Path:
    """``rag.store_path`` (相対パスなら作業フォルダから)。"""
    return Path(settings.config.rag.store_path).expanduser()


def _file_hash(path: Path) -> str:
    """ファイルの中身の SHA-256。"""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class _Plan:
    """取り込み 1 回の作業の一覧 (消すファイル、足すチャンク、記録)。"""

    def __init__(self) -> None:
        """空の計画。"""
        self.remove: set[str] = set()
        self.chunks: dict[str, list[Chunk]] = {}
        self.records: dict[str, SourceRecord] = {}


def _plan(
    files: list[Path], store: VectorStore | None, chunking: ChunkingConfig, report: IngestReport, progress: Any
) -> _Plan:
    """ファイルを読み、変わったものだけをチャンクにした計画を作る。"""
    plan = _Plan()
    total_chunks = 0
    for number, path in enumerate(files, start=1):
        source = str(path)
        progress.file(number, len(files), source)
        previous = store.sources.get(source) if store is not None else None
        try:
            digest = _file_hash(path)
            if previous and previous.file_hash == digest and previous.chunking == chunking.signature:
                report.unchanged.append(source)
                continue
            document = load_document(path)
        except LoadError as exc:
            report.failed.append((source, exc.message))
            continue
        except OSError as exc:
            report.failed.append((source, f"cannot read the file: {exc.strerror or exc} (ファイルを読めません)"))
            continue
        chunks = chunk_document(document, chunking)
        (report.updated if previous else report.added).append(source)
        plan.remove.add(source)
        plan.chunks[source] = chunks
        plan.records[source] = SourceRecord(
            source=source,
            file_hash=document.file_hash,
            chunking=chunking.signature,
            chunks=len(chunks),
            kind=document.kind,
            ingested_at=time.time(),
        )
        total_chunks += len(chunks)
        progress.chunks(total_chunks)
    return plan


def ingest(
    settings: Settings,
    paths: Sequence[str | Path],
    *,
    progress: IngestProgress | None = None,
    cancel: CancelToken | None = None,
    router: Any = None,
    prune: bool = False,
) -> IngestReport:
    """ファイルとフォルダを取り込み、ストアを保存する。

    ``prune`` なら、指定したフォルダの下にあってもうディスクに無いファイルのチャンクを消す。

    Raises:
        EmbeddingModelMismatchError: ストアと違う埋め込みモデルを指定したとき。
        MissingCredentialError: 埋め込みモデルのプロバイダにキーが無いとき。
        ConfigurationError: チャンク分割や埋め込みモデルの設定の誤り。
    """
    progress = progress or _Silent()
    config = settings.config.rag
    try:
        chunking = ChunkingConfig(config.chunk_size, config.chunk_overlap)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    report = IngestReport()
    root = store_root(settings)
    with store_lock(root):
        store = VectorStore.load(root)
        spec = resolve_embedding_spec(settings, store.manifest.model if store else None)
        report.model = spec
        embedder = make_embedder(settings, spec, router)
        if store is not None:
            store.check_model(spec, embedder.dimension)
        files, missing = discover(list(paths))
        report.failed.extend(missing)
        plan = _plan(files, store, chunking, report, progress)
        if prune and store is not None:
            _prune(paths, store, plan, report)
        report.chunks = sum(len(chunks) for chunks in plan.chunks.values())
        if plan.remove:
            _embed_and_save(root, store, spec, embedder, plan, report, progress, cancel)
    return report


def _embed_and_save(
    root: Path,
    store: VectorStore | None,
    spec: str,
    embedder: Any,
    plan: _Plan,
    report: IngestReport,
    progress: Any,
    cancel: CancelToken | None,
) -> None:
    """計画のチャンクのうち未知のテキストだけを埋め込み、新しい世代を保存する。

    Raises:
        LLMRouterError: 埋め込みが 1 つも揃わず、保存するものが無いとき (プロバイダのエラーそのもの)。
    """
    known = store.rows_by_hash() if store is not None else {}
    wanted: dict[str, str] = {}
    for chunks in plan.chunks.values():
        for chunk in chunks:
            if chunk.content_hash not in known:
                wanted.setdefault(chunk.content_hash, chunk.text)
    embedded: dict[str, np.ndarray] = {}
    error = _embed(embedder, wanted, embedded, report, progress, cancel)
    if store is None:
        dimension = next(iter(embedded.values())).shape[0] if embedded else embedder.dimension
        if dimension is None:
            raise error or LLMRouterError("no embeddings were produced (埋め込みを作れませんでした)")
        store = VectorStore.empty(spec, int(dimension), semantic=embedder.semantic)
    else:
        store.check_model(spec, embedder.dimension)
    _drop_incomplete(plan, known, embedded, report, error)
    if not plan.remove:
        raise error or LLMRouterError("nothing to save (保存するものがありません)")
    vectors = _vectors_for(plan, store, known, embedded)
    final_chunks = [c for chunks in plan.chunks.values() for c in chunks]
    report.chunks = len(final_chunks)
    report.reused_chunks = sum(1 for c in final_chunks if c.content_hash in known)
    store.updated(plan.remove, final_chunks, vectors, plan.records).save(root)


def _prune(paths: Sequence[str | Path], store: VectorStore, plan: _Plan, report: IngestReport) -> None:
    """指定したフォルダの下で、ディスクから消えたファイルを削除の計画に入れる。"""
    for raw in paths:
        folder = Path(raw).expanduser().resolve()
        if not folder.is_dir():
            continue
        prefix = str(folder).rstrip("/") + "/"
        for source in store.sources:
            if source.startswith(prefix) and not Path(source).exists() and source not in plan.remove:
                plan.remove.add(source)
                report.removed.append(source)


def _embed(
    embedder: Any,
    wanted: dict[str, str],
    embedded: dict[str, np.ndarray],
    report: IngestReport,
    progress: Any,
    cancel: CancelToken | None,
) -> LLMRouterError | None:
    """必要なテキストをバッチで埋め込み ``embedded`` に入れる。途中の失敗はエラーを返す (投げない)。"""
    hashes = list(wanted)
    size = embedder.batch_size
    total = (len(hashes) + size - 1) // size
    for number, start in enumerate(range(0, len(hashes), size), start=1):
        batch = hashes[start : start + size]
        try:
            result = embed_in_batches(embedder, [wanted[h] for h in batch], "document", cancel=cancel)
        except LLMRouterError as exc:
            return exc
        for digest, vector in zip(batch, result.vectors, strict=True):
            embedded[digest] = vector
        report.embedded_chunks += len(batch)
        report.tokens += result.tokens
        report.tokens_estimated = report.tokens_estimated or result.tokens_estimated
        progress.batch(number, total)
    return None


def _drop_incomplete(
    plan: _Plan, known: dict[str, int], embedded: dict[str, np.ndarray], report: IngestReport, error: Exception | None
) -> None:
    """埋め込みが揃わなかったファイルを計画から外し、失敗として報告する (前の版はストアに残る)。"""
    if error is None:
        return
    for source in list(plan.chunks):
        if all(c.content_hash in known or c.content_hash in embedded for c in plan.chunks[source]):
            continue
        plan.remove.discard(source)
        del plan.chunks[source]
        del plan.records[source]
        for bucket in (report.added, report.updated):
            if source in bucket:
                bucket.remove(source)
        report.failed.append((source, f"embedding failed (埋め込みに失敗しました): {error}"))


def _vectors_for(plan: _Plan, store: VectorStore, known: dict[str, int], embedded: dict[str, np.ndarray]) -> np.ndarray:
    """計画のチャンクの順にベクトルを並べる (再利用分はストアの行から)。"""
    rows = []
    for chunks in plan.chunks.values():
        for chunk in chunks:
            vector = embedded.get(chunk.content_hash)
            rows.append(vector if vector is not None else store.vectors[known[chunk.content_hash]])
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), store.manifest.dimension)


def remove_sources(settings: Settings, sources: Sequence[str]) -> list[str]:
    """ファイル (またはフォルダの下のすべてのファイル) のチャンクをストアから消す。消したファイルの一覧を返す。

    パスは作業フォルダから解決する (ファイルがもう無くても消せる)。
    """
    root = store_root(settings)
    with store_lock(root):
        store = VectorStore.load(root)
        if store is None:
            return []
        targets = set()
        for raw in sources:
            path = str(Path(raw).expanduser().resolve())
            for source in store.sources:
                if source == path or source.startswith(path.rstrip("/") + "/"):
                    targets.add(source)
        if not targets:
            return []
        empty = np.zeros((0, store.manifest.dimension), np.float32)
        store.updated(targets, [], empty, {}).save(root)
    return sorted(targets)
