"""docs/deployment.md の nginx の設定そのもの (文書の ``nginx`` のブロックを取り出し、ポートだけ差し替える) を本物の
nginx で動かし、2 つのサーバープロセスの前に置く: websocket (Upgrade) でも long-polling (``ip_hash`` で同じ
プロセスへ) でも繋がり、ランのイベントが届く。

nginx が無ければ理由を示してスキップし、``LLM_ROUTER_REQUIRE_NGINX=1`` なら失敗させる (``.ci/run`` が入れて設定する)。
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import socketio

from tests.realtime.harness import ROOT, ProtocolClient, free_port, wait_until
from tests.scaleout.conftest import Cluster

INSTALL_HINT = "nginx のテストには Debian の nginx が必要です: sudo apt-get install nginx-light"


def nginx_binary() -> str:
    """nginx のパス (無ければスキップ、``LLM_ROUTER_REQUIRE_NGINX=1`` なら失敗)。"""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found:
        return found
    if os.environ.get("LLM_ROUTER_REQUIRE_NGINX") == "1":
        pytest.fail(INSTALL_HINT + " [LLM_ROUTER_REQUIRE_NGINX=1]")
    pytest.skip(INSTALL_HINT)


def documented_config(port: int, upstreams: list[int]) -> str:
    """docs/deployment.md の ``nginx`` のブロック (待ち受けのポートと upstream の行だけ差し替える)。"""
    text = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    block = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert block, "docs/deployment.md has no nginx block"
    conf = block.group(1)
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{port};")
    servers = "".join(f"    server 127.0.0.1:{p};\n" for p in upstreams)
    conf = re.sub(r"(?:    server 127\.0\.0\.1:\d+;\n)+", servers, conf)
    return conf


@pytest.fixture
def nginx(cluster: Cluster) -> Iterator[tuple[str, Cluster]]:
    """2 つのサーバーと、その前の nginx (文書の設定)。終わりに (失敗しても) 止める。"""
    binary = nginx_binary()
    a, b = cluster.add(), cluster.add()
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="llm_router_nginx_"))
    for sub in ("logs", "tmp"):
        (work / sub).mkdir()
    (work / "site.conf").write_text(documented_config(port, [a.port, b.port]), encoding="utf-8")
    (work / "nginx.conf").write_text(
        f"pid {work}/nginx.pid;\nerror_log {work}/logs/error.log;\nevents {{}}\nhttp {{\n"
        f"  access_log {work}/logs/access.log;\n  client_body_temp_path {work}/tmp;\n"
        f"  proxy_temp_path {work}/tmp;\n  include {work}/site.conf;\n}}\n",
        encoding="utf-8",
    )
    proc = subprocess.Popen([binary, "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"])
    try:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            """nginx を通して /healthz が答えれば真。"""
            import urllib.request

            try:
                with urllib.request.urlopen(url + "/healthz", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_until(ready, timeout=15, message="nginx did not come up")
        yield url, cluster
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def test_websocket_through_nginx_reaches_both_processes(nginx):
    """websocket で nginx を通したソケットのランのイベントが届き、同じスレッドに直接 B に繋いだソケットにも同じ seq で届く。"""
    url, cluster = nginx
    through = ProtocolClient(url)
    cluster.clients.append(through)
    through.connect()
    thread_id = through.start()["thread_id"]
    direct = cluster.client(cluster.servers[1])
    direct.start(thread_id=thread_id)
    run_id = through.send_message(thread_id, "nginx 越しに")["run_id"]
    assert through.wait_run_end(run_id)["type"] == "run_finished"
    direct.wait_run_end(run_id)
    seqs = [e["seq"] for e in through.event_payloads(thread_id=thread_id)]
    assert seqs == [e["seq"] for e in direct.event_payloads(thread_id=thread_id)] == list(range(1, len(seqs) + 1))


def test_long_polling_through_nginx_stays_on_one_process(nginx):
    """long-polling (websocket に上げない) でも、``ip_hash`` で 1 つのセッションのリクエストが同じプロセスへ届き、
    ``start`` の ack が返る。"""
    url, _ = nginx
    client = socketio.Client(reconnection=False)
    try:
        client.connect(url, namespaces=["/agent"], transports=["polling"], wait_timeout=10)
        ack = client.call("start", {}, namespace="/agent", timeout=10)
        assert ack["ok"] and ack["protocol"] == "1.1"
        again = client.call("list_threads", {}, namespace="/agent", timeout=10)
        assert again["ok"] and ack["thread_id"] in {t["thread_id"] for t in again["threads"]}
    finally:
        client.disconnect()
