"""``redis`` バックエンドの置き場所 (複数プロセスでのスケールアウト)。まだ実装されていない。

スレッド・履歴・所有者は Redis に、イベントログはスレッドごとの Redis Stream に、ランのリース
(:meth:`~llm_router.store.base.ThreadStore.acquire_run_lease` など) は期限付きのキーに置く予定。
継ぎ目 (:class:`~llm_router.store.base.Store`) はそのために、リースと ``active_runs`` を持っている。
"""

from __future__ import annotations

from typing import Any

from llm_router.store.errors import StoreConfigurationError


def open_redis_store(settings: Any) -> Any:
    """Redis のストアを開く。いまは常に、``store.backend`` を名指しした設定の誤りを投げる。

    Raises:
        StoreConfigurationError: まだ使えないため。
    """
    raise StoreConfigurationError(
        "store.backend: 'redis' is not yet available in this version; use 'sqlite' (the default) or 'memory' "
        "(store.backend の 'redis' はまだ使えません: 'sqlite' か 'memory' を指定してください)"
    )
