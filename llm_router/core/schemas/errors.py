"""共有のエラー型の再輸出 (定義は :mod:`llm_router.errors`: config と core が共に使う依存の無い葉)。"""

from llm_router.errors import *  # noqa: F403
from llm_router.errors import __all__ as __all__
