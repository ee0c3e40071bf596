"""``python -m llm_router.rag`` の入口 (中身は :mod:`llm_router.rag.cli`)。"""

import sys

from llm_router.rag.cli import main

if __name__ == "__main__":
    sys.exit(main())
