"""エンドツーエンド: 永続するスレッド (sqlite のストア) と、サーバーの停止・クラッシュからの回復。

本物のサーバープロセスを偽の OpenAI (台本モード、ゆっくり流すストリーム) に向けて起動し、同じ sqlite の
ファイルで再起動する:

- SIGKILL で流れている途中に落とす → 再起動後の再送 (``resume_after_seq: 0``) はクライアントが見たイベントを
  すべて含み ``seq`` は欠けずに続く。切れたランは ``run_error`` ``interrupted`` (``retryable: true``) で 1 回だけ
  終わる。次のメッセージでは、システムプロンプト・クライアント側ツール・サーバー側ツールの呼び出しと結果が
  そのままプロバイダへ届く。
- SIGTERM (穏やかな停止) → ランは ``run_cancelled`` reason ``shutdown`` で終わり、再起動後のログにもある。
- 読み取り専用のストアのファイル → 再送はできるが、新しいランは ``store_unavailable`` で断られ、ファイルは壊れない。
- 新しいフォルダでの最初の起動がストアのファイルを作る。
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.openai_fake import OpenAIFake
from tests.realtime.conftest import FAKE_OPENAI_KEY, assert_contiguous, base_overrides
from tests.realtime.harness import ProtocolClient, ServerProcess, free_port, wait_until

SYSTEM = "あなたは計算の助手です。"
CLIENT_TOOL = {
    "name": "get_location",
    "description": "ブラウザの現在地",
    "parameters": {"type": "object", "properties": {}},
}
TERMINAL = ("run_finished", "run_error", "run_cancelled")


@pytest.fixture
def fake():
    """台本モードの偽の OpenAI (テストごと)。"""
    with OpenAIFake() as fake:
        yield fake


def make_server(fake: OpenAIFake, store_path: Path, **kwargs) -> ServerProcess:
    """``store_path`` の sqlite を使うサーバー (まだ起動しない)。"""
    overrides = [*base_overrides(fake), f"store.path={store_path}"]
    return ServerProcess(overrides=overrides, secrets={"OPENAI_API_KEY": FAKE_OPENAI_KEY}, **kwargs)


def thread_log(client: ProtocolClient, thread_id: str) -> list[dict]:
    """クライアントが受け取った、そのスレッドのイベント (受信順)。"""
    return client.event_payloads(thread_id=thread_id)


def start_streaming_run(client: ProtocolClient, fake: OpenAIFake) -> tuple[str, str]:
    """サーバー側ツールの 1 ステップの後に、ゆっくり流れるテキストのステップが続くランを始める。"""
    fake.add_tool_call_turn([("calculator", {"expression": "2+3*4"})])
    fake.add_text_turn("答えは 14 です。" * 60, chunk_size=2, delay_s=0.05)
    ack = client.start(thread_id="durable-1", system=SYSTEM, tools=[CLIENT_TOOL])
    assert ack["ok"] and ack["protocol"] == "1.1", ack
    run_id = client.send_message("durable-1", "2+3*4 を計算して")["run_id"]
    client.wait_for("tool_result", lambda e: e["run_id"] == run_id)
    wait_until(
        lambda: len(client.event_payloads("text_delta", thread_id="durable-1")) >= 5,
        timeout=20,
        message="the paced text did not start",
    )
    return "durable-1", run_id


def test_sigkill_mid_stream_then_restart_replays_everything_and_the_history_reaches_the_provider(fake, tmp_path):
    """SIGKILL で落としても、見たイベントは全部ログにあり、ランは interrupted で閉じ、次の会話は履歴の上で続く。"""
    store = tmp_path / "store.sqlite3"
    server = make_server(fake, store)
    try:
        server.start()
        first = ProtocolClient(server.url).connect()
        thread_id, run_id = start_streaming_run(first, fake)
        server.proc.kill()  # SIGKILL: 後始末の機会は無い
        server.proc.wait(10)
        seen = thread_log(first, thread_id)
        first.disconnect()
        assert seen and not any(e["type"] in TERMINAL for e in seen), "the run must be cut mid-stream"

        server.start()
        second = ProtocolClient(server.url).connect()
        ack = second.start(thread_id=thread_id, resume_after_seq=0)
        assert ack["ok"], ack
        end = second.wait_run_end(run_id)
        replay = thread_log(second, thread_id)
        assert_contiguous(replay, first=1)
        by_seq = {e["seq"]: e for e in replay}
        for event in seen:
            assert by_seq.get(event["seq"]) == event, f"event {event['seq']} the client saw is not replayed intact"
        ends = [e for e in replay if e["run_id"] == run_id and e["type"] in TERMINAL]
        assert ends == [end] and end["type"] == "run_error", ends
        assert end["error"]["code"] == "interrupted" and end["error"]["retryable"] is True
        assert end["error"]["phase"] == "mid_stream" and end["rolled_back"] is False
        assert end["seq"] == replay[-1]["seq"] > max(e["seq"] for e in seen) and ack["last_seq"] == end["seq"]

        # 次のメッセージ: 履歴 (システムプロンプト、ツール、サーバー側ツールの呼び出しと結果) がそのまま届く
        fake.add_text_turn("続きです。")
        before = len(fake.chat_requests())
        run2 = second.send_message(thread_id, "続けて")["run_id"]
        assert second.wait_run_end(run2)["type"] == "run_finished"
        body = fake.chat_requests()[before]
        messages = body["messages"]
        assert messages[0] == {"role": "system", "content": SYSTEM}
        assert {t["function"]["name"] for t in body["tools"]} >= {"calculator", "get_location"}
        roles = [m["role"] for m in messages]
        assert roles == ["system", "user", "assistant", "tool", "user"], roles
        assert messages[1]["content"] == "2+3*4 を計算して"
        call = messages[2]["tool_calls"][0]
        assert call["function"]["name"] == "calculator" and '"2+3*4"' in call["function"]["arguments"]
        assert messages[3]["tool_call_id"] == call["id"] and "14" in messages[3]["content"]
        assert messages[4]["content"] == "続けて"
        second.disconnect()
    finally:
        server.close()


def test_sigterm_ends_the_active_run_with_shutdown_and_it_is_in_the_log_after_a_restart(fake, tmp_path):
    """SIGTERM: ランは run_cancelled reason shutdown で終わり、再起動後の再送にもそれが 1 回だけある。"""
    store = tmp_path / "store.sqlite3"
    server = make_server(fake, store)
    try:
        server.start()
        client = ProtocolClient(server.url).connect()
        thread_id, run_id = start_streaming_run(client, fake)
        server.proc.send_signal(signal.SIGTERM)
        end = client.wait_run_end(run_id)
        assert end["type"] == "run_cancelled" and end["reason"] == "shutdown", end
        assert server.proc.wait(20) == 0
        client.disconnect()

        server.start()
        again = ProtocolClient(server.url).connect()
        assert again.start(thread_id=thread_id, resume_after_seq=0)["ok"]
        replayed_end = again.wait_run_end(run_id)
        assert replayed_end == end
        replay = thread_log(again, thread_id)
        assert_contiguous(replay, first=1)
        assert [e["type"] for e in replay if e["type"] in TERMINAL] == ["run_cancelled"]
        history = again.call("get_history", {"thread_id": thread_id})
        assert history["ok"] and history["last_seq"] == end["seq"]
        assistant = [m for m in history["messages"] if m["role"] == "assistant"]
        assert assistant[-1]["interrupted"] is True, "the cut text is kept, marked interrupted"
        again.disconnect()
    finally:
        server.close()


def make_read_only(path: Path) -> list[str]:
    """ファイルを書けなくし (root なら chattr +i、それ以外は chmod でファイルとフォルダを)、戻すコマンドを返す。"""
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"running as root and chattr +i failed ({done.stderr.decode().strip()})")
        return ["chattr", "-i", str(path)]
    path.chmod(0o444)
    path.parent.chmod(0o555)
    return ["chmod", "755", str(path.parent)]


def test_read_only_store_file_replays_but_refuses_new_runs_with_store_unavailable(fake, tmp_path):
    """読み取り専用のファイル: 再送と一覧はでき、user_message は store_unavailable。ファイルは壊れない。"""
    folder = tmp_path / "ro"
    folder.mkdir()
    store = folder / "store.sqlite3"
    server = make_server(fake, store)
    try:
        server.start()
        client = ProtocolClient(server.url).connect()
        fake.add_text_turn("はい。")
        assert client.start(thread_id="ro-1")["ok"]
        run_id = client.send_message("ro-1", "こんにちは")["run_id"]
        end = client.wait_run_end(run_id)
        client.disconnect()
        server.stop()
        undo = make_read_only(store)
        try:
            server.start()
            reader = ProtocolClient(server.url).connect()
            ack = reader.start(thread_id="ro-1", resume_after_seq=0)
            assert ack["ok"] and ack["last_seq"] == end["seq"], ack
            assert reader.wait_run_end(run_id) == end
            refused = reader.send_message("ro-1", "もう一度")
            assert refused["ok"] is False and refused["error"]["code"] == "store_unavailable", refused
            assert str(store) in refused["error"]["message"]
            listed = reader.call("list_threads", {})
            assert [t["thread_id"] for t in listed["threads"]] == ["ro-1"]
            reader.disconnect()
        finally:
            subprocess.run(undo, check=False)
        conn = sqlite3.connect(store)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    finally:
        server.close()


def test_first_start_on_a_fresh_folder_creates_the_store_file(tmp_path):
    """store.path の既定 (data/llm_router.sqlite3) は、新しいフォルダでの最初の起動で作られ、そのまま使える。"""
    root = Path(__file__).resolve().parents[2]
    work = tmp_path / "fresh"
    work.mkdir()
    for name in ("app.py", "llm_router", "tools"):
        if (root / name).exists():
            (work / name).symlink_to(root / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI", "ANTHROPIC", "GEMINI", "LLM_ROUTER"))}
    env["LLM_ROUTER_ENV_FILE"] = str(tmp_path / "none.env")
    (tmp_path / "none.env").write_text("", encoding="utf-8")
    port = free_port()
    log_path = tmp_path / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "app.py", f"server.port={port}"], cwd=work, env=env, stdout=log, stderr=log
        )
        try:
            client = ProtocolClient(f"http://127.0.0.1:{port}")
            wait_until(lambda: _connects(client), timeout=30, message=f"server did not start: {log_path}")
            path = work / "data" / "llm_router.sqlite3"
            assert path.is_file()
            assert client.start(thread_id="fresh-1")["ok"]
            client.disconnect()
            conn = sqlite3.connect(path)
            assert conn.execute("SELECT thread_id FROM threads").fetchall() == [("fresh-1",)]
            conn.close()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _connects(client: ProtocolClient) -> bool:
    """接続できたら真 (まだ起動中なら偽)。"""
    try:
        client.connect(timeout=2)
        return True
    except Exception:
        return False
