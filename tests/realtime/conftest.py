"""リアルタイム層のエンドツーエンドテストの部品: 本物のサーバープロセス (eventlet と threading) と偽の OpenAI。

サーバーはモジュールごと・非同期モードごとに 1 つ起動し、OpenAI の偽サーバー (規則モード) を上流にする。
API キーには偽の値を入れ、終了時にサーバーログと全クライアントの受信イベントにその値が無いことを確かめる。
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from tests.fakes.openai_fake import OpenAIFake
from tests.realtime.harness import ProtocolClient, ServerProcess

ASYNC_MODES = ("eventlet", "threading")
FAKE_OPENAI_KEY = "sk-test-NEVER-LEAK-9f8e7d6c5b4a"
FAKE_MODEL = "openai/gpt-4.1-mini"


def base_overrides(fake: OpenAIFake) -> list[str]:
    """偽の OpenAI を既定のモデルにするオーバーライド。"""
    return [
        f"providers.openai.base_url={fake.base_url}",
        f"agent.model={FAKE_MODEL}",
        "providers.openai.retry.initial_backoff_s=0.01",
        "providers.openai.retry.max_backoff_s=0.05",
    ]


def assert_no_secret(server: ServerProcess, clients: list[ProtocolClient], secret: str) -> None:
    """サーバーログと受信イベントのどこにも秘密の値が無いこと。"""
    assert secret not in server.log_text(), "API key found in the server log"
    for client in clients:
        for _, data in client.events:
            assert secret not in json.dumps(data, ensure_ascii=False), "API key found in an event"


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[OpenAIFake]:
    """規則モードの OpenAI の偽サーバー (モジュールで共有)。"""
    with OpenAIFake(rules=True) as fake:
        yield fake


class LiveServer:
    """起動中のサーバーと、そこへ繋いだクライアントの記録。"""

    def __init__(self, process: ServerProcess, fake: OpenAIFake | None, async_mode: str) -> None:
        """サーバープロセス、上流の偽サーバー、非同期モードを受け取る。"""
        self.process = process
        self.fake = fake
        self.async_mode = async_mode
        self.clients: list[ProtocolClient] = []

    @property
    def url(self) -> str:
        """サーバーの URL。"""
        return self.process.url

    def client(self, token: str | None = None, connect: bool = True) -> ProtocolClient:
        """新しいクライアント (既定で接続済み)。テストの終わりに切断される。"""
        client = ProtocolClient(self.url, token=token)
        self.clients.append(client)
        return client.connect() if connect else client

    def disconnect_all(self) -> None:
        """全クライアントを切断する。"""
        for client in self.clients:
            client.disconnect()


def live_server(
    request: pytest.FixtureRequest, fake: OpenAIFake | None, extra: list[str], secrets: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """``request.param`` の非同期モードでサーバーを起動し、終了時に秘密の漏れを確かめる。"""
    mode = request.param
    overrides = (base_overrides(fake) if fake else []) + extra
    secret_values = {"OPENAI_API_KEY": FAKE_OPENAI_KEY, **(secrets or {})} if fake else dict(secrets or {})
    process = ServerProcess(overrides=overrides, secrets=secret_values, async_mode=mode).start()
    live = LiveServer(process, fake, mode)
    try:
        yield live
    finally:
        live.disconnect_all()
        process.stop()
        try:
            for secret in secret_values.values():
                assert_no_secret(process, live.clients, secret)
        finally:
            process.close()


@pytest.fixture(scope="module", params=ASYNC_MODES)
def server(request: pytest.FixtureRequest, openai_fake: OpenAIFake) -> Iterator[LiveServer]:
    """主なテスト用のサーバー (クライアント側ツールのタイムアウト 2 秒、ペイロード上限 64 KiB)。"""
    yield from live_server(
        request,
        openai_fake,
        [
            "agent.client_tool_timeout_s=2",
            "server.max_payload_bytes=65536",
            "server.rate_limit_per_minute=100000",
        ],
    )


@pytest.fixture
def client(server: LiveServer) -> Iterator[ProtocolClient]:
    """接続済みのクライアント 1 つ。"""
    c = server.client()
    yield c
    c.disconnect()


@pytest.fixture
def fresh_fake(openai_fake: OpenAIFake) -> OpenAIFake:
    """記録と切断の印を消した偽の OpenAI。"""
    openai_fake.reset()
    return openai_fake


def run_events(client: ProtocolClient, run_id: str) -> list[dict]:
    """ラン ``run_id`` のイベント (受信順)。"""
    return [d for _, d in client.events if isinstance(d, dict) and d.get("run_id") == run_id]


def types_of(events: list[dict]) -> list[str]:
    """イベントの型の一覧。"""
    return [e["type"] for e in events]


def assert_contiguous(events: list[dict], first: int | None = None) -> None:
    """``seq`` が 1 ずつ増えていること (``first`` があればそこから)。"""
    seqs = [e["seq"] for e in events]
    start = seqs[0] if first is None else first
    assert seqs == list(range(start, start + len(seqs))), seqs


def thread_events(client: ProtocolClient, thread_id: str) -> list[dict]:
    """スレッド ``thread_id`` のイベント (受信順)。"""
    return client.event_payloads(thread_id=thread_id)


Factory = Callable[..., ProtocolClient]
