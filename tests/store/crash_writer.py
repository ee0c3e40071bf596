"""クラッシュ試験の書き手 (子プロセス): イベントを足し続け、コミットが返るたびに ``seq`` を 1 行ずつ出す。

使い方: ``python -m tests.store.crash_writer <path> <thread_id>``。親がこの行を「受け取った (ack)」とみなし、
途中で SIGKILL する。``seq`` が偶数になるイベントでは履歴も同じトランザクションで足す
(書き手は 1 人なので、次の ``seq`` は ``last_seq + 1``)。
"""

from __future__ import annotations

import sys

from llm_router.core.schemas.common import Message
from llm_router.core.schemas.thread_record import HistoryEntry, StoredThread
from llm_router.store.base import HistoryChange
from llm_router.store.errors import ThreadExists
from llm_router.store.sqlite import SqliteStore


def main() -> None:
    """無限に書き、コミットの後で ``seq`` を出す (親に殺されるまで)。"""
    path, thread_id = sys.argv[1], sys.argv[2]
    store = SqliteStore(path)
    try:
        store.create_thread(StoredThread(thread_id, "alice"))
    except ThreadExists:
        pass
    print("ready", flush=True)
    i = 0
    while True:
        i += 1
        history = None
        if (store.bounds(thread_id).last_seq + 1) % 2 == 0:
            history = HistoryChange(append=[HistoryEntry(Message.user(f"m{i}"), f"msg_{i}", "run_1")])
        (event,) = store.commit(
            thread_id, [{"type": "text_delta", "run_id": "run_1", "text": f"t{i}"}], history=history
        )
        print(event["seq"], flush=True)


if __name__ == "__main__":
    main()
