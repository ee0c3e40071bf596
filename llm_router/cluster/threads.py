"""スレッドの記録と履歴を Redis に置く。持ち主ごとの一覧 (新しい順、カーソルでのページ送り) と持ち主の検査。

- 記録: スレッドごとのハッシュ ``<prefix>:t:<id>:record`` に ``data`` (記録の JSON)、``owner``、``order``
  (一覧での並びのキー)。履歴: JSON 文字列のリスト ``<prefix>:t:<id>:history``。
- 一覧: 持ち主ごとの sorted set (点数はすべて 0、メンバーは ``<updated_at のマイクロ秒 20 桁>|<thread_id>``)
  を ``ZRANGE ... BYLEX REV`` で新しい順に読む。同じ時刻のスレッドも順序が決まり、カーソル (最後のメンバー)
  から続きを読んでも抜けも重複も出ない。カーソルはそのメンバーを URL で安全な base64 にした不透明な文字列。
- 作成・更新は Lua で原子的に: 別の主体のスレッドの上書きは ``forbidden``、スレッド数の上限は作成のときに
  全プロセスを通して検査する (``ThreadCapReached``)。
- 削除は、実行中のランがあれば断り (``run_in_progress``)、なければ記録・履歴・イベントログ・``seq``・
  一覧の項目をまとめて消す。
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_router.cluster.connection import Keys, unavailable_errors

if TYPE_CHECKING:
    import redis

# KEYS: 1 記録, 2 持ち主の一覧。ARGV: 1 data, 2 owner, 3 order, 4 上限 (0 なら無制限)
# 返り値: 1 作成 / 2 更新 / -1 別の主体のもの / -2 上限
PUT_LUA = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[2] then return -1 end
local cap = tonumber(ARGV[4])
if not owner and cap > 0 and redis.call('ZCARD', KEYS[2]) >= cap then return -2 end
local old = redis.call('HGET', KEYS[1], 'order')
if old then redis.call('ZREM', KEYS[2], old) end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'owner', ARGV[2], 'order', ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[3])
if owner then return 2 end
return 1
"""

# KEYS: 1 記録, 2 持ち主の一覧, 3 履歴, 4 イベント, 5 seq, 6 貸与, 7 実行中の表。ARGV: 1 owner, 2 thread_id
# 返り値: 1 消した / 0 無かった / -1 別の主体のもの / -2 実行中のランがある
DELETE_LUA = """
local owner = redis.call('HGET', KEYS[1], 'owner')
if not owner then return 0 end
if owner ~= ARGV[1] then return -1 end
if redis.call('EXISTS', KEYS[6]) == 1 or redis.call('HEXISTS', KEYS[7], ARGV[2]) == 1 then return -2 end
local order = redis.call('HGET', KEYS[1], 'order')
if order then redis.call('ZREM', KEYS[2], order) end
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4], KEYS[5])
return 1
"""

_CURSOR = re.compile(r"^\d{20}\|.{1,200}$")


class ThreadError(Exception):
    """スレッドの操作の拒否。``code`` はプロトコルのエラーコード。"""

    code = "invalid_payload"


class UnknownThread(ThreadError):
    """そのスレッドは無い。"""

    code = "unknown_thread"


class ThreadForbidden(ThreadError):
    """別の主体のスレッド。"""

    code = "forbidden"


class ThreadCapReached(ThreadError):
    """主体のスレッド数が上限に達した (全プロセスを通して)。"""

    code = "rate_limited"


class ThreadBusy(ThreadError):
    """実行中のランがあるので断った。"""

    code = "run_in_progress"


@dataclass(frozen=True)
class ThreadPage:
    """一覧の 1 ページ。``next_cursor`` は続きがあるときだけ。"""

    threads: list[dict[str, Any]]
    next_cursor: str | None


def _encode_cursor(member: str) -> str:
    """一覧のメンバーを不透明なカーソル (URL で安全な base64) にする。"""
    return base64.urlsafe_b64encode(member.encode("utf-8")).decode("ascii").rstrip("=")


def _decode_cursor(cursor: Any) -> str:
    """:func:`_encode_cursor` の逆。壊れた値は ``before`` を名指しした ``ValueError``。"""
    try:
        member = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii")).decode("utf-8")
    except Exception:
        raise ValueError("before: not a cursor returned by list_threads") from None
    if not _CURSOR.match(member):
        raise ValueError("before: not a cursor returned by list_threads")
    return member


def order_key(updated_at: float, thread_id: str) -> str:
    """一覧での並びのキー (更新日時のマイクロ秒 20 桁 + ``|`` + id)。辞書順 = 時刻順。"""
    return f"{max(0, round(updated_at * 1_000_000)):020d}|{thread_id}"


class RedisThreadRecords:
    """スレッドの記録と履歴 (全スレッド分)。

    記録は JSON にできる辞書で、少なくとも ``thread_id``、``owner``、``updated_at`` (壁時計の秒) を持つ。

    Args:
        client: redis-py のクライアント。
        keys: キーの名前。
    """

    def __init__(self, client: redis.Redis, keys: Keys | None = None) -> None:
        """スクリプトを登録する。"""
        self.client = client
        self.keys = keys or Keys()
        self._put = client.register_script(PUT_LUA)
        self._delete = client.register_script(DELETE_LUA)

    def put(self, record: dict[str, Any], max_threads: int = 0) -> bool:
        """記録を書く (無ければ作る)。作ったら真。

        Args:
            record: ``thread_id``、``owner``、``updated_at`` を含む記録。
            max_threads: 作るときの、持ち主のスレッド数の上限 (0 なら無制限)。

        Raises:
            ThreadForbidden: 別の主体の同じ id のスレッドがあるとき (何も変えない)。
            ThreadCapReached: 作ろうとして上限に達していたとき (何も変えない)。
            StoreUnavailable: Redis に届かないとき。
        """
        thread_id, owner = str(record["thread_id"]), str(record["owner"])
        order = order_key(float(record["updated_at"]), thread_id)
        data = json.dumps(record, ensure_ascii=False)
        with unavailable_errors(self.client, "thread write"):
            result = int(
                self._put(
                    keys=[self.keys.thread(thread_id), self.keys.owner_index(owner)],
                    args=[data, owner, order, max(0, int(max_threads))],
                )
            )
        if result == -1:
            raise ThreadForbidden(f"thread {thread_id!r} belongs to another principal")
        if result == -2:
            raise ThreadCapReached(f"principal has reached the thread limit ({max_threads})")
        return result == 1

    def get(self, thread_id: str) -> dict[str, Any] | None:
        """記録 (無ければ ``None``)。持ち主は検査しない。"""
        with unavailable_errors(self.client, "thread read"):
            data = self.client.hget(self.keys.thread(thread_id), "data")
        return json.loads(data) if data else None

    def require(self, thread_id: str, principal: str) -> dict[str, Any]:
        """``principal`` の記録を返す。

        Raises:
            UnknownThread: 無いとき。
            ThreadForbidden: 別の主体のものとき。
        """
        record = self.get(thread_id)
        if record is None:
            raise UnknownThread(f"unknown thread {thread_id!r}")
        if record.get("owner") != principal:
            raise ThreadForbidden(f"thread {thread_id!r} belongs to another principal")
        return record

    def list(self, owner: str, limit: int = 50, before: str | None = None) -> ThreadPage:
        """``owner`` のスレッドを新しい ``updated_at`` 順に最大 ``limit`` 件。

        Args:
            before: 前のページの ``next_cursor`` (それより古いものから続ける)。

        Raises:
            ValueError: ``limit`` が 1..500 の外、または ``before`` が不正なとき (フィールド名を含む)。
        """
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 500:
            raise ValueError("limit: must be an integer from 1 to 500")
        upper = f"({_decode_cursor(before)}" if before is not None else "+"
        with unavailable_errors(self.client, "thread list"):
            members = self.client.zrange(
                self.keys.owner_index(owner), upper, "-", desc=True, bylex=True, offset=0, num=limit + 1
            )
            ids = [m.decode().split("|", 1)[1] for m in members[:limit]]
            pipe = self.client.pipeline(transaction=False)
            for thread_id in ids:
                pipe.hget(self.keys.thread(thread_id), "data")
            rows = pipe.execute() if ids else []
        threads = [json.loads(r) for r in rows if r]
        next_cursor = _encode_cursor(members[limit - 1].decode()) if len(members) > limit else None
        return ThreadPage(threads, next_cursor)

    def append_history(self, thread_id: str, *messages: dict[str, Any]) -> int:
        """履歴の末尾に足し、足した後の件数を返す。"""
        if not messages:
            return self.history_length(thread_id)
        with unavailable_errors(self.client, "history write"):
            return int(
                self.client.rpush(self.keys.history(thread_id), *(json.dumps(m, ensure_ascii=False) for m in messages))
            )

    def history(self, thread_id: str) -> list[dict[str, Any]]:
        """履歴 (古い順)。"""
        with unavailable_errors(self.client, "history read"):
            rows = self.client.lrange(self.keys.history(thread_id), 0, -1)
        return [json.loads(r) for r in rows]

    def history_length(self, thread_id: str) -> int:
        """履歴の件数。"""
        with unavailable_errors(self.client, "history read"):
            return int(self.client.llen(self.keys.history(thread_id)))

    def replace_history(self, thread_id: str, messages: list[dict[str, Any]]) -> None:
        """履歴を丸ごと置き換える (巻き戻し用。MULTI/EXEC で、途中の状態は誰にも見えない)。"""
        key = self.keys.history(thread_id)
        with unavailable_errors(self.client, "history write"):
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(key)
            if messages:
                pipe.rpush(key, *(json.dumps(m, ensure_ascii=False) for m in messages))
            pipe.execute()

    def delete(self, thread_id: str, principal: str) -> bool:
        """スレッドに関するものをすべて消す。あって消したら真、無ければ偽。

        Raises:
            ThreadForbidden: 別の主体のものとき。
            ThreadBusy: 実行中のラン (貸与、または持ち主を失ったランの後始末待ち) があるとき。
        """
        k = self.keys
        with unavailable_errors(self.client, "thread delete"):
            result = int(
                self._delete(
                    keys=[
                        k.thread(thread_id),
                        k.owner_index(principal),
                        k.history(thread_id),
                        k.events(thread_id),
                        k.seq(thread_id),
                        k.lease(thread_id),
                        k.active_runs,
                    ],
                    args=[principal, thread_id],
                )
            )
        if result == -1:
            raise ThreadForbidden(f"thread {thread_id!r} belongs to another principal")
        if result == -2:
            raise ThreadBusy(f"thread {thread_id!r} has a run in progress")
        return result == 1
