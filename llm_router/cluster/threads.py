"""スレッドの記録と履歴を Redis に置く。持ち主ごとの一覧 (新しい順、カーソルでのページ送り) と持ち主の検査。

- 記録: スレッドごとのハッシュ ``<prefix>:t:<id>:record`` に ``data`` (記録の JSON)、``owner``、``order``
  (一覧での並びのキー)。履歴: JSON 文字列のリスト ``<prefix>:t:<id>:history``。
- 一覧: 持ち主ごとの sorted set (点数はすべて 0、メンバーは ``<updated_at のマイクロ秒 20 桁>|<thread_id>``)
  を ``ZRANGE ... BYLEX REV`` で新しい順に読む。同じ時刻のスレッドも順序が決まり、カーソル (最後のメンバー)
  から続きを読んでも抜けも重複も出ない。カーソルはそのメンバーを URL で安全な base64 にした不透明な文字列。
- 作成・更新は Lua で原子的に: 別の主体のスレッドの上書きは ``forbidden``、スレッド数の上限は作成のときに
  全プロセスを通して検査する (``limit_reached``)。断るときはどれも :class:`~llm_router.cluster.connection.Refused`。
- 削除は、実行中のランがあれば断り (``run_in_progress``)、なければ記録・履歴・イベントログ・``seq``・
  一覧の項目をまとめて消す。
"""

from __future__ import annotations

import base64
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llm_router.cluster.connection import Keys, Refused, unavailable_errors

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

# 主体の「使用中のスレッド」の表 (sorted set、メンバーはスレッド ID、点数は最後に開いた時刻のミリ秒)。
# 空き (どのプロセスにもソケットが無く、ランの記録もリースも無い) の判定は、スレッドのキーを直接見る:
# ``<t>:present`` (ソケットのあるプロセスと期限)、``<t>:record`` の ``active_run``、``<t>:lease``。
_BUSY_FN = """
local function busy(base, now)
  return redis.call('ZCOUNT', base .. ':present', '(' .. now, '+inf') > 0
    or redis.call('HEXISTS', base .. ':record', 'active_run') == 1
    or redis.call('EXISTS', base .. ':lease') == 1
end
"""

# KEYS: 1 主体の使用中の表。ARGV: 1 thread_id, 2 上限 (0 なら無制限), 3 now (ミリ秒), 4 process_id,
#       5 在席の期限 (ミリ秒), 6 スレッドのキーの接頭辞 (``<prefix>:t:``)
# 返り値: {1, 閉じたスレッド...} 通した / {0, 閉じたスレッド...} 空きが無い (表にも在席にも足さない)
OPEN_LUA = (
    _BUSY_FN
    + """
local tid, cap, now = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local evicted = {}
if cap > 0 and not redis.call('ZSCORE', KEYS[1], tid) and redis.call('ZCARD', KEYS[1]) >= cap then
  for _, other in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if redis.call('ZCARD', KEYS[1]) < cap then break end
    local base = ARGV[6] .. other
    if redis.call('EXISTS', base .. ':record') == 0 or not busy(base, now) then
      redis.call('ZREM', KEYS[1], other)
      evicted[#evicted + 1] = other
    end
  end
  if redis.call('ZCARD', KEYS[1]) >= cap then return {0, unpack(evicted)} end
end
redis.call('ZADD', KEYS[1], now, tid)
local present = ARGV[6] .. tid .. ':present'
redis.call('ZADD', present, now + tonumber(ARGV[5]), ARGV[4])
redis.call('PEXPIRE', present, ARGV[5])
return {1, unpack(evicted)}
"""
)

# KEYS: 1 主体の使用中の表。ARGV: 1 now (ミリ秒), 2 スレッドのキーの接頭辞, 3.. thread_id。
# 空きのものだけ表から外す (別のプロセスで使われているものは残す)。返り値: 外した数
CLOSE_LUA = (
    _BUSY_FN
    + """
local removed = 0
for i = 3, #ARGV do
  local base = ARGV[2] .. ARGV[i]
  if redis.call('EXISTS', base .. ':record') == 0 or not busy(base, tonumber(ARGV[1])) then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed
"""
)


_CURSOR = re.compile(r"^\d{20}\|.{1,200}$")


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
            Refused: 別の主体の同じ id のスレッドがあるとき (``forbidden``)、作ろうとして上限に達していたとき
                (``limit_reached``)。どちらも何も変えない。
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
            raise Refused("forbidden", f"thread {thread_id!r} belongs to another principal")
        if result == -2:
            raise Refused("limit_reached", f"principal has reached the thread limit ({max_threads})")
        return result == 1

    def get(self, thread_id: str) -> dict[str, Any] | None:
        """記録 (無ければ ``None``)。持ち主は検査しない。"""
        with unavailable_errors(self.client, "thread read"):
            data = self.client.hget(self.keys.thread(thread_id), "data")
        return json.loads(data) if data else None

    def require(self, thread_id: str, principal: str) -> dict[str, Any]:
        """``principal`` の記録を返す。

        Raises:
            Refused: 無いとき (``unknown_thread``)、別の主体のものとき (``forbidden``)。
        """
        record = self.get(thread_id)
        if record is None:
            raise Refused("unknown_thread", f"unknown thread {thread_id!r}")
        if record.get("owner") != principal:
            raise Refused("forbidden", f"thread {thread_id!r} belongs to another principal")
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
            Refused: 別の主体のものとき (``forbidden``)、実行中のラン (貸与、または持ち主を失ったランの後始末待ち)
                があるとき (``run_in_progress``)。
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
            raise Refused("forbidden", f"thread {thread_id!r} belongs to another principal")
        if result == -2:
            raise Refused("run_in_progress", f"thread {thread_id!r} has a run in progress")
        return result == 1


@dataclass(frozen=True)
class OpenResult:
    """:meth:`OpenThreads.open` の結果。``evicted`` は空きだったので使用中の表から外した (閉じた) スレッド。"""

    allowed: bool
    evicted: list[str]


class OpenThreads:
    """主体ごとの使用中のスレッドの数 (``server.max_threads_per_principal``) を全プロセスで数える。

    1 プロセスのときの「プロセスで開いているスレッド」の代わりに、主体の使用中の表 (Redis の sorted set) を使う。
    新しく開く (表に無い) スレッドが上限に当たったら、どのプロセスにもソケットが無く、ランも動いていない
    最古のスレッドを表から外して (閉じて) 通し、外せるものが無ければ断る。閉じたスレッドはストアに残る。
    確かめて足すまでを 1 つの Lua で行い、開いたプロセスの在席も同時に書くので、2 つのプロセスが同時に開いても
    上限を超えず、開いたばかりのスレッドが別のプロセスに「空き」と見なされることもない。

    Args:
        client: redis-py のクライアント。
        process_id: このプロセスの id (在席に書く)。
        presence_ttl_s: 在席の期限 (``llm_router.realtime.cluster.ClusterRuntime`` の在席と同じ長さ)。
        keys: キーの名前。
    """

    def __init__(self, client: redis.Redis, process_id: str, presence_ttl_s: float, keys: Keys | None = None) -> None:
        """スクリプトを登録する。"""
        self.client = client
        self.process_id = process_id
        self.presence_ttl_ms = max(1, int(presence_ttl_s * 1000))
        self.keys = keys or Keys()
        self._open = client.register_script(OPEN_LUA)
        self._close = client.register_script(CLOSE_LUA)

    def _key(self, principal: str) -> str:
        """主体の使用中の表。"""
        return self.keys.in_use(principal)

    def open(self, principal: str, thread_id: str, limit: int) -> OpenResult:
        """スレッドを主体の使用中に数える (既に数えていれば時刻を新しくするだけ)。

        Raises:
            StoreUnavailable: Redis に届かないとき。
        """
        args = [thread_id, max(0, int(limit)), int(time.time() * 1000), self.process_id, self.presence_ttl_ms]
        with unavailable_errors(self.client, "thread cap"):
            result = self._open(keys=[self._key(principal)], args=[*args, f"{self.keys.prefix}:t:"])
        return OpenResult(bool(int(result[0])), [m.decode() if isinstance(m, bytes) else m for m in result[1:]])

    def close(self, principal: str, thread_ids: list[str], force: bool = False) -> None:
        """スレッドを使用中から外す (``force`` でなければ、どのプロセスでも空きのものだけ)。"""
        if not thread_ids:
            return
        with unavailable_errors(self.client, "thread cap"):
            if force:
                self.client.zrem(self._key(principal), *thread_ids)
                return
            args = [int(time.time() * 1000), f"{self.keys.prefix}:t:", *thread_ids]
            self._close(keys=[self._key(principal)], args=args)

    def count(self, principal: str) -> int:
        """主体の使用中のスレッドの数。"""
        with unavailable_errors(self.client, "thread cap"):
            return int(self.client.zcard(self._key(principal)))
