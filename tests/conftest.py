"""テスト全体の見張り: テストが起動したプロセス (サーバー、偽の上流、ブラウザ) がセッションより長生きしたら失敗にする。

セッションの始めに環境変数 ``LLM_ROUTER_TEST_SESSION`` にこの pytest の PID を入れる。子プロセスも、その子
(親が先に死んで init に引き取られたものも) この変数を受け継ぐ。セッションの終わりに ``/proc`` を調べ、
印を持つプロセスと pytest の直接の子が残っていれば、コマンドラインを挙げて失敗させ、後始末に止める
(psutil は使わない)。テストが自分のサーバーを ``with`` や fixture で確実に止めていれば何も起きない。
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

MARKER = "LLM_ROUTER_TEST_SESSION"
# 終わりかけのプロセスが消えるのを待つ上限 (秒)。止める処理の途中のものを誤って数えないため
EXIT_GRACE_S = 5.0


def pytest_sessionstart(session: pytest.Session) -> None:
    """子プロセスに受け継がせる印を環境変数に置く。"""
    os.environ[MARKER] = str(os.getpid())


def _status(pid: int) -> dict[str, str]:
    """``/proc/<pid>/status`` の項目 (読めなければ空)。"""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    fields = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _marked(pid: int, marker: bytes) -> bool:
    """プロセスの環境変数にこのセッションの印があるか (他人のプロセスは読めないので偽)。"""
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    """プロセスのコマンドライン (読めなければ空)。"""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def leftover_processes(session_pid: int) -> dict[int, str]:
    """このセッションが起動して、まだ動いているプロセス (ゾンビは除く): PID → コマンドライン。"""
    marker = f"{MARKER}={session_pid}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == session_pid:
            continue
        pid = int(entry.name)
        status = _status(pid)
        if not status or status.get("State", "").startswith(("Z", "X")):
            continue
        if status.get("PPid") == str(session_pid) or _marked(pid, marker):
            found[pid] = _cmdline(pid)
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """残ったプロセスがあれば、コマンドラインを挙げてスイートを失敗させ、止める。"""
    me = os.getpid()
    deadline = time.monotonic() + EXIT_GRACE_S
    leftovers = leftover_processes(me)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.1)  # 止める途中のプロセスが消えるのを待つポーリング (期限つき)
        leftovers = leftover_processes(me)
    if not leftovers:
        return
    lines = "\n".join(f"  pid {pid}: {cmd or '?'}" for pid, cmd in sorted(leftovers.items()))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    message = f"processes started by the tests outlived the session (a test does not stop its server):\n{lines}"
    if reporter is not None:
        reporter.write_line(message, red=True)
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """セッションで 1 つの Chromium (ヘッドレス)。どのフォルダのブラウザテストもこれを共有する。

    Playwright の sync API はプロセスに 1 つしか同時に動かせない (2 つ目は「asyncio のループの中」で失敗する)
    ので、フィクスチャの定義はここ 1 か所だけにする。
    """
    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, require_chromium

    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
