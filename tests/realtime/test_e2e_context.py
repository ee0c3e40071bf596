"""エンドツーエンド: 文脈の小さいモデルで会話を重ねると、古いターンがリクエストから外れる (本物のサーバー + OpenAI の偽サーバー)。

- ``context_trimmed {"step", "dropped_messages", "estimated_tokens"}`` がそのステップの ``step_started`` の前に届く。
- 偽サーバーが受け取った本文は、システムプロンプトが先頭に残り、最古のターンが無く、新しいターンはある。
- 保存された履歴は変わらない: 文脈の大きなモデルに切り替えた次のランでは、外したターンもまた送られる。
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.fakes.openai_fake import OpenAIFake
from tests.realtime.conftest import FAKE_OPENAI_KEY, LiveServer, run_events, types_of
from tests.realtime.harness import ServerProcess

SMALL = "openai/small-context-model"


@pytest.fixture(scope="module")
def fake() -> Iterator[OpenAIFake]:
    """規則モードの OpenAI の偽サーバー。"""
    with OpenAIFake(rules=True) as f:
        yield f


@pytest.fixture(scope="module")
def server(fake: OpenAIFake) -> Iterator[LiveServer]:
    """OpenAI の既定の文脈を 3000 トークンにしたサーバー (``gpt-4.1*`` はパターンの 1047576 のまま)。"""
    overrides = [
        f"providers.openai.base_url={fake.base_url}",
        f"agent.model={SMALL}",
        "providers.openai.context_tokens=3000",
        "agent.max_tokens=200",
        "agent.server_tools=[]",
    ]
    process = ServerProcess(overrides=overrides, secrets={"OPENAI_API_KEY": FAKE_OPENAI_KEY}).start()
    live = LiveServer(process, fake, "eventlet")
    try:
        yield live
    finally:
        live.disconnect_all()
        process.close()


def test_old_turns_are_left_out_of_the_request_and_the_history_is_kept(server, fake):
    """600 字の発言を 3 つ (応答はその文を引用するので 1 ターンはおよそ 1230 トークン): 3 つ目で最古のターンが外れ、大きなモデルに替えると全部が送られる。"""
    client = server.client()
    ack = client.start(system="あなたは簡潔な助手です。")
    assert ack["ok"], ack
    thread_id = ack["thread_id"]
    texts = [f"{i}番目の長い話。" + "あ" * 600 for i in range(1, 4)]
    run_ids = []
    for text in texts:
        run_id = client.send_message(thread_id, text)["run_id"]
        assert client.wait_run_end(run_id)["type"] == "run_finished"
        run_ids.append(run_id)
    first_two = [types_of(run_events(client, r)) for r in run_ids[:2]]
    assert all("context_trimmed" not in t for t in first_two), first_two
    third = run_events(client, run_ids[2])
    assert types_of(third)[:3] == ["run_started", "context_trimmed", "step_started"], types_of(third)
    trimmed = third[1]
    assert trimmed["step"] == 1 and trimmed["dropped_messages"] == 2
    assert 0 < trimmed["estimated_tokens"] <= 3000 - 200
    body = fake.chat_requests()[-1]
    assert body["messages"][0] == {"role": "system", "content": "あなたは簡潔な助手です。"}
    sent = json.dumps(body, ensure_ascii=False)
    assert "1番目の長い話" not in sent and "2番目の長い話" in sent and "3番目の長い話" in sent

    # 保存された履歴はそのまま: 文脈の大きいモデルでは外したターンも送られる
    assert client.start(thread_id=thread_id, model="openai/gpt-4.1-mini")["ok"]
    last = client.send_message(thread_id, "まとめて")["run_id"]
    assert client.wait_run_end(last)["type"] == "run_finished"
    assert "context_trimmed" not in types_of(run_events(client, last))
    sent = json.dumps(fake.chat_requests()[-1], ensure_ascii=False)
    assert all(f"{i}番目の長い話" in sent for i in range(1, 4))
