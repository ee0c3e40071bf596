"""保存できるスレッドの形: 設定 (モデル、システムプロンプト、ツール、実行設定)、履歴、題名、所有者、時刻。

ストア (``llm_router/store``) はこれをそのまま保存し、再起動の後に同じものを返す。時刻はすべて
壁時計 (``time.time()``、UNIX 秒) で、再起動をまたいでも意味が変わらない。

- 履歴の 1 件 (:class:`HistoryEntry`) はメッセージに ``message_id``・``run_id``・``created_at`` を添えたもの
  (``get_history`` が返し、``rewind`` がランの単位で消すために要る)。
- ``settings`` は ``start.settings`` と同じ JSON の dict (指定された項目だけ。:meth:`RunSettings.to_dict` の形)。
  設定の 5 つは :meth:`StoredThread.thread_config` / :meth:`StoredThread.set_thread_config` で共有の
  :class:`~llm_router.core.schemas.thread_settings.ThreadConfig` (エージェントの ``ThreadState`` の土台) と行き来する。
- ``provider_state`` はスレッド単位のプロバイダの不透明なデータ (例: 次のユーザーの番まで thinking を
  止めておく、といった状態)。メッセージ単位のものは :class:`~llm_router.core.schemas.common.ProviderState`。
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from llm_router.core.schemas.common import Message, ToolDefinition
from llm_router.core.schemas.serialization import (
    SerializationError,
    decode_value,
    encode_value,
    message_from_dict,
    message_to_dict,
    tool_definition_from_dict,
    tool_definition_to_dict,
)
from llm_router.core.schemas.thread_settings import RunSettings, ThreadConfig

RECORD_VERSION = 1


@dataclass
class HistoryEntry:
    """履歴の 1 件: メッセージと、それを入れたラン・時刻・ID。"""

    message: Message
    message_id: str
    run_id: str | None = None
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """JSON 互換の dict にする。"""
        return {
            "message_id": self.message_id,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "message": message_to_dict(self.message),
        }

    @classmethod
    def from_dict(cls, data: Any, path: str = "entry") -> HistoryEntry:
        """:meth:`to_dict` の逆。誤りは欄の場所を名指しした :class:`SerializationError`。"""
        if not isinstance(data, dict):
            raise SerializationError(path, "expected an object")
        message_id = data.get("message_id")
        if not isinstance(message_id, str) or not message_id:
            raise SerializationError(f"{path}.message_id", "expected a non-empty string")
        run_id = data.get("run_id")
        if run_id is not None and not isinstance(run_id, str):
            raise SerializationError(f"{path}.run_id", "expected a string or null")
        created_at = data.get("created_at", 0.0)
        if not isinstance(created_at, int | float) or isinstance(created_at, bool):
            raise SerializationError(f"{path}.created_at", "expected a number")
        return cls(
            message=message_from_dict(data.get("message"), f"{path}.message"),
            message_id=message_id,
            run_id=run_id,
            created_at=float(created_at),
        )


@dataclass
class StoredThread:
    """ストアに保存する 1 スレッド。

    Attributes:
        thread_id: スレッド ID。
        owner: 所有者の主体 (認証トークンから決まる)。
        model: ``provider/model`` か別名 (``None`` は既定のモデル)。
        system: システムプロンプト。
        client_tools: クライアント側ツールの正規形の定義。
        server_tools: 使うサーバー側ツール名 (``None`` は設定の既定)。
        settings: 実行設定 (``start.settings`` の JSON の形)。
        history: モデルに見せる履歴 (システムプロンプトは含めない)。
        provider_state: スレッド単位のプロバイダの不透明なデータ。
        title: 題名 (``None`` は未設定)。
        created_at: 作った時刻 (壁時計)。
        updated_at: 最後に履歴か設定か題名を変えた時刻 (壁時計)。
    """

    thread_id: str
    owner: str
    model: str | None = None
    system: str | None = None
    client_tools: list[ToolDefinition] = field(default_factory=list)
    server_tools: list[str] | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    history: list[HistoryEntry] = field(default_factory=list)
    provider_state: dict[str, Any] = field(default_factory=dict)
    title: str | None = None
    created_at: float = field(default_factory=time.time)
    updated_at: float = 0.0

    def __post_init__(self) -> None:
        """``updated_at`` が未設定なら ``created_at`` にそろえる。"""
        if not self.updated_at:
            self.updated_at = self.created_at

    def thread_config(self) -> ThreadConfig:
        """設定の 5 つ (モデル、システムプロンプト、ツール 2 種、実行設定) を共有の :class:`ThreadConfig` にする。"""
        return ThreadConfig(
            model=self.model,
            system=self.system,
            client_tools=list(self.client_tools),
            server_tools=None if self.server_tools is None else list(self.server_tools),
            settings=RunSettings.from_dict(self.settings),
        )

    def set_thread_config(self, config: ThreadConfig) -> None:
        """:meth:`thread_config` の逆: 設定の 5 つを ``config`` のものにする (``settings`` は JSON の dict で持つ)。"""
        self.model, self.system = config.model, config.system
        self.client_tools = list(config.client_tools)
        self.server_tools = None if config.server_tools is None else list(config.server_tools)
        self.settings = config.settings.to_dict()

    def messages(self) -> list[Message]:
        """履歴のメッセージだけのリスト (エージェントの ``ThreadState.history`` の形)。"""
        return [entry.message for entry in self.history]

    def config_dict(self) -> dict[str, Any]:
        """履歴と題名と時刻を除いた設定の部分 (ストアが 1 つの JSON として保存する)。"""
        return {
            "version": RECORD_VERSION,
            "model": self.model,
            "system": self.system,
            "client_tools": [tool_definition_to_dict(t) for t in self.client_tools],
            "server_tools": None if self.server_tools is None else list(self.server_tools),
            "settings": encode_value(self.settings),
            "provider_state": encode_value(self.provider_state),
        }

    def apply_config_dict(self, data: Any, path: str = "thread") -> None:
        """:meth:`config_dict` の形の dict をこのスレッドに写す (検査してから、全部か何もしないか)。"""
        if not isinstance(data, dict):
            raise SerializationError(path, "expected an object")
        version = data.get("version", RECORD_VERSION)
        if version != RECORD_VERSION:
            raise SerializationError(f"{path}.version", f"unsupported record version {version!r}")
        for key in ("model", "system"):
            if data.get(key) is not None and not isinstance(data[key], str):
                raise SerializationError(f"{path}.{key}", "expected a string or null")
        tools_raw = data.get("client_tools", [])
        if not isinstance(tools_raw, list):
            raise SerializationError(f"{path}.client_tools", "expected a list")
        tools = [tool_definition_from_dict(t, f"{path}.client_tools[{i}]") for i, t in enumerate(tools_raw)]
        server_tools = data.get("server_tools")
        if server_tools is not None and (
            not isinstance(server_tools, list) or not all(isinstance(n, str) for n in server_tools)
        ):
            raise SerializationError(f"{path}.server_tools", "expected a list of strings or null")
        settings = decode_value(data.get("settings", {}))
        if not isinstance(settings, dict):
            raise SerializationError(f"{path}.settings", "expected an object")
        provider_state = decode_value(data.get("provider_state", {}))
        if not isinstance(provider_state, dict):
            raise SerializationError(f"{path}.provider_state", "expected an object")
        self.model, self.system = data.get("model"), data.get("system")
        self.client_tools = tools
        self.server_tools = None if server_tools is None else list(server_tools)
        self.settings = settings
        self.provider_state = provider_state

    def to_dict(self) -> dict[str, Any]:
        """全体を JSON 互換の dict にする。"""
        out = self.config_dict()
        out.update(
            {
                "thread_id": self.thread_id,
                "owner": self.owner,
                "title": self.title,
                "created_at": self.created_at,
                "updated_at": self.updated_at,
                "history": [entry.to_dict() for entry in self.history],
            }
        )
        return out

    @classmethod
    def from_dict(cls, data: Any, path: str = "thread") -> StoredThread:
        """:meth:`to_dict` の逆。誤りは欄の場所を名指しした :class:`SerializationError`。"""
        if not isinstance(data, dict):
            raise SerializationError(path, "expected an object")
        for key in ("thread_id", "owner"):
            if not isinstance(data.get(key), str) or not data[key]:
                raise SerializationError(f"{path}.{key}", "expected a non-empty string")
        title = data.get("title")
        if title is not None and not isinstance(title, str):
            raise SerializationError(f"{path}.title", "expected a string or null")
        times = {}
        for key in ("created_at", "updated_at"):
            value = data.get(key, 0.0)
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise SerializationError(f"{path}.{key}", "expected a number")
            times[key] = float(value)
        history_raw = data.get("history", [])
        if not isinstance(history_raw, list):
            raise SerializationError(f"{path}.history", "expected a list")
        thread = cls(thread_id=data["thread_id"], owner=data["owner"], title=title, **times)
        thread.apply_config_dict(data, path)
        thread.history = [HistoryEntry.from_dict(e, f"{path}.history[{i}]") for i, e in enumerate(history_raw)]
        return thread
