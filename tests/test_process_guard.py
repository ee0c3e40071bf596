"""tests/conftest.py の見張りのテスト: 止め忘れたプロセスがあればスイートは失敗し、コマンドラインが出る。"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

LEAKY = '''
"""止め忘れる子プロセスを起動するテスト (見張りのテストが別の pytest で動かす)。"""
import subprocess
import sys


def test_leaks_a_child():
    """子プロセスを起動して止めずに終わる。"""
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "leaked-marker-arg"])
'''

TIDY = '''
"""子プロセスをきちんと止めるテスト。"""
import subprocess
import sys


def test_stops_its_child():
    """子プロセスを起動して止める。"""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    proc.kill()
    proc.wait(10)
'''


def _run_pytest(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    """``body`` のテストを、見張り (tests/conftest.py) を読み込んだ別の pytest で動かす。"""
    (tmp_path / "test_inner.py").write_text(body, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _alive_with(argument: str) -> list[str]:
    """コマンドラインに ``argument`` を含む、動いているプロセスの PID。"""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().split(") ")[-1][:1]
            except OSError:
                continue
            if argument.encode() in cmd and state not in ("Z", "X"):
                found.append(entry.name)
    return found


def test_a_leaked_child_fails_the_suite_naming_its_command_line(tmp_path):
    """テストは通っても、子プロセスが残ればセッションは失敗し、そのコマンドラインが出て、プロセスは止められる。"""
    result = _run_pytest(tmp_path, LEAKY)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "1 passed" in output
    assert "outlived the session" in output and "leaked-marker-arg" in output
    assert _alive_with("leaked-marker-arg") == []


def test_a_tidy_session_passes(tmp_path):
    """子プロセスを止めるテストだけなら、見張りは何もしない。"""
    result = _run_pytest(tmp_path, TIDY)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "outlived" not in result.stdout
