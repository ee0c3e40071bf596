"""モデルのルーティング: ``provider/model``、別名、プリセット、``auto``、フォールバックの連鎖、クライアントの生成。

モデル名・別名・フォールバックはすべて設定 (``models`` と ``providers``) から読み、コードには書かない。
クライアントのクラスは :data:`CLIENT_CLASSES` の表 (import パス) から遅延 import で作る。
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llm_router.core.schemas.errors import ConfigurationError

if TYPE_CHECKING:
    from llm_router.config.settings import Settings
    from llm_router.core.clients.interface import ChatClient
    from llm_router.core.schemas.common import ReasoningLevel, ToolDefinition

logger = logging.getLogger(__name__)

AUTO = "auto"
# 別名が別名を指す連鎖の上限 (設定の循環で止まらなくなるのを防ぐ)
MAX_ALIAS_DEPTH = 8

# プロバイダ名 -> クライアントクラスの import パス (モジュール:クラス)
CLIENT_CLASSES: dict[str, str] = {
    "openai": "llm_router.core.clients.openai_client:OpenAIClient",
    "anthropic": "llm_router.core.clients.anthropic_client:AnthropicClient",
    "gemini": "llm_router.core.clients.gemini_client:GeminiClient",
    "ollama": "llm_router.core.clients.ollama_client:OllamaClient",
    "demo": "llm_router.core.clients.demo_client:DemoClient",
}


@dataclass(frozen=True)
class ModelRoute:
    """解決したモデル。``spec`` は ``provider/model``。

    Attributes:
        provider: プロバイダ名。
        model: プロバイダ内のモデル名 (``ChatRequest.model`` にそのまま入れる)。
        via: 別名・プリセット・``auto`` から解決したときの元の名前。
        warning: 提供終了 (retired) のモデルなどの注意書き。
    """

    provider: str
    model: str
    via: str | None = field(default=None, compare=False)
    warning: str | None = field(default=None, compare=False)

    @property
    def spec(self) -> str:
        """``provider/model`` の形の文字列。"""
        return f"{self.provider}/{self.model}"


class ModelRouter:
    """モデル指定を解決し、プロバイダのクライアントを (キャッシュして) 渡す。"""

    def __init__(self, settings: Settings, client_classes: dict[str, str] | None = None) -> None:
        """設定と、必要ならクライアントクラスの表 (テスト用の差し替え) を受け取る。"""
        self.settings = settings
        self.client_classes = dict(CLIENT_CLASSES if client_classes is None else client_classes)
        self._clients: dict[str, ChatClient] = {}
        self._inspectors: dict[str, ChatClient] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------ 解決

    @property
    def _models(self) -> Any:
        """設定の ``models`` 節。"""
        return self.settings.config.models

    def resolve(self, spec: str | None = None) -> ModelRoute:
        """モデル指定 (``None`` なら ``agent.model``) を :class:`ModelRoute` にする。

        受け付けるもの: ``provider/model``、``provider`` だけ (そのプロバイダの既定モデル)、
        ``models.aliases`` の別名、``models.presets`` のプリセット、``auto``。

        Raises:
            ConfigurationError: 形式が違う、未知のプロバイダ、別名の循環。
        """
        original = (spec or "").strip() or self.settings.config.agent.model
        return self._resolve(original, original, 0)

    def _resolve(self, spec: str, original: str, depth: int) -> ModelRoute:
        """別名・プリセットをたどって解決する。"""
        if depth > MAX_ALIAS_DEPTH:
            raise ConfigurationError(f"model '{original}': alias chain too long or circular in models.aliases")
        if spec == AUTO:
            return self._auto(original, depth)
        target = self._models.aliases.get(spec) or self._models.presets.get(spec)
        if target is not None:
            route = self._resolve(target, original, depth + 1)
            return ModelRoute(route.provider, route.model, via=original, warning=route.warning)
        provider, _, model = spec.partition("/")
        provider = provider.strip().lower()  # "OpenAI/gpt-4.1-mini" も受け付ける (モデル名の大小は区別する)
        if provider not in self.settings.provider_names():
            raise ConfigurationError(self._format_error(spec))
        model = model.strip() or self.settings.provider(provider).chat_model
        via = original if original != spec else None
        return ModelRoute(provider, model, via=via, warning=self._retired_warning(provider, model))

    def _auto(self, original: str, depth: int) -> ModelRoute:
        """``auto``: キーのある最初の ``models.auto_candidates``、どれにも無ければ demo プロバイダ。"""
        for candidate in self._models.auto_candidates:
            if candidate == AUTO:
                continue
            route = self._resolve(candidate, candidate, depth + 1)
            if self.settings.has_credentials(route.provider):
                return ModelRoute(route.provider, route.model, via=original, warning=route.warning)
        return ModelRoute("demo", self.settings.provider("demo").chat_model, via=original)

    def _format_error(self, spec: str) -> str:
        """形式の誤りを説明する文 (受け付ける形を並べる)。"""
        names = sorted({*self._models.aliases, *self._models.presets})
        return (
            f"model '{spec}': expected 'provider/model' with provider one of "
            f"{', '.join(self.settings.provider_names())}, an alias ({', '.join(names)}) or 'auto' "
            f"(モデルは 'provider/model' の形で指定してください)"
        )

    def _retired_warning(self, provider: str, model: str) -> str | None:
        """提供終了のモデルなら注意書きを返す。"""
        options = self.settings.model_options(provider, model)
        if not options.retired:
            return None
        note = f" ({options.note})" if options.note else ""
        return f"model '{provider}/{model}' is retired{note}: the provider will probably answer 404"

    def chain(self, spec: str | None = None) -> list[ModelRoute]:
        """モデルと、その後に試すフォールバック (``models.fallbacks`` を推移的にたどる)。

        先頭は常に ``resolve(spec)``。キーの無いプロバイダのフォールバックは飛ばす
        (先頭のモデルにキーが無いときのエラーは、呼び出し側が ``client`` で受け取る)。
        """
        first = self.resolve(spec)
        routes = [first]
        seen = {first.spec}
        queue = [first.spec]
        while queue:
            for fallback in self._models.fallbacks.get(queue.pop(0), []):
                route = self.resolve(fallback)
                if route.spec in seen:
                    continue
                seen.add(route.spec)
                queue.append(route.spec)  # キーが無くても、その先のフォールバックはたどる
                if self.settings.has_credentials(route.provider):
                    routes.append(route)
        return routes

    def default_spec(self) -> str:
        """既定のモデル (``agent.model`` を解決したもの) の ``provider/model``。"""
        return self.resolve(None).spec

    def is_demo_default(self) -> bool:
        """既定のモデルが demo プロバイダか (キーが 1 つも無いとき)。"""
        return self.resolve(None).provider == "demo"

    # ------------------------------------------------------------ クライアント

    def client(self, provider: str) -> ChatClient:
        """プロバイダのクライアント (キャッシュする)。

        Raises:
            MissingCredentialError: キーが必要なのに無い (設定すべき .env 変数名つき)。
            ConfigurationError: 未知のプロバイダ、またはクライアントのモジュールが無い。
        """
        with self._lock:
            client = self._clients.get(provider)
            if client is None:
                key = self.settings.require_api_key(provider)
                client = self._clients[provider] = self._build(provider, key)
            return client

    def _inspector(self, provider: str) -> ChatClient:
        """警告を調べるためだけのクライアント (キーが無くても作れる。ネットワークには出ない)。"""
        if self.settings.has_credentials(provider):
            return self.client(provider)
        with self._lock:
            client = self._inspectors.get(provider)
            if client is None:
                client = self._inspectors[provider] = self._build(provider, None)
            return client

    def _build(self, provider: str, api_key: str | None) -> ChatClient:
        """表の import パスからクライアントを作る。"""
        path = self.client_classes.get(provider)
        if path is None:
            raise ConfigurationError(f"unknown provider '{provider}' (known: {', '.join(self.client_classes)})")
        module_name, _, class_name = path.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(
                f"provider '{provider}' is not available: cannot import {path} ({exc.__class__.__name__})"
            ) from exc
        return cls(self.settings.provider(provider), api_key)

    # ------------------------------------------------------------ エージェントが設定から引くもの

    def context_tokens(self, provider: str, model: str) -> int | None:
        """モデルの文脈の大きさ (トークン。:func:`~llm_router.config.schema.context_tokens_for`)。未知のプロバイダは ``None``。"""
        from llm_router.config.schema import context_tokens_for

        try:
            config = self.settings.provider(provider)
        except KeyError:
            return None
        return context_tokens_for(config, model)

    def retry_backoff_s(self, provider: str) -> float:
        """プロバイダの再試行設定の最初の待ち時間 (秒。``providers.<p>.retry.initial_backoff_s``)。"""
        try:
            return float(self.settings.provider(provider).retry.initial_backoff_s)
        except KeyError:
            return 0.0

    def secret_values(self) -> tuple[str, ...]:
        """イベントやエラーの文言で伏せる秘密の値 (API キー、接続トークン)。"""
        return tuple(self.settings.secrets.all_values())

    def tool_warnings(self, spec: str | None, tools: list[ToolDefinition]) -> list[str]:
        """``spec`` のモデルのプロバイダへ ``tools`` を送るときに落とす・書き換えるキーワードの警告。"""
        if not tools:
            return []
        route = self.resolve(spec)
        return list(self._inspector(route.provider).tool_warnings(tools, route.model))

    def reasoning_warning(self, spec: str | None, level: ReasoningLevel) -> str | None:
        """推論 ``level`` をモデルが受けられないときの警告 (受けられれば ``None``)。"""
        route = self.resolve(spec)
        return self._inspector(route.provider).reasoning_warning(route.model, level)

    # ------------------------------------------------------------ 一覧

    def available_models(self) -> list[dict[str, Any]]:
        """選べるモデルの一覧 (各プロバイダの既定、別名・プリセット・auto 候補・フォールバックの行き先)。

        各要素は ``{"id", "provider", "model", "aliases", "has_key", "demo", "retired", "note"}``。
        """
        entries: dict[str, dict[str, Any]] = {}
        specs = [f"{p}/{self.settings.provider(p).chat_model}" for p in self.settings.provider_names()]
        specs += list(self._models.auto_candidates)
        for source, targets in self._models.fallbacks.items():
            specs += [source, *targets]
        named = {**self._models.presets, **self._models.aliases}
        for spec in [*specs, *named.values()]:
            self._add_entry(entries, spec)
        for name, target in named.items():
            entry = self._add_entry(entries, target)
            if entry is not None and name not in entry["aliases"]:
                entry["aliases"].append(name)
        return list(entries.values())

    def _add_entry(self, entries: dict[str, dict[str, Any]], spec: str) -> dict[str, Any] | None:
        """一覧に ``spec`` を足す (解決できない設定はログに残して飛ばす)。"""
        try:
            route = self.resolve(spec)
        except ConfigurationError as exc:
            logger.warning("models: skipping %r: %s", spec, exc)
            return None
        if route.spec not in entries:
            options = self.settings.model_options(route.provider, route.model)
            entries[route.spec] = {
                "id": route.spec,
                "provider": route.provider,
                "model": route.model,
                "aliases": [],
                "has_key": self.settings.has_credentials(route.provider),
                "demo": route.provider == "demo",
                "retired": options.retired,
                "note": options.note,
            }
        return entries[route.spec]

    def close(self) -> None:
        """作ったクライアントの接続をすべて閉じる。"""
        with self._lock:
            clients = [*self._clients.values(), *self._inspectors.values()]
            self._clients.clear()
            self._inspectors.clear()
        for client in clients:
            try:
                client.close()
            except Exception:  # 終了処理では 1 つの失敗で他を閉じ損ねないようにする
                logger.debug("closing a client failed", exc_info=True)


__all__ = ["AUTO", "CLIENT_CLASSES", "ModelRoute", "ModelRouter"]
