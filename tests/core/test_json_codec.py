"""``llm_router.core.json_codec``: 出力は ``json`` と同じ、大きな値はハブの外で変換し、その間もハブは回る。"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from llm_router.core import json_codec
from llm_router.core.schemas.errors import ConfigurationError

VALUES = [
    {"type": "tool_result", "result": "x" * 70_000, "n": [1, 2.5, None, True, False]},
    ["日本語のテキスト" * 5000, {"入れ子": [{"a": [[]], "b": {}}] * 500}],
    {"big_int": 10**50, "neg": -0.0, "esc": '\u0000"\\\n\t\u2028'},
]


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"ensure_ascii": False}, {"separators": (",", ":")}, {"ensure_ascii": False, "separators": (",", ":")}],
)
def test_the_python_path_writes_exactly_what_json_dumps_writes(value, kwargs):
    """ハブの外で使う Python の実装のたどりは、``json.dumps`` と 1 文字も違わない出力になる。"""
    assert json_codec._iter_dumps(value, dict(kwargs)) == json.dumps(value, **kwargs)


@pytest.mark.parametrize("value", VALUES)
def test_the_python_path_reads_back_what_json_loads_reads(value):
    """Python の実装の走査器の解読は ``json.loads`` と同じ値 (bytes の入力も)。"""
    text = json.dumps(value)
    assert json_codec._py_loads(text, {}) == json.loads(text)
    assert json_codec._py_loads(text.encode("utf-8"), {}) == json.loads(text)


def test_errors_are_the_same_as_json_on_both_paths():
    """不正な JSON・NaN の禁止・深すぎる入れ子は、どちらの実装でも同じ種類の誤りになる。"""
    with pytest.raises(json.JSONDecodeError):
        json_codec._py_loads('{"a": [1, 2,}', {})
    with pytest.raises(ValueError, match="Out of range float"):
        json_codec._iter_dumps({"x": math.nan}, {"allow_nan": False})
    with pytest.raises(RecursionError):
        json_codec._py_loads("[" * 100_000 + "]" * 100_000, {})


def test_socketio_json_refuses_huge_integers_like_engineio():
    """Socket.IO のパケットの解読は、python-engineio の既定と同じく 100 桁を超える整数を断る。"""
    assert json_codec.SocketIOJson.loads('{"n": 12345}') == {"n": 12345}
    with pytest.raises(ValueError, match="Integer is too large"):
        json_codec.SocketIOJson.loads('{"n": ' + "9" * 101 + "}")
    with pytest.raises(ValueError, match="Integer is too large"):
        json_codec._py_loads('{"n": ' + "9" * 101 + "}", {"parse_int": json_codec._safe_int})


def test_is_large_counts_strings_and_nodes_up_to_the_threshold():
    """見積もりは文字列の長さと要素の数。閾値に届けば真、0 なら常に偽。"""
    assert json_codec.is_large("x" * 1000, 1000)
    assert not json_codec.is_large("x" * 900, 1000)
    assert json_codec.is_large([0] * 200, 1000)  # 小さな要素でも数が多ければ大きい
    assert json_codec.is_large({"k": [{"v": "y" * 600}, {"w": "z" * 600}]}, 1000)
    assert not json_codec.is_large({"type": "text_delta", "delta": "こんにちは"}, 1000)
    assert not json_codec.is_large("x" * 10**6, 0)


def test_configure_checks_its_values():
    """閾値は 0 以上の整数、方式は ``agent.tool_executor`` の値 (誤りは設定のキーを名指しする)。"""
    with pytest.raises(ValueError, match=r"server\.offload_json_bytes"):
        json_codec.configure(-1)
    with pytest.raises(ConfigurationError, match=r"agent\.tool_executor"):
        json_codec.configure(65536, "inline")


def test_in_threading_mode_everything_stays_in_place():
    """テストのプロセスはモンキーパッチしていない (ハブが無い): 大きな値もその場で、結果は同じ。"""
    value = VALUES[0]
    assert json_codec.dumps(value, separators=(",", ":")) == json.dumps(value, separators=(",", ":"))
    assert json_codec.loads(json.dumps(value)) == value


@pytest.mark.parametrize("kind", ["loads", "dumps"])
def test_under_eventlet_the_hub_keeps_running_while_a_large_value_is_converted(kind):
    """eventlet の下で大きな値を変換している間も、別のグリーンスレッドは動き続ける (閾値 0 のその場の変換では止まる)。"""

    def run(threshold: int) -> dict:
        """子プロセスで変換し、その間のハブの回転数を受け取る。"""
        done = subprocess.run(
            [sys.executable, "-m", "tests.core.json_codec_worker", kind, str(threshold)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    offloaded, inline = run(65536), run(0)
    assert offloaded["same"] and inline["same"]
    assert offloaded["off_hub"] and not inline["off_hub"]
    # その場の C の実装はハブを 1 回も回さない。ハブの外なら変換の間もグリーンスレッドが回る
    assert inline["ticks"] == 0
    assert offloaded["ticks"] >= 3
