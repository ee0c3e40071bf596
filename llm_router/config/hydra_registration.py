"""構造化設定 (:mod:`llm_router.config.schema`) を Hydra の ConfigStore に登録する (Hydra を読むのはここだけ)。"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore

from llm_router.config.schema import AppConfig


def register_configs() -> None:
    """構造化設定を Hydra の ConfigStore に登録する (何度呼んでもよい)。"""
    cs = ConfigStore.instance()
    cs.store(name="base_config", node=AppConfig)
