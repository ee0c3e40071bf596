"""エージェントループ: スレッドの履歴からステップ (モデル呼び出し + ツール) を繰り返し、イベントをシンクへ送る。

Socket.IO も Flask も知らない純粋な Python。流れの図は同じフォルダの README.md。
"""

from llm_router.agent.events import RunEvents
from llm_router.agent.run import AgentRun
from llm_router.agent.sink import CollectingSink, EventSink
from llm_router.agent.thread_state import RunSettings, ThreadState

__all__ = ["AgentRun", "CollectingSink", "EventSink", "RunEvents", "RunSettings", "ThreadState"]
