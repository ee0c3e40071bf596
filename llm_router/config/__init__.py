"""設定パッケージ: Hydra の構造化設定と .env の秘密情報への唯一の入口。"""

from llm_router.config.settings import Settings, load_settings

__all__ = ["Settings", "load_settings"]
