"""``start`` で受け取ったスレッドの設定 (モデル、ツール、実行設定) を組み立てて検証する。

状態を変えずに、新しい設定 (:class:`ThreadConfig`、型は共有の語彙 ``core/schemas/thread_settings.py``) か
:class:`ProtocolError` を返す。
登録簿はこれが成功したときだけスレッドに反映する (悪いペイロードは状態を変えない)。
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from llm_router.core.schemas.common import ToolDefinition
from llm_router.core.schemas.errors import ConfigurationError, LLMRouterError
from llm_router.core.schemas.thread_settings import ThreadConfig
from llm_router.realtime.schemas import StartPayload, invalid

if TYPE_CHECKING:  # 型のためだけ
    from llm_router.agent.toolbox import ToolSource
    from llm_router.config.settings import Settings
    from llm_router.core.router import ModelRouter


class ThreadConfigBuilder:
    """``start`` のペイロードと現在の設定から、新しい設定と警告を作る。

    Args:
        router: ``ModelRouter`` (``resolve`` / ``tool_warnings`` / ``reasoning_warning``)。
        tools: サーバー側ツールの ``ToolRegistry`` (``names`` / ``definitions``)。
        settings: アプリの ``Settings`` (``agent.server_tools`` と資格情報の有無)。
    """

    def __init__(self, router: ModelRouter, tools: ToolSource | None, settings: Settings) -> None:
        """依存を受け取る。"""
        self._router = router
        self._tools = tools
        self._settings = settings

    def enabled_server_tools(self) -> list[str]:
        """有効なサーバー側ツール (``agent.server_tools`` のうち登録されているもの、設定の順)。"""
        if self._tools is None:
            return []
        return self._tools.enabled(list(self._settings.config.agent.server_tools))

    def build(self, payload: StartPayload, current: ThreadConfig | None) -> tuple[ThreadConfig, list[str]]:
        """新しい設定と ack の ``warnings`` を返す。

        Raises:
            ProtocolError: モデル・ツール・設定のどれかが不正なとき (``invalid_payload``)。
        """
        model, route_warning = self._model(payload.model, current)
        config = replace(current) if current is not None else ThreadConfig(model=model)
        config.model = model
        if payload.system is not None:
            config.system = payload.system
        if payload.server_tools is not None or current is None:
            config.server_tools = self._server_tools(payload.server_tools)
            config.tool_sources = self._sources(config.server_tools)
        if payload.tools is not None:
            config.client_tools = self._client_tools(payload.tools, self.enabled_server_tools())
        if payload.settings is not None:
            config.settings = payload.settings
        self._check_tool_choice(config)
        warnings = [route_warning] if route_warning else []
        return config, warnings + self._warnings(config)

    def _model(self, spec: str | None, current: ThreadConfig | None) -> tuple[str, str | None]:
        """モデル指定を ``provider/model`` に解決し、資格情報があることを確かめる。(spec, 注意書き) を返す。"""
        if spec is None and current is not None:
            return current.model, None
        try:
            route = self._router.resolve(spec)
        except LLMRouterError as exc:
            raise invalid(f"model: {exc.message}") from None
        if not self._settings.has_credentials(route.provider):
            try:
                self._settings.require_api_key(route.provider)
            except ConfigurationError as exc:
                raise invalid(f"model: {exc.message}") from None
            raise invalid(f"model: unknown provider '{route.provider}'")
        return route.spec, route.warning

    def _server_tools(self, requested: list[str] | None) -> list[str]:
        """使うサーバー側ツール (既定は有効なものすべて)。"""
        enabled = self.enabled_server_tools()
        if requested is None:
            return enabled
        out: list[str] = []
        for i, name in enumerate(requested):
            if name not in enabled:
                raise invalid(
                    f"server_tools[{i}]: '{name[:64]}' is not an enabled server tool (enabled: {', '.join(enabled)})"
                )
            if name not in out:
                out.append(name)
        return out

    def _sources(self, names: list[str]) -> dict[str, str]:
        """サーバー側ツールの出どころ (出どころの無い組み込みは載せない)。"""
        sources = {name: self._tools.source(name) for name in names} if self._tools is not None else {}
        return {name: source for name, source in sources.items() if source}

    @staticmethod
    def _client_tools(raw: list[Any], server_names: list[str]) -> list[ToolDefinition]:
        """クライアント側ツールを正規化する (サーバー側ツールとの名前の衝突と重複は ``normalize_tools`` が拒否する)。"""
        from llm_router.core.tool_schemas import normalize_tools

        try:
            return normalize_tools(raw, reserved_names=server_names)
        except LLMRouterError as exc:
            raise invalid(f"tools: {exc.message}") from None
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise invalid(f"tools: invalid tool definition ({type(exc).__name__})") from None

    @staticmethod
    def _check_tool_choice(config: ThreadConfig) -> None:
        """``tool_choice`` でツールを名指すなら、そのツールがスレッドにあること。"""
        choice = config.settings.tool_choice
        if choice is None or choice.mode != "tool":
            return
        names = [t["name"] for t in config.tool_summary()]
        if choice.name not in names:
            raise invalid(f"settings.tool_choice.name: unknown tool '{choice.name}' (tools: {', '.join(names)})")

    def definitions(self, config: ThreadConfig) -> list[ToolDefinition]:
        """モデルに見せる全ツールの定義 (サーバー側 + クライアント側)。"""
        server = self._tools.definitions(config.server_tools) if self._tools is not None and config.server_tools else []
        return [*server, *config.client_tools]

    def _warnings(self, config: ThreadConfig) -> list[str]:
        """プロバイダが受け取れないスキーマのキーワード、推論の非対応、使えないツールの供給元 (MCP) の警告。"""
        warnings = list(self._router.tool_warnings(config.model, self.definitions(config)))
        if self._tools is not None:
            warnings.extend(self._tools.warnings())
        level = config.settings.reasoning
        if level and level != "off":
            message = self._router.reasoning_warning(config.model, level)
            if message:
                warnings.append(message)
        return warnings


__all__ = ["ThreadConfig", "ThreadConfigBuilder"]
