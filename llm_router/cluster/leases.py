"""実行中のランのリースの読み手: スレッドのランの持ち主 (コマンドの宛先) を引く。

リースを書く (取る・延ばす・外す) のも、持ち主を失ったランを閉じるのもストア
(``llm_router.store.redis.RedisStore``) と ``llm_router.realtime.cluster.ClusterRuntime``。
ここは、そのリースのキー (``<prefix>:t:<thread_id>:lease``) の中身 ``{"process", "run_id", ...}`` を読むだけ。
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_router.cluster.connection import Keys, unavailable_errors

if TYPE_CHECKING:
    import redis


@dataclass(frozen=True)
class LeaseHolder:
    """リースの中身: 持ち主のプロセス id とラン id。"""

    process_id: str
    run_id: str

    @classmethod
    def parse(cls, token: bytes | str) -> LeaseHolder:
        """リースの中身 (JSON) から読む。"""
        text = token.decode() if isinstance(token, bytes) else token
        data = json.loads(text)
        return cls(process_id=data["process"], run_id=data["run_id"])


class RunLeases:
    """ランのリースの読み手 (全スレッド分)。

    Args:
        client: redis-py のクライアント。
        keys: キーの名前。
    """

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        """クライアントとキーの名前を受け取る。"""
        self.client = client
        self.keys = keys or Keys()

    def holder(self, thread_id: str) -> LeaseHolder | None:
        """今の持ち主 (いなければ ``None``)。

        Raises:
            StoreUnavailable: Redis に届かないとき。
        """
        with unavailable_errors(self.client, "run lease read"):
            token = self.client.get(self.keys.lease(thread_id))
        return LeaseHolder.parse(token) if token else None
