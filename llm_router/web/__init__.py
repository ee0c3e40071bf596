"""同梱のエージェントコンソール (テンプレートと静的ファイル) と、それを Flask に登録する関数。"""

from llm_router.web.routes import api_info, register_web

__all__ = ["api_info", "register_web"]
