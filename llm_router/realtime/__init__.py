"""リアルタイム層: Socket.IO の ``/agent`` 名前空間、ペイロードの検証、スレッド登録簿、イベントログ、認証。"""

from llm_router.realtime.auth import Authenticator, RateLimiter, origin_checker
from llm_router.realtime.emitter import ThreadEmitter
from llm_router.realtime.event_log import EventLog
from llm_router.realtime.registry import ThreadRegistry
from llm_router.realtime.routes import AgentNamespace
from llm_router.realtime.schemas import ProtocolError

__all__ = [
    "AgentNamespace",
    "Authenticator",
    "EventLog",
    "ProtocolError",
    "RateLimiter",
    "ThreadEmitter",
    "ThreadRegistry",
    "origin_checker",
]
