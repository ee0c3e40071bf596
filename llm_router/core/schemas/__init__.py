"""共有の語彙: メッセージ、ツール、ストリームのチャンク、使用量、埋め込み、エラー。"""

from llm_router.core.schemas.common import *  # noqa: F403
from llm_router.core.schemas.common import __all__ as _common_all

__all__ = list(_common_all)
