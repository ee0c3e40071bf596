"""hash_embed のテスト: 形と正規化、決定性 (プロセスをまたいでも同じ)、語彙的な近さ。"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from llm_router.rag.hashing_embedder import hash_embed

ROOT = Path(__file__).resolve().parents[2]


def test_shape_dtype_and_unit_norm():
    """float32 の (n, d) 行列で、各行の長さは 1。"""
    m = hash_embed(["東京の天気は晴れです。", "The weather in Tokyo is sunny."], 256)
    assert m.shape == (2, 256)
    assert m.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(m, axis=1), 1.0, rtol=1e-5)


def test_empty_text_gives_a_zero_row_and_empty_list_an_empty_matrix():
    """特徴の無いテキストはゼロ行、空のリストは (0, d)。"""
    m = hash_embed(["", "   "], 64)
    assert not m.any()
    assert hash_embed([], 64).shape == (0, 64)


def test_batch_rows_equal_single_calls():
    """一括で埋め込んでも 1 件ずつと同じ (テキストの境目をまたぐ n-gram を作らない)。"""
    texts = ["abc", "日本語の文", "xyz 123"]
    batch = hash_embed(texts, 128)
    for i, text in enumerate(texts):
        np.testing.assert_array_equal(batch[i], hash_embed([text], 128)[0])


def test_full_width_and_case_are_normalised():
    """全角英数字と大文字小文字は NFKC + casefold で同じ特徴になる。"""
    a, b = hash_embed(["ＡＢＣ－１２３", "abc-123"], 128)
    np.testing.assert_allclose(a, b)


def test_lexically_close_texts_score_higher():
    """文字の重なりが多いテキストほど内積が大きい。"""
    q, near, far = hash_embed(["東京の天気", "東京都の天気予報", "機械学習の教科書"], 512)
    assert q @ near > q @ far + 0.2


def test_same_vectors_in_another_process_with_another_hash_seed():
    """PYTHONHASHSEED が違う別プロセスでも同じベクトル (Python の hash() を使っていない)。"""
    texts = ["決定性のテスト", "determinism"]
    code = (
        "import json, sys; from llm_router.rag.hashing_embedder import hash_embed; "
        "print(json.dumps(hash_embed(json.loads(sys.argv[1]), 32).tolist()))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, json.dumps(texts)], capture_output=True, text=True, env=env, check=True, cwd=ROOT
    )
    np.testing.assert_array_equal(np.array(json.loads(out.stdout), dtype=np.float32), hash_embed(texts, 32))
