"""ベクトルストアのテスト: 厳密な上位 k 件、一括検索、保存と読み込み (memory map)、原子的な保存、壊れたストア。"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llm_router.rag import store as store_module
from llm_router.rag.chunking import content_hash
from llm_router.rag.embedding import normalize_rows
from llm_router.rag.schemas import Chunk, EmbeddingModelMismatchError, RagError, SourceRecord
from llm_router.rag.store import VectorStore, current_generation, top_k, top_k_rows

ROOT = Path(__file__).resolve().parents[2]


def _chunks(source: str, texts: list[str]) -> list[Chunk]:
    """テスト用のチャンク。"""
    return [Chunk(source, t, f"L{i + 1}", content_hash(t), ordinal=i) for i, t in enumerate(texts)]


def _record(source: str, chunks: int) -> SourceRecord:
    """テスト用のファイルの記録。"""
    return SourceRecord(source, "hash-" + source, "800/100/v1", chunks, "txt", 0.0)


def _store(rows: int = 50, dim: int = 16, seed: int = 0, source: str = "/a.txt") -> VectorStore:
    """乱数のベクトルで作ったストア。"""
    rng = np.random.default_rng(seed)
    vectors = normalize_rows(rng.standard_normal((rows, dim)))
    chunks = _chunks(source, [f"テキスト {i} 番" for i in range(rows)])
    return VectorStore.empty("test/model", dim).updated(set(), chunks, vectors, {source: _record(source, rows)})


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 40), st.integers(0, 10_000))
def test_top_k_matches_a_full_sort(n, k, seed):
    """argpartition で選んだ上位 k 件は、全体を並べたときの上位 k 件と同じ (値の順)。"""
    scores = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    expected = np.sort(scores)[::-1][: min(k, n)]
    np.testing.assert_array_equal(scores[top_k(scores, k)], expected)


def test_top_k_rows_matches_per_row_top_k():
    """2 次元の上位 k 件は、各行の 1 次元の上位 k 件と同じ。"""
    scores = np.random.default_rng(1).standard_normal((7, 100)).astype(np.float32)
    rows = top_k_rows(scores, 5)
    for i in range(7):
        np.testing.assert_array_equal(scores[i, rows[i]], scores[i, top_k(scores[i], 5)])


def test_search_is_exact_cosine_and_batch_equals_single():
    """検索は全件の内積 (= コサイン) の上位 k 件で、一括検索は 1 件ずつと同じ結果。"""
    store = _store(rows=200, dim=32)
    queries = normalize_rows(np.random.default_rng(5).standard_normal((4, 32)))
    batch_rows, batch_scores = store.search_batch(queries, 6)
    for i, query in enumerate(queries):
        rows, scores = store.search(query, 6)
        brute = np.argsort(-(store.vectors @ query))[:6]
        np.testing.assert_array_equal(rows, brute)
        np.testing.assert_array_equal(batch_rows[i], rows)
        np.testing.assert_allclose(batch_scores[i], scores, rtol=1e-5)


def test_save_and_load_round_trip_with_memory_map(tmp_path):
    """保存したストアを memory map で読むと、ベクトル、チャンク、記録、目録、語彙索引が同じ。"""
    original = _store()
    name = original.save(tmp_path)
    assert current_generation(tmp_path) == name
    loaded = VectorStore.load(tmp_path)
    assert isinstance(np.load(tmp_path / name / "vectors.npy", mmap_mode="r"), np.memmap)
    assert not loaded.vectors.flags.writeable
    np.testing.assert_array_equal(loaded.vectors, original.vectors)
    assert loaded.chunks == original.chunks
    assert loaded.sources == original.sources
    assert loaded.manifest.model == "test/model" and loaded.manifest.dimension == 16 and loaded.manifest.count == 50
    np.testing.assert_array_equal(loaded.lexical.scores("テキスト 7"), original.lexical.scores("テキスト 7"))
    assert loaded.generation == name


def test_missing_store_loads_as_none(tmp_path):
    """ストアが無ければ None (例外ではない)。"""
    assert VectorStore.load(tmp_path / "nothing") is None


def test_updated_replaces_a_source_and_keeps_the_others():
    """ファイル 1 つを置き換えると、そのチャンクだけが入れ替わり、他の行のベクトルはそのまま。"""
    base = _store(rows=5, source="/a.txt")
    other = _chunks("/b.txt", ["b1", "b2"])
    both = base.updated(set(), other, normalize_rows(np.ones((2, 16))), {"/b.txt": _record("/b.txt", 2)})
    replaced = both.updated({"/a.txt"}, _chunks("/a.txt", ["new"]), normalize_rows(np.ones((1, 16))), {})
    assert [c.source for c in replaced.chunks] == ["/b.txt", "/b.txt", "/a.txt"]
    np.testing.assert_array_equal(replaced.vectors[:2], both.vectors[5:7])
    assert replaced.lexical.count == 3
    assert replaced.lexical.scores("new")[2] > 0


def test_check_model_names_the_store_model():
    """違うモデルや次元は、ストアのモデル名を含むエラーで拒む。"""
    store = _store()
    store.check_model("test/model", 16)
    with pytest.raises(EmbeddingModelMismatchError, match="test/model") as info:
        store.check_model("openai/text-embedding-3-small")
    assert info.value.store_model == "test/model"
    with pytest.raises(EmbeddingModelMismatchError, match="16"):
        store.check_model("test/model", 32)


def test_a_failed_rename_leaves_the_previous_store_whole(tmp_path, monkeypatch):
    """保存の途中 (CURRENT の切り替え) で失敗しても、前の世代がそのまま読め、一時フォルダは残らない。"""
    first = _store(rows=10)
    first.save(tmp_path)

    def broken_replace(src, dst):
        """rename の失敗 (ディスクが一杯など) を起こす。"""
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store_module.os, "replace", broken_replace)
    bigger = _store(rows=30, seed=3)
    with pytest.raises(OSError):
        bigger.save(tmp_path)
    monkeypatch.undo()
    loaded = VectorStore.load(tmp_path)
    assert loaded.count == 10
    np.testing.assert_array_equal(loaded.vectors, first.vectors)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [first.generation]


_KILL_MID_SAVE = """
import sys, threading
import numpy as np
from pathlib import Path
from llm_router.rag import store as store_module
from tests.rag.test_store import _store

calls = []
original = store_module.fsync_file

def stalling_fsync(path):
    original(path)
    calls.append(path)
    if len(calls) == 3:
        print("MID-SAVE", flush=True)
        threading.Event().wait()

store_module.fsync_file = stalling_fsync
_store(rows=40, seed=9).save(Path(sys.argv[1]))
"""


def test_a_process_killed_mid_save_leaves_the_previous_store_whole(tmp_path):
    """保存の途中で強制終了 (SIGKILL) されても、前の世代がそのまま読める。次の保存で一時フォルダは片付く。"""
    first = _store(rows=10)
    first.save(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-c", _KILL_MID_SAVE, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )
    try:
        assert process.stdout.readline().strip() == "MID-SAVE"
        assert [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
    finally:
        process.kill()
        process.wait(timeout=30)
    loaded = VectorStore.load(tmp_path)
    assert loaded.count == 10
    np.testing.assert_array_equal(loaded.vectors, first.vectors)
    _store(rows=12).save(tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_old_generations_are_removed_but_the_previous_one_is_kept(tmp_path):
    """保存のたびに古い世代を消すが、読み込み中の読み手のために直前の世代は残す。"""
    names = [_store(rows=3, seed=i).save(tmp_path) for i in range(4)]
    remaining = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("gen-"))
    assert remaining == sorted(names[-2:])


def test_a_damaged_store_is_reported(tmp_path):
    """中身の壊れたストア (目録と行列の形が合わない、JSON が壊れている) は RagError。"""
    name = _store(rows=5).save(tmp_path)
    manifest = tmp_path / name / "manifest.json"
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "count": 99}))
    with pytest.raises(RagError, match="inconsistent"):
        VectorStore.load(tmp_path)
    manifest.write_text("{not json")
    with pytest.raises(RagError, match="damaged"):
        VectorStore.load(tmp_path)


def test_a_missing_generation_is_reported(tmp_path):
    """CURRENT が存在しない世代を指していれば RagError。"""
    (tmp_path / "CURRENT").write_text("gen-missing\n")
    with pytest.raises(RagError, match="damaged"):
        VectorStore.load(tmp_path)
