"""会話スレッドの状態: スレッドの設定 (:class:`ThreadConfig` の 5 つ) と履歴。

同じ :class:`ThreadState` を次の実行 (run) でも使う。エージェントループは実行の開始時に
ユーザーメッセージを、各ステップの終わりにアシスタントメッセージとツール結果を ``history`` に加える。
設定の型 (:class:`RunSettings`、:class:`ThreadConfig`) は共有の語彙 ``core/schemas/thread_settings.py`` にある。
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from llm_router.core.schemas.common import Message
from llm_router.core.schemas.thread_settings import RunSettings, ThreadConfig


@dataclass
class ThreadState(ThreadConfig):
    """1 つの会話スレッドの状態 (実行をまたいで保持する)。設定の 5 つは :class:`ThreadConfig` から。

    Attributes:
        thread_id: スレッド ID。
        history: 会話の履歴 (システムプロンプトは含めない)。
    """

    thread_id: str = ""
    history: list[Message] = field(default_factory=list)

    def use_config(self, config: ThreadConfig) -> None:
        """次の実行のために、スレッドの設定 (5 つ) を ``config`` のものにする (履歴はそのまま)。"""
        for f in fields(ThreadConfig):
            value = getattr(config, f.name)
            setattr(self, f.name, list(value) if isinstance(value, list) else value)


__all__ = ["RunSettings", "ThreadConfig", "ThreadState"]
