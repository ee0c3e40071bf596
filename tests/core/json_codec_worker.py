"""eventlet のハブの上で大きな JSON を変換し、その間にハブが動けたかを測る子プロセス (``test_json_codec.py`` が使う)。

使い方: ``python -m tests.core.json_codec_worker <loads|dumps> <offload_bytes>``。monkey patch の後、1 ms ごとに
数を足すグリーンスレッドを動かしながら、別のグリーンスレッドで大きな値を :mod:`llm_router.core.json_codec` で
変換する。変換の間に進んだ数 (ハブが回った回数) と、値が元と同じかを JSON で 1 行出す。
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402

from eventlet import patcher  # noqa: E402

from llm_router.core import json_codec  # noqa: E402

# 構造のたどりが重い値: 小さな dict が 6 万個 (C の実装でも数十 ms、Python の実装では数百 ms)
VALUE = [{"i": i, "s": "あい", "f": 1.5, "n": None, "b": True} for i in range(60_000)]


def main() -> None:
    """変換の間のハブの回転数と、変換した OS スレッドが呼び手と違うかを出す。"""
    kind, threshold = sys.argv[1], int(sys.argv[2])
    json_codec.configure(threshold, "tpool", 2)
    text = json.dumps(VALUE)
    ticks = [0]
    running = [True]
    real_threading = patcher.original("threading")
    hub_thread = real_threading.get_ident()
    seen_threads: list[int] = []

    def ticker() -> None:
        """変換が終わるまで 1 ms ごとに数を足す (ハブが止まっていれば進まない)。"""
        while running[0]:
            ticks[0] += 1
            eventlet.sleep(0.001)

    original_iter, original_py = json_codec._iter_dumps, json_codec._py_loads

    def spy_iter(value, kwargs):
        """変換した OS スレッドを記録する。"""
        seen_threads.append(real_threading.get_ident())
        return original_iter(value, kwargs)

    def spy_py(value, kwargs):
        """解読した OS スレッドを記録する。"""
        seen_threads.append(real_threading.get_ident())
        return original_py(value, kwargs)

    json_codec._iter_dumps, json_codec._py_loads = spy_iter, spy_py
    tick_green = eventlet.spawn(ticker)
    eventlet.sleep(0.01)  # ticker を走らせてから測り始める
    before = ticks[0]
    if kind == "loads":
        same = json_codec.loads(text) == VALUE
    else:
        same = json_codec.dumps(VALUE) == text
    during = ticks[0] - before
    running[0] = False
    tick_green.wait()
    off_hub = bool(seen_threads) and all(t != hub_thread for t in seen_threads)
    print(json.dumps({"ticks": during, "same": same, "off_hub": off_hub}), flush=True)


if __name__ == "__main__":
    main()
