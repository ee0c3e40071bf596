"""ブラウザ: 「使えるツール」に MCP サーバーのツールが出どころ (MCP: <server>) つきで並ぶ。"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Console, require_chromium
from tests.realtime.harness import ServerProcess


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory) -> Iterator[ServerProcess]:
    """stdio の MCP サーバー (FastMCP) を mcpServers ファイルで設定した本物のサーバー (デモモデル)。"""
    require_chromium()
    tmp: Path = tmp_path_factory.mktemp("mcp-console")
    config = {"mcpServers": {"local": {"command": sys.executable, "args": ["-m", "tests.mcp.servers.fast_server"]}}}
    path = tmp / "mcp.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    with ServerProcess([f"mcp.config_file={path}"], log_dir=tmp) as server:
        yield server


def test_tools_panel_shows_mcp_tools_with_their_source(page, mcp_server):
    """MCP のツールはサーバー側で、出どころ「MCP: local」の印が付く。組み込みのツールには付かない。"""
    Console(page, mcp_server).open()
    page.locator(".tools-info summary").click()
    pills = page.locator("#tools-list .tool-pill")
    echo = pills.filter(has_text="local__echo")
    expect(echo.locator(".executor")).to_have_text("サーバー")
    expect(echo.locator(".tool-source")).to_have_text("MCP: local")
    expect(echo).to_have_attribute("title", "local__echo (mcp:local)")
    expect(pills.filter(has_text="calculator").locator(".tool-source")).to_have_count(0)
