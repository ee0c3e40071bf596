"""MCP のツールをサーバー側ツールとして見せる: 名前付け、スキーマの正規化、結果の変換、登録簿の合成。

- 名前は ``<server>__<tool>``。プロバイダの規則 ``^[a-zA-Z0-9_-]{1,64}$`` に合わない文字は ``_`` にし、
  文字を変えたとき・64 文字を超えるときは元の名前の SHA-256 の先頭 8 桁を後ろに付ける (安定した名前)。
- ``inputSchema`` は他のツールと同じ ``normalize_tools`` (正規形) に通す。通らないツールはログに残して出さない。
- 結果: ``content`` がテキストだけで ``structuredContent`` が無ければ文字列 (改行でつなぐ)。テキストだけで
  ``structuredContent`` があればその値 (テキストはその JSON の写しなので)。それ以外は
  ``{"content": [...], "structured_content": {...}}`` (画像は ``{"type": "image", "mime_type", "data"}``)。
  ``isError: true`` は :class:`McpToolError` (文がエラーの結果になる)。
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from llm_router.core.cancel import CancelToken
from llm_router.core.json_schema_validation import check_tool_call
from llm_router.core.schemas.common import ToolDefinition
from llm_router.core.schemas.errors import LLMRouterError
from llm_router.mcp.client import McpServer
from llm_router.mcp.errors import McpError, McpToolError

logger = logging.getLogger(__name__)

MAX_NAME = 64
HASH_CHARS = 8
SEPARATOR = "__"
UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def exposed_name(server: str, tool: str) -> str:
    """MCP のツールの、モデルに見せる名前 (``<server>__<tool>``、必要なら安定したハッシュの接尾辞)。"""
    original = f"{server}{SEPARATOR}{tool}"
    safe = UNSAFE.sub("_", original)
    if safe == original and len(safe) <= MAX_NAME:
        return safe
    suffix = hashlib.sha256(original.encode("utf-8")).hexdigest()[:HASH_CHARS]
    return f"{safe[: MAX_NAME - HASH_CHARS - 1]}_{suffix}"


@dataclass
class McpTool:
    """サーバー側ツールとして見せる MCP のツール 1 つ。"""

    name: str
    description: str
    parameters: dict[str, Any]
    server: str
    tool: str

    @property
    def source(self) -> str:
        """``start`` の ack の ``source`` (``mcp:<server>``)。"""
        return f"mcp:{self.server}"

    def definition(self) -> ToolDefinition:
        """正規形のツール定義。"""
        return ToolDefinition(self.name, self.description, self.parameters)


def to_tool(server: str, raw: dict[str, Any]) -> McpTool | None:
    """MCP の ``Tool`` を :class:`McpTool` にする (スキーマが正規化できなければ ``None``)。"""
    from llm_router.core.tool_schemas import normalize_tools

    name = exposed_name(server, raw["name"])
    description = raw.get("description") if isinstance(raw.get("description"), str) else ""
    title = raw.get("title") if isinstance(raw.get("title"), str) else ""
    schema = raw.get("inputSchema")
    try:
        (spec,) = normalize_tools([{"name": name, "description": description or title, "parameters": schema}])
    except LLMRouterError as exc:
        logger.warning("MCP server %s: tool %r left out: %s", server, str(raw["name"])[:80], exc.message)
        return None
    return McpTool(name, spec.description, spec.parameters, server, raw["name"])


def convert_result(result: dict[str, Any]) -> Any:
    """``tools/call`` の結果をツール結果の JSON 値にする (モジュールの説明の規則)。"""
    content = result.get("content") if isinstance(result.get("content"), list) else []
    structured = result.get("structuredContent")
    items = [_content_item(c) for c in content if isinstance(c, dict)]
    text_only = all(item.get("type") == "text" for item in items)
    if structured is None and text_only:
        return "\n".join(item["text"] for item in items)
    if text_only:
        # 仕様では、テキストは構造化された結果を JSON にした写し (後方互換のため): 構造化の方だけを返す
        return structured
    out: dict[str, Any] = {}
    if items:
        out["content"] = items
    if structured is not None:
        out["structured_content"] = structured
    return out


def _content_item(item: dict[str, Any]) -> dict[str, Any]:
    """MCP のコンテンツ 1 つを私たちの形 (snake_case) にする。"""
    kind = item.get("type")
    if kind == "text":
        return {"type": "text", "text": str(item.get("text", ""))}
    if kind in ("image", "audio"):
        return {"type": kind, "mime_type": item.get("mimeType"), "data": item.get("data")}
    if kind == "resource_link":
        keys = ("uri", "name", "title", "description", "mimeType")
        return {"type": "resource_link", **{_snake(k): item[k] for k in keys if k in item}}
    if kind == "resource" and isinstance(item.get("resource"), dict):
        resource = item["resource"]
        keys = ("uri", "mimeType", "text", "blob")
        return {"type": "resource", **{_snake(k): resource[k] for k in keys if k in resource}}
    return {"type": str(kind), "value": item}


def _snake(key: str) -> str:
    """キャメルケースをスネークケースにする (``mimeType`` -> ``mime_type``)。"""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower()


def error_text(value: Any) -> str:
    """エラーの結果の文 (文字列ならそのまま、それ以外は JSON)。"""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class McpToolSet:
    """設定にあるすべての MCP サーバーのツール (名前 -> :class:`McpTool`)。

    一覧は各サーバーが知っている最新のもの。一度も一覧を取れていないサーバーは、一覧が要るときに起動する
    (失敗したら ``mcp.retry_listing_after_s`` のあいだは一覧のために起動し直さない。呼び出しはいつでも試す)。
    """

    def __init__(self, servers: list[McpServer], retry_listing_after_s: float) -> None:
        """サーバーの一覧を受け取る。"""
        self.servers = {s.name: s for s in servers}
        self._retry_after = retry_listing_after_s
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, ...], dict[str, McpTool]] | None = None

    def tools(self) -> dict[str, McpTool]:
        """今見せるツール (名前 -> ツール、設定の順・サーバーの一覧の順)。一覧が変わったときだけ作り直す。"""
        lists = [(server, self._raw_tools(server)) for server in self.servers.values()]
        key = tuple(server.tools_version for server in self.servers.values())
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        out: dict[str, McpTool] = {}
        for server, raws in lists:
            for raw in raws:
                tool = to_tool(server.name, raw)
                if tool is None:
                    continue
                if tool.name in out:
                    logger.warning("MCP server %s: tool name %s is taken; left out", server.name, tool.name)
                    continue
                out[tool.name] = tool
        with self._lock:
            self._cache = (key, out)
        return out

    def _raw_tools(self, server: McpServer) -> list[dict[str, Any]]:
        """サーバーのツール (起動が要れば起動する。失敗は空)。"""
        recent = server.failed_at is not None and time.monotonic() - server.failed_at < self._retry_after
        try:
            return server.tools(start=not recent)
        except McpError:
            return []

    def call(self, tool: McpTool, arguments: dict[str, Any], cancel: CancelToken | None) -> Any:
        """ツールを呼び、結果の JSON 値を返す。

        Raises:
            McpToolError: ツールが ``isError`` を返した (文は結果の内容)。
            McpUnavailable / McpError: サーバーが居ない・落ちた・誤った答え (文は理由)。
            RequestCancelled: 取り消された。
        """
        server = self.servers[tool.server]
        result = server.call(tool.tool, arguments, cancel)
        value = convert_result(result)
        if result.get("isError") is True:
            raise McpToolError(error_text(value) or f"tool '{tool.name}' reported an error")
        return value

    def warnings(self) -> list[str]:
        """ツールの一覧を出せないサーバーの理由 (``start`` の ack の ``warnings`` 用)。"""
        return [
            f"{server.last_error}: its tools are not offered"
            for server in self.servers.values()
            if server.last_error and not server.tools(start=False)
        ]

    def secret_values(self) -> list[str]:
        """設定の ``${VAR}`` から置き換えた値 (ログの伏せ字用)。"""
        return [v for s in self.servers.values() for v in s.spec.secrets]

    def start_eager(self) -> None:
        """``start: eager`` のサーバーをそれぞれ別スレッドで起動する (失敗はログだけ)。"""
        for server in self.servers.values():
            if server.spec.start == "eager":
                threading.Thread(
                    target=self._start_quietly, args=(server,), name=f"mcp-{server.name}-start", daemon=True
                ).start()

    @staticmethod
    def _start_quietly(server: McpServer) -> None:
        """起動して失敗を飲み込む (理由は ``ensure`` がログに書く)。"""
        try:
            server.ensure()
        except McpError:
            pass

    def close(self) -> None:
        """すべてのサーバーを止める。"""
        for server in self.servers.values():
            server.close()


class CombinedToolRegistry:
    """組み込みのツールの登録簿 (``tools.registry.ToolRegistry``、``None`` 可) と MCP のツールを 1 つに見せる。

    エージェントとリアルタイム層は、これを今までの登録簿と同じ形 (``names`` / ``definitions`` / ``get`` /
    ``call``) で使う。``enabled`` と ``source`` が加わる。
    """

    def __init__(self, base: Any, mcp: McpToolSet) -> None:
        """組み込みの登録簿と MCP のツールを受け取る。"""
        self.base = base
        self.mcp = mcp

    def names(self) -> list[str]:
        """すべてのツール名 (組み込み、次に MCP)。"""
        base = list(self.base.names()) if self.base is not None else []
        return [*base, *(n for n in self.mcp.tools() if n not in base)]

    def enabled(self, configured: list[str]) -> list[str]:
        """有効なツール: ``agent.server_tools`` のうち登録されている組み込みと、MCP のすべて。"""
        base = self.base.enabled(configured) if self.base is not None else []
        return [*base, *(n for n in self.mcp.tools() if n not in base)]

    def warnings(self) -> list[str]:
        """組み込みの登録簿の注意と、使えない MCP サーバーの理由。"""
        base = list(self.base.warnings()) if self.base is not None else []
        return [*base, *self.mcp.warnings()]

    def source(self, name: str) -> str | None:
        """ツールの出どころ (MCP なら ``mcp:<server>``、組み込みは ``None``)。"""
        tool = self.mcp.tools().get(name)
        return tool.source if tool is not None else None

    def get(self, name: str) -> Any:
        """名前でツールを引く (``parameters`` を持つもの)。

        Raises:
            KeyError: 未知の名前。
        """
        if self.base is not None and name in self.base.names():
            return self.base.get(name)
        return self.mcp.tools()[name]

    def definitions(self, names: list[str] | None = None) -> list[ToolDefinition]:
        """``names`` (省略時はすべて) のツール定義 (未知の名前は飛ばす)。"""
        wanted = self.names() if names is None else names
        mcp = self.mcp.tools()
        base = set(self.base.names()) if self.base is not None else set()
        out = []
        for name in wanted:
            if name in base:
                out.extend(self.base.definitions([name]))
            elif name in mcp:
                out.append(mcp[name].definition())
        return out

    def runs_off_hub(self, name: str) -> bool:
        """ツールの関数をハブの外の OS スレッドで動かすか。

        組み込みのツールは CPU を使い得るので外で動かす。MCP のツールは I/O だけで、グリーンスレッドの
        パイプ・ソケット・イベントを使うのでハブの上 (グリーンスレッド) で動かす。
        """
        return self.base is not None and name in self.base.names()

    def call(
        self, name: str, arguments: dict[str, Any], cancel: CancelToken | None = None, validated: bool = False
    ) -> Any:
        """ツールを呼ぶ (MCP なら引数を元のスキーマで検証してから ``tools/call``)。

        ``validated=True`` は呼び出し側 (エージェントの ``Toolbox``) が同じスキーマで検証済みという印。

        Raises:
            McpError: MCP のツールの失敗 (文がエラーの結果になる)。ほかは組み込みの登録簿と同じ。
        """
        if self.base is not None and name in self.base.names():
            return self.base.call(name, arguments, cancel, validated=validated)
        tool = self.mcp.tools().get(name)
        if tool is None:
            raise McpError(f"unknown server tool '{name}'")
        check_tool_call(name, tool.parameters, arguments, cancel, validated, McpError)
        return self.mcp.call(tool, arguments, cancel)
