"""設定への唯一の入口: Hydra の構造化設定と .env の秘密情報。

- パラメータは Hydra (``hydra_conf/``) から。``app.py`` は ``@hydra.main`` で、ライブラリとテストは
  :func:`load_settings` (compose API) でオーバーライド付きに組み立てる。
- 秘密情報 (API キー、接続トークン、Flask の秘密鍵) は .env と環境変数からのみ読む。
  環境変数が .env より優先される (python-dotenv の既定 ``override=False`` と同じ)。
- 秘密情報は設定の表示・ログには決して含めない (:meth:`Settings.public_dict`)。
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llm_router.config.schema import AppConfig, ModelOptions, ProviderConfig, model_options_for
from llm_router.errors import ConfigurationError, MissingCredentialError

CONFIG_DIR = Path(__file__).resolve().parent / "hydra_conf"
CONFIG_NAME = "config"

# プロバイダごとに API キーを読む環境変数 (先にあるものが優先)。Ollama と demo はキー不要。
PROVIDER_KEY_VARS: dict[str, tuple[str, ...]] = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
    "ollama": (),
    "demo": (),
}
SECRET_VARS: tuple[str, ...] = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "LLM_ROUTER_API_TOKENS",
    "FLASK_SECRET_KEY",
    "LLM_ROUTER_REDIS_URL",
)


def _url_password(url: str) -> list[str]:
    """接続 URL に含まれるパスワード (無ければ空のリスト)。ログの伏せ字処理で URL の一部だけが出ても隠すため。"""
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [p for p in {password, unquote(password)} if p] if password else []


@dataclass(frozen=True)
class Secrets:
    """.env と環境変数から読んだ秘密情報。``repr`` は値を決して出さない。"""

    values: Mapping[str, str] = field(default_factory=dict)
    # .env のすべての変数と環境変数 (``${VAR}`` の置き換え用。ログ・表示には出さない)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)

    def lookup(self, name: str) -> str | None:
        """``${VAR}`` で名指された変数の値 (``SECRET_VARS`` に限らない。空文字は未設定)。"""
        value = self.env.get(name, self.values.get(name))
        return value if value else None

    def get(self, name: str) -> str | None:
        """変数 ``name`` の値 (空文字は未設定とみなす)。"""
        value = self.values.get(name)
        return value.strip() if value and value.strip() else None

    def all_values(self) -> list[str]:
        """設定されている秘密の値すべて (ログの伏せ字処理用)。"""
        out = []
        for name in SECRET_VARS:
            value = self.get(name)
            if not value:
                continue
            if name == "LLM_ROUTER_API_TOKENS":
                out.extend(t.strip() for t in value.split(",") if t.strip())
            elif name == "LLM_ROUTER_REDIS_URL":
                out.append(value)
                out.extend(_url_password(value))
            else:
                out.append(value)
        return out

    def __repr__(self) -> str:
        """値を伏せた表現。"""
        names = sorted(k for k in self.values if self.get(k))
        return f"Secrets(set={names})"


def read_secrets(env_file: str | os.PathLike[str] | None = ".env", environ: Mapping[str, str] | None = None) -> Secrets:
    """.env と環境変数から秘密情報を読む。環境変数が .env より優先される。

    Args:
        env_file: .env のパス。``None`` なら読まない。存在しなければ無視する。
        environ: 環境変数の代わりに使う写像 (テスト用)。既定は ``os.environ``。
    """
    from dotenv import dotenv_values

    values: dict[str, str] = {}
    every: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        for key, value in dotenv_values(env_file).items():
            if value is not None:
                every[key] = value
                if key in SECRET_VARS:
                    values[key] = value
    env = os.environ if environ is None else environ
    every.update({k: v for k, v in env.items() if v})
    for key in SECRET_VARS:
        if env.get(key):
            values[key] = env[key]
    return Secrets(values, every)


# ``${VAR}``、または VS Code / Cursor の mcp.json の書き方 ``${env:VAR}``
ENV_REFERENCE = re.compile(r"\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute_env(text: str, secrets: Secrets, where: str) -> tuple[str, list[str]]:
    """``${VAR}`` (``${env:VAR}`` も) を .env / 環境変数の値に置き換え、(結果, 使った値) を返す。

    使った値は秘密として扱う (ログの伏せ字に加える)。

    Raises:
        ConfigurationError: 名指された変数が設定されていないとき (``where`` と変数名を含む。値は含めない)。
    """
    used: list[str] = []

    def replace(match: re.Match[str]) -> str:
        """1 つの参照を値にする。"""
        value = secrets.lookup(match.group(1))
        if value is None:
            raise ConfigurationError(f"{where}: variable ${{{match.group(1)}}} is not set in .env or the environment")
        used.append(value)
        return value

    return ENV_REFERENCE.sub(replace, text), used


@dataclass(frozen=True)
class Settings:
    """型付きの設定と秘密情報をまとめたもの。アプリ全体でこれ 1 つを受け渡す。"""

    config: AppConfig
    secrets: Secrets

    def provider(self, name: str) -> ProviderConfig:
        """プロバイダ ``name`` の設定。未知なら ``KeyError``。"""
        cfg = getattr(self.config.providers, name, None)
        if not isinstance(cfg, ProviderConfig):
            raise KeyError(f"unknown provider '{name}'")
        return cfg

    def provider_names(self) -> list[str]:
        """設定にあるプロバイダ名の一覧。"""
        return [n for n in PROVIDER_KEY_VARS if isinstance(getattr(self.config.providers, n, None), ProviderConfig)]

    def api_key(self, provider: str) -> str | None:
        """プロバイダの API キー (無ければ ``None``)。"""
        for var in PROVIDER_KEY_VARS.get(provider, ()):
            value = self.secrets.get(var)
            if value:
                return value
        return None

    def require_api_key(self, provider: str) -> str | None:
        """API キーを返す。必要なのに無ければ、設定すべき変数名を含む例外を投げる。

        Raises:
            MissingCredentialError: キーが必要なプロバイダでキーが無いとき。
        """
        names = PROVIDER_KEY_VARS.get(provider, ())
        if not names:
            return None
        key = self.api_key(provider)
        if key is None:
            raise MissingCredentialError(provider, names)
        return key

    def has_credentials(self, provider: str) -> bool:
        """キー不要 (Ollama / demo) か、キーが設定されていれば真。"""
        names = PROVIDER_KEY_VARS.get(provider)
        if names is None:
            return False
        return not names or self.api_key(provider) is not None

    def model_options(self, provider: str, model: str) -> ModelOptions:
        """モデルの癖を設定から引く (``fnmatch`` パターンで最初に一致したもの)。"""
        return model_options_for(self.provider(provider), model)

    @property
    def api_tokens(self) -> list[str]:
        """接続トークン (``LLM_ROUTER_API_TOKENS`` のカンマ区切り)。空なら認証なし。"""
        raw = self.secrets.get("LLM_ROUTER_API_TOKENS") or ""
        return [t.strip() for t in raw.split(",") if t.strip()]

    @property
    def redis_url(self) -> str | None:
        """Redis の接続 URL (``LLM_ROUTER_REDIS_URL``、パスワードを含みうるので決してログに出さない)。"""
        return self.secrets.get("LLM_ROUTER_REDIS_URL")

    @property
    def flask_secret_key(self) -> str | None:
        """Flask の秘密鍵 (``FLASK_SECRET_KEY``)。"""
        return self.secrets.get("FLASK_SECRET_KEY")

    def public_dict(self) -> dict[str, Any]:
        """表示・ログ用の設定 (秘密情報は含まない)。"""
        from omegaconf import OmegaConf

        return OmegaConf.to_container(OmegaConf.structured(self.config), resolve=True)  # type: ignore[return-value]


def settings_from_config(
    cfg: Any, env_file: str | os.PathLike[str] | None = ".env", environ: Mapping[str, str] | None = None
) -> Settings:
    """Hydra が組み立てた ``DictConfig`` から :class:`Settings` を作る (``app.py`` の ``@hydra.main`` 用)。"""
    from omegaconf import OmegaConf

    typed = OmegaConf.to_object(cfg)
    if not isinstance(typed, AppConfig):
        merged = OmegaConf.merge(OmegaConf.structured(AppConfig), cfg)
        typed = OmegaConf.to_object(merged)
    return Settings(config=typed, secrets=read_secrets(env_file, environ))  # type: ignore[arg-type]


def compose_config(overrides: Sequence[str] = ()) -> Any:
    """Hydra の compose API で設定を組み立てる (作業ディレクトリには何も書かない)。"""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from llm_router.config.hydra_registration import register_configs

    register_configs()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=CONFIG_NAME, overrides=list(overrides))


def load_settings(
    overrides: Sequence[str] = (),
    env_file: str | os.PathLike[str] | None = ".env",
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """オーバーライド付きで設定を組み立て、秘密情報と合わせて返す。

    Args:
        overrides: Hydra のオーバーライド (例 ``["server.port=8080"]``)。
        env_file: .env のパス (``None`` なら読まない)。
        environ: 環境変数の代わり (テスト用)。
    """
    return settings_from_config(compose_config(overrides), env_file=env_file, environ=environ)
