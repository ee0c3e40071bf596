"""``redis`` バックエンド: 複数のサーバープロセスが 1 つの Redis でスレッド・履歴・イベントログ・ランを共有する。

キーの名前は ``llm_router.cluster.connection.Keys`` (接頭辞は ``store.redis.key_prefix``)。1 スレッドのキー:

- ``…:t:<id>:record`` (ハッシュ): ``owner``、``config`` (JSON)、``title`` (JSON)、``created_at``、``updated_at``、
  ``order`` (一覧の並びのキー)、``log_bytes`` (ログのバイト数の控え)、``active_run``。
- ``…:t:<id>:history`` (リスト): 履歴の 1 件 1 要素 (``HistoryEntry.to_dict`` の JSON)。
- ``…:t:<id>:events`` (ストリーム): ID ``<seq>-0``、フィールド ``e`` (イベントの JSON、``seq`` を除く)、
  ``t`` (壁時計の秒)、``s`` (大きさのバイト数)。``…:t:<id>:seq``: 最後に配った ``seq`` (切り詰めても消さない)。
- ``…:t:<id>:runs`` (ハッシュ): ``run_id`` → ``<開始>|<終了 (終わっていなければ空)>`` (壁時計の秒)。``…:t:<id>:lease``: ランのリース
  (``{"process", "run_id", "exp"}`` の JSON、期限つき)。
- ``<prefix>:open_runs`` (セット): 終わっていないラン ``<thread_id>\\x1f<run_id>`` (起動時・持ち主の死の回復用)。
- ``<prefix>:owner:<主体>:threads`` (sorted set): 一覧 (点数 0、メンバー ``<updated_at µs 20 桁>|<id>``)。

約束は sqlite / memory と同じ (``tests/store/test_contract.py`` が 3 つとも確かめる):

- 書き込みはどれも 1 つの Lua スクリプト (Redis はスクリプトを 1 つずつ実行する) なので、別々のプロセスが同時に
  書いても ``seq`` は重複も飛びもしない。スクリプトは検査 (スレッドの有無、``truncate_to`` の範囲) を先に
  済ませてから書くので、断られたときは何も書かれない。イベントの JSON 化 (JSON にできない値の検出) は
  送る前に Python で行う。
- 時刻は呼ぶ側の壁時計 (``time.time()``) を引数で渡す (Redis の ``TIME`` ではない。どのプロセスの時計でも
  経過秒の上限とリースの期限は同じ規則で効き、テストでは時計を差し替えられる)。リースのキーには同じ長さの
  ``PX`` も付け、持ち主が死んだリースは Redis の上でも消える。
- Redis に届かない (接続拒否、タイムアウト) と :class:`StoreUnavailable` (何の操作か・宛先。パスワードは
  含まない)。redis-py は次のコマンドで繋ぎ直し、スクリプトも読み直す (``NOSCRIPT`` のとき) ので、Redis が
  戻ればプロセスを再起動せずに続く。
- 終わりの記録 (``run_ended``) は 1 つのランに 1 回だけ: 既に終わったランの終わりや、そのランのイベント
  (``thread_rewound`` を除く) を書こうとすると (リースを失った古い持ち主が、別のプロセスが ``interrupted`` で
  閉じたランに書き足そうとしたとき) 何も書かずに :class:`RunAlreadyEnded` (``StoreUnavailable`` の一種) になる。
- コミットはグループコミット (``llm_router.store.redis_pipeline.CommitQueue``): 1 つの往復の間に来た別々のスレッドのコミットを、次の 1 回の
  往復 (EVALSHA のパイプライン、専用の接続) でまとめて書く。わざと待つことはなく、どの呼び出しも自分の分が
  書かれてから返る。各項目は別々のスクリプトなので、1 つの拒否は他の項目に響かない。
- Redis を永続化せずに再起動すると中身は消える。本番では Redis の AOF (``appendonly yes``) を使う
  (docs/deployment.md)。
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llm_router.cluster.connection import Keys, connect, describe, redact_url, unavailable_errors
from llm_router.core import json_codec
from llm_router.core.schemas.serialization import SerializationError
from llm_router.core.schemas.thread_record import HistoryEntry, StoredThread
from llm_router.store.base import ActiveRun, CommitItem, LogBounds, LogLimits, Store, ThreadSummary
from llm_router.store.errors import (
    RunAlreadyEnded,
    StoreConfigurationError,
    StoreUnavailable,
    ThreadExists,
    UnknownThread,
)
from llm_router.store.log_rules import encode_event
from llm_router.store.redis_pipeline import CommitQueue, DedicatedPipeline

if TYPE_CHECKING:
    import redis

logger = logging.getLogger(__name__)

# 先頭から上限を超えたイベントを捨てる (最新の 1 件は残す)。log_bytes の控えも減らす。返り値: 捨てた件数
_TRIM_FN = """
local function trim(rec, ev, now, max_events, max_bytes, max_age)
  local dropped = 0
  local count = redis.call('XLEN', ev)
  local bytes = tonumber(redis.call('HGET', rec, 'log_bytes') or '0')
  while count > 1 do
    local over = (max_events > 0 and count > max_events) or (max_bytes > 0 and bytes > max_bytes)
    if not over and max_age <= 0 then break end
    local head = redis.call('XRANGE', ev, '-', '+', 'COUNT', 1)
    local fields = head[1][2]
    local ts, size = 0, 0
    for i = 1, #fields, 2 do
      if fields[i] == 't' then ts = tonumber(fields[i + 1]) elseif fields[i] == 's' then size = tonumber(fields[i + 1]) end
    end
    over = over or (max_age > 0 and ts < now - max_age)
    if not over then break end
    redis.call('XDEL', ev, head[1][1])
    count = count - 1
    bytes = bytes - size
    dropped = dropped + 1
  end
  if dropped > 0 then redis.call('HSET', rec, 'log_bytes', bytes) end
  return dropped
end
"""

# KEYS: 1 record, 2 seq, 3 events, 4 history, 5 runs, 6 open_runs, 7 lease, 8 owner index (空でもよい)
# ARGV: 1 now, 2 max_events, 3 max_bytes, 4 max_age, 5 イベントの件数 N, 6 truncate_to (-1 なし), 7 追加の件数 M,
#       8 題名 ("\\0" なし / JSON), 9 run_started, 10 run_ended, 11 thread_id, 12 新しい order,
#       13.. N 件の (イベント, 大きさ), その後 M 件の履歴, その後 書き手のプロセス id ("" なら検査しない),
#       その後 fencing するラン ID (終わっていれば、または書き手がそのランの期限内のリースを持っていなければ何も書かない)
# 返り値: 最初に付けた seq (イベントが無ければ 0)
COMMIT_LUA = (
    _TRIM_FN
    + """
local AGE_CHECK_EVERY = 32
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('UNKNOWN_THREAD') end
local now = tonumber(ARGV[1])
local n, truncate, m = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
if truncate >= 0 then
  local len = redis.call('LLEN', KEYS[4])
  if truncate > len then return redis.error_reply('TRUNCATE ' .. len) end
end
local function ended(run_id)
  local run = redis.call('HGET', KEYS[5], run_id)
  return run and string.match(run, '|(.*)$') ~= ''
end
if ARGV[10] ~= '' and ended(ARGV[10]) then return redis.error_reply('RUN_ENDED') end
local writer = ARGV[13 + 2 * n + m]
local function leased(run_id)
  if writer == '' then return true end
  local lease = redis.call('GET', KEYS[7])
  if not lease then return false end
  local held = cjson.decode(lease)
  return held['run_id'] == run_id and held['process'] == writer and tonumber(held['exp']) > now
end
for i = 14 + 2 * n + m, #ARGV do
  if ended(ARGV[i]) then return redis.error_reply('RUN_ENDED') end
  if not leased(ARGV[i]) then return redis.error_reply('LEASE_LOST') end
end
local first = 0
local added = 0
for i = 0, n - 1 do
  local body, size = ARGV[13 + 2 * i], ARGV[14 + 2 * i]
  local seq = redis.call('INCR', KEYS[2])
  if first == 0 then first = seq end
  redis.call('XADD', KEYS[3], seq .. '-0', 'e', body, 't', ARGV[1], 's', size)
  added = added + tonumber(size)
end
if added > 0 then redis.call('HINCRBY', KEYS[1], 'log_bytes', added) end
local changed = false
if truncate >= 0 then
  if truncate == 0 then redis.call('DEL', KEYS[4]) else redis.call('LTRIM', KEYS[4], 0, truncate - 1) end
  changed = true
end
if m > 0 then
  redis.call('RPUSH', KEYS[4], unpack(ARGV, 13 + 2 * n, 12 + 2 * n + m))
  changed = true
end
if truncate >= 0 or m > 0 or ARGV[8] ~= '\\0' then changed = true end
if ARGV[8] ~= '\\0' then redis.call('HSET', KEYS[1], 'title', ARGV[8]) end
if changed then
  local old = redis.call('HGET', KEYS[1], 'order')
  local owner = redis.call('HGET', KEYS[1], 'owner')
  local index = KEYS[8] .. owner .. ':threads'
  if old then redis.call('ZREM', index, old) end
  redis.call('ZADD', index, 0, ARGV[12])
  redis.call('HSET', KEYS[1], 'updated_at', ARGV[1], 'order', ARGV[12])
end
local sep = string.char(31)
if ARGV[9] ~= '' then
  redis.call('HSET', KEYS[5], ARGV[9], ARGV[1] .. '|')
  redis.call('SADD', KEYS[6], ARGV[11] .. sep .. ARGV[9])
  redis.call('HSET', KEYS[1], 'active_run', ARGV[9])
end
if ARGV[10] ~= '' then
  local run = redis.call('HGET', KEYS[5], ARGV[10])
  if run then
    redis.call('HSET', KEYS[5], ARGV[10], string.match(run, '^[^|]*') .. '|' .. ARGV[1])
    redis.call('SREM', KEYS[6], ARGV[11] .. sep .. ARGV[10])
    if redis.call('HGET', KEYS[1], 'active_run') == ARGV[10] then redis.call('HDEL', KEYS[1], 'active_run') end
    local lease = redis.call('GET', KEYS[7])
    if lease and cjson.decode(lease)['run_id'] == ARGV[10] then redis.call('DEL', KEYS[7]) end
  end
end
-- 経過秒による切り詰めは、seq が AGE_CHECK_EVERY の倍数をまたぐコミットでだけ見る (毎回の先頭の読み取りを省く。
-- 経過秒を過ぎたものは、切り詰める前でも読み取り (after / bounds) に出ない)。件数とバイト数は毎回
local max_age = tonumber(ARGV[4])
if n == 0 or math.floor((first + n - 1) / AGE_CHECK_EVERY) == math.floor((first - 1) / AGE_CHECK_EVERY) then
  max_age = 0
end
trim(KEYS[1], KEYS[3], now, tonumber(ARGV[2]), tonumber(ARGV[3]), max_age)
return first
"""
)

# KEYS: 1 record, 2 events。ARGV: 1 now, 2 max_events, 3 max_bytes, 4 max_age。返り値: 捨てた件数
TRIM_LUA = (
    _TRIM_FN
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('UNKNOWN_THREAD') end
return trim(KEYS[1], KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
"""
)

# KEYS: 1 record, 2 owner index。ARGV: 1 owner, 2 config, 3 title, 4 created_at, 5 updated_at, 6 order, 7.. 履歴
CREATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'config', ARGV[2], 'title', ARGV[3], 'created_at', ARGV[4],
  'updated_at', ARGV[5], 'order', ARGV[6], 'log_bytes', 0)
redis.call('ZADD', KEYS[2], 0, ARGV[6])
if #ARGV > 6 then redis.call('RPUSH', KEYS[3], unpack(ARGV, 7, #ARGV)) end
return 1
"""

# KEYS: 1 record, 2 owner index の接頭辞。ARGV: 1 title ("\\0" なし), 2 config ("\\0" なし), 3 now, 4 order
UPDATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('UNKNOWN_THREAD') end
if ARGV[1] ~= '\\0' then redis.call('HSET', KEYS[1], 'title', ARGV[1]) end
if ARGV[2] ~= '\\0' then redis.call('HSET', KEYS[1], 'config', ARGV[2]) end
local index = KEYS[2] .. redis.call('HGET', KEYS[1], 'owner') .. ':threads'
local old = redis.call('HGET', KEYS[1], 'order')
if old then redis.call('ZREM', index, old) end
redis.call('ZADD', index, 0, ARGV[4])
redis.call('HSET', KEYS[1], 'updated_at', ARGV[3], 'order', ARGV[4])
return 1
"""

# KEYS: 1 record, 2 history, 3 events, 4 seq, 5 runs, 6 lease, 7 open_runs, 8 owner index の接頭辞。ARGV: 1 thread_id
DELETE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local owner = redis.call('HGET', KEYS[1], 'owner')
local order = redis.call('HGET', KEYS[1], 'order')
if order then redis.call('ZREM', KEYS[8] .. owner .. ':threads', order) end
local sep = string.char(31)
for _, run in ipairs(redis.call('HKEYS', KEYS[5])) do redis.call('SREM', KEYS[7], ARGV[1] .. sep .. run) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
return 1
"""

# KEYS: 1 record, 2 runs, 3 open_runs, 4 lease。ARGV: 1 run_id, 2 now, 3 "start" / "end", 4 thread_id
MARK_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('UNKNOWN_THREAD') end
local sep = string.char(31)
if ARGV[3] == 'start' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|')
  redis.call('SADD', KEYS[3], ARGV[4] .. sep .. ARGV[1])
  redis.call('HSET', KEYS[1], 'active_run', ARGV[1])
  return 1
end
local run = redis.call('HGET', KEYS[2], ARGV[1])
if run then
  redis.call('HSET', KEYS[2], ARGV[1], string.match(run, '^[^|]*') .. '|' .. ARGV[2])
end
redis.call('SREM', KEYS[3], ARGV[4] .. sep .. ARGV[1])
if redis.call('HGET', KEYS[1], 'active_run') == ARGV[1] then redis.call('HDEL', KEYS[1], 'active_run') end
local lease = redis.call('GET', KEYS[4])
if lease and cjson.decode(lease)['run_id'] == ARGV[1] then redis.call('DEL', KEYS[4]) end
return 1
"""

# KEYS: 1 record, 2 lease, 3 runs。ARGV: 1 run_id, 2 owner, 3 now, 4 ttl_s, 5 "acquire" / "renew" / "release",
#       6 新しいリースの JSON (Python で作る: 期限を丸めずに持つため)
# 返り値: 1 できた / 0 できない (他の期限内のリース、終わったラン、もう自分のものではない)
LEASE_LUA = """
local op = ARGV[5]
local current = redis.call('GET', KEYS[2])
local mine = false
local live = false
if current then
  local lease = cjson.decode(current)
  mine = lease['run_id'] == ARGV[1] and lease['process'] == ARGV[2]
  live = tonumber(lease['exp']) > tonumber(ARGV[3])
end
if op == 'release' then
  if mine then redis.call('DEL', KEYS[2]) end
  return 1
end
if op == 'renew' then
  if not mine or not live or redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
else
  if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('UNKNOWN_THREAD') end
  if live and not mine then return 0 end
  local active = redis.call('HGET', KEYS[1], 'active_run')
  if active and active ~= ARGV[1] then return 0 end
  local run = redis.call('HGET', KEYS[3], ARGV[1])
  if run and string.match(run, '|(.*)$') ~= '' then return 0 end
end
redis.call('SET', KEYS[2], ARGV[6], 'PX', math.max(1, math.floor(tonumber(ARGV[4]) * 1000)))
return 1
"""

_NONE = "\0"
_SEP = "\x1f"
# 1 回の往復 (パイプライン) で書くコミットの最大数
COMMIT_BATCH = 128


def order_key(updated_at: float, thread_id: str) -> str:
    """一覧での並びのキー (``updated_at`` のマイクロ秒 20 桁 + ``|`` + id)。辞書順 = ``(updated_at, id)`` の順。"""
    return f"{max(0, round(updated_at * 1_000_000)):020d}|{thread_id}"


def _text(value: Any) -> str:
    """Redis の値 (bytes) を文字列にする。"""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


class RedisStore(Store):
    """Redis のストア (継ぎ目の :class:`~llm_router.store.base.Store`)。

    Args:
        client: redis-py のクライアント (:func:`llm_router.cluster.connection.connect`)。
        limits: イベントログの上限。
        keys: キーの名前 (接頭辞)。
        clock: 壁時計 (テスト用に差し替えられる)。
    """

    backend = "redis"

    def __init__(
        self, client: redis.Redis, limits: LogLimits | None = None, keys: Keys | None = None, clock: Any = time.time
    ) -> None:
        """スクリプトを登録する (Redis にはまだ繋がない: 最初のコマンドで繋ぐ)。"""
        self.client = client
        self.limits = limits or LogLimits()
        self.keys = keys or Keys()
        self._clock = clock
        self._commit = client.register_script(COMMIT_LUA)
        self._trim = client.register_script(TRIM_LUA)
        self._create = client.register_script(CREATE_LUA)
        self._update = client.register_script(UPDATE_LUA)
        self._delete = client.register_script(DELETE_LUA)
        self._mark = client.register_script(MARK_LUA)
        self._lease = client.register_script(LEASE_LUA)
        # コミットはすべてこの窓口を通る: 同じ瞬間に書こうとしている別々のスレッドのコミットを、1 回の往復
        # (EVALSHA のパイプライン) で書く。わざと待つことはない (pause なし): 前のまとまりの往復の間に
        # 加わったものが次のまとまりになる。書くのは常に 1 つのリーダーだけなので、専用の接続を使う
        self._group = CommitQueue(self._write_batch, COMMIT_BATCH)
        self._pipe = DedicatedPipeline(client)
        self._commit_lock = self._pipe.lock  # 専用の接続を使っている間持つロック (テストはこれで往復を止める)
        # このプロセスのリースの持ち主の id (:meth:`fence_writes`)。None ならランのイベントのリースを検査しない
        self.writer_id: str | None = None

    def fence_writes(self, owner_id: str) -> None:
        """以後、ランのイベントは ``owner_id`` がそのランの期限内のリースを持つときだけ書く (fencing)。

        リースが切れた (長く止まっていた) 持ち主は、別のプロセスがランを閉じる前でも 1 件も書けない:
        書こうとすると :class:`~llm_router.store.errors.RunAlreadyEnded` (終わりを書きそびれたランと同じ扱い:
        ランは別のプロセスが ``interrupted`` で閉じる) で、何も書かれない。``run_started`` と ``thread_rewound`` は検査しない。
        """
        self.writer_id = owner_id

    @property
    def commit_round_trips(self) -> int:
        """専用の接続での往復の回数 (コミットとリースの更新。テストと計測のため)。"""
        return self._pipe.round_trips

    # ------------------------------------------------------------ キーと共通の部品

    def _k(self, thread_id: str, kind: str) -> str:
        """スレッドのキー ``<prefix>:t:<id>:<kind>``。"""
        return f"{self.keys.prefix}:t:{thread_id}:{kind}"

    @property
    def _open_runs(self) -> str:
        """終わっていないランのセット。"""
        return f"{self.keys.prefix}:open_runs"

    @property
    def _index_prefix(self) -> str:
        """持ち主の一覧のキーの前半 (``<prefix>:owner:``。後ろに ``<主体>:threads`` が付く)。"""
        return f"{self.keys.prefix}:owner:"

    def _limit_args(self) -> list[Any]:
        """上限の引数 (件数・バイト数・経過秒。0 は上限なし)。"""
        lim = self.limits
        return [lim.max_events or 0, lim.max_bytes or 0, lim.max_age_s or 0]

    def _call(self, what: str, script: Any, keys: list[str], args: list[Any], thread_id: str = "") -> Any:
        """スクリプトを実行する。Redis に届かなければ ``StoreUnavailable``、スクリプトの拒否は対応する例外に。"""
        import redis

        with unavailable_errors(self.client, what):
            try:
                return script(keys=keys, args=args)
            except redis.ResponseError as exc:
                raise self._refusal(what, str(exc), thread_id) from None

    def _refusal(self, what: str, text: str, thread_id: str) -> Exception:
        """スクリプトの拒否 (Redis のエラーの文言) を、呼ぶ側に返す例外にする。"""
        if "UNKNOWN_THREAD" in text:
            return UnknownThread(thread_id)
        if "LEASE_LOST" in text:
            return RunAlreadyEnded(
                f"redis: this process no longer holds the run lease in thread '{thread_id}' "
                "(it expired or another process took it); nothing was written"
            )
        if "RUN_ENDED" in text:
            return RunAlreadyEnded(
                f"redis: the run already ended in thread '{thread_id}' (another process closed it); "
                "its end is not written a second time"
            )
        if text.startswith("TRUNCATE") or "TRUNCATE " in text:
            length = text.rsplit(" ", 1)[-1]
            return ValueError(f"truncate_to: outside the history (0..{length})")
        return StoreUnavailable(f"redis refused {what} ({describe(self.client)}): {text[:200]}")

    # ------------------------------------------------------------ スレッド

    def create_thread(self, thread: StoredThread) -> None:
        """スレッドを作る (履歴があればそれも)。同じ ID があれば ``ThreadExists``。"""
        tid = thread.thread_id
        config = json.dumps(thread.config_dict(), ensure_ascii=False)
        history = [json_codec.dumps(e.to_dict(), ensure_ascii=False) for e in thread.history]
        args = [
            thread.owner,
            config,
            json.dumps(thread.title, ensure_ascii=False),
            repr(float(thread.created_at)),
            repr(float(thread.updated_at)),
            order_key(thread.updated_at, tid),
            *history,
        ]
        keys = [self._k(tid, "record"), self.keys.owner_index(thread.owner), self._k(tid, "history")]
        if not int(self._call("thread create", self._create, keys, args, tid)):
            raise ThreadExists(tid)

    def load_thread(self, thread_id: str) -> StoredThread | None:
        """スレッドを履歴ごと読む (無ければ ``None``)。"""
        with unavailable_errors(self.client, "thread read"):
            pipe = self.client.pipeline(transaction=True)
            pipe.hmget(self._k(thread_id, "record"), "owner", "config", "title", "created_at", "updated_at")
            pipe.lrange(self._k(thread_id, "history"), 0, -1)
            (owner, config, title, created_at, updated_at), rows = pipe.execute()
        if owner is None:
            return None
        thread = StoredThread(
            thread_id,
            _text(owner),
            title=json.loads(title) if title else None,
            created_at=float(created_at),
            updated_at=float(updated_at),
        )
        try:
            thread.apply_config_dict(json.loads(config), f"threads[{thread_id}].config")
            thread.history = [
                HistoryEntry.from_dict(json_codec.loads(r), f"threads[{thread_id}].history[{i}]")
                for i, r in enumerate(rows)
            ]
        except (ValueError, SerializationError) as exc:
            raise StoreUnavailable(f"redis: thread '{thread_id}' is unreadable ({exc})") from exc
        return thread

    def thread_owner(self, thread_id: str) -> str | None:
        """所有者 (無ければ ``None``)。"""
        with unavailable_errors(self.client, "thread read"):
            owner = self.client.hget(self._k(thread_id, "record"), "owner")
        return None if owner is None else _text(owner)

    def _newest_threads(self, owner: str, bound: tuple[float, str] | None, count: int) -> list[ThreadSummary]:
        """所有者のスレッドを ``(updated_at, thread_id)`` の降順で ``count`` 件まで。"""
        upper = "(" + order_key(*bound) if bound is not None else "+"
        with unavailable_errors(self.client, "thread list"):
            members = self.client.zrange(
                self.keys.owner_index(owner), upper, "-", desc=True, bylex=True, offset=0, num=count
            )
            ids = [_text(m).split("|", 1)[1] for m in members]
            pipe = self.client.pipeline(transaction=False)
            for tid in ids:
                pipe.hmget(self._k(tid, "record"), "title", "config", "created_at", "updated_at", "active_run")
                pipe.get(self._k(tid, "seq"))
            rows = pipe.execute() if ids else []
        summaries = []
        for i, tid in enumerate(ids):
            (title, config, created_at, updated_at, active), seq = rows[2 * i], rows[2 * i + 1]
            if config is None:
                continue  # 読む間に消された
            summaries.append(
                ThreadSummary(
                    tid,
                    json.loads(title) if title else None,
                    json.loads(config).get("model"),
                    float(created_at),
                    float(updated_at),
                    int(seq) if seq else 0,
                    _text(active) if active else None,
                )
            )
        return summaries

    def _update_thread(self, thread_id: str, title: str | None, config: StoredThread | None, now: float) -> None:
        """題名か設定を書き、``updated_at`` を ``now`` にする (検証と時刻は :meth:`Store.update_thread`)。"""
        args = [
            _NONE if title is None else json.dumps(title, ensure_ascii=False),
            _NONE if config is None else json.dumps(config.config_dict(), ensure_ascii=False),
            repr(float(now)),
            order_key(now, thread_id),
        ]
        self._call("thread update", self._update, [self._k(thread_id, "record"), self._index_prefix], args, thread_id)

    def delete_thread(self, thread_id: str) -> bool:
        """スレッドと、その履歴・イベント・``seq``・ラン・リースを消す。消したら真。"""
        keys = [self._k(thread_id, k) for k in ("record", "history", "events", "seq", "runs", "lease")]
        keys += [self._open_runs, self._index_prefix]
        return bool(int(self._call("thread delete", self._delete, keys, [thread_id], thread_id)))

    # ------------------------------------------------------------ イベントと履歴

    def commit_batch(self, items: Sequence[CommitItem]) -> None:
        """項目を書く (各項目は 1 つの Lua スクリプトで全部か何もなし。結果か誤りは項目に入る)。

        同時に呼ばれた別の呼び出しの項目と一緒に、EVALSHA のパイプライン 1 回で送る (グループコミット、
        ``llm_router.store.group``)。わざと待つことはない。
        """
        self._group.commit(list(items))

    def _commit_args(self, item: CommitItem) -> tuple[list[str], list[Any]]:
        """1 項目の ``COMMIT_LUA`` のキーと引数 (誤りのある項目は ``ValueError`` / ``SerializationError``)。"""
        thread_id, events, history = item.thread_id, item.events, item.history
        now = self._clock() if item.now is None else item.now
        bodies: list[Any] = []
        for event in events:
            body = encode_event({k: v for k, v in event.items() if k != "seq"})
            # 大きさは seq を含めた JSON のバイト数で数える (``,"seq":N`` の分を足す。N は 12 桁までの見込み)
            bodies += [body, (len(body) if body.isascii() else len(body.encode("utf-8"))) + 20]
        entries = [json_codec.dumps(e.to_dict(), ensure_ascii=False) for e in history.append] if history else []
        truncate = history.truncate_to if history is not None and history.truncate_to is not None else -1
        if history is not None and history.truncate_to is not None and history.truncate_to < 0:
            raise ValueError(f"truncate_to: {history.truncate_to} is outside the history")
        # 終わったランのイベントは書かない (リースを失った古い持ち主が、interrupted の後に書き足さない)。
        # thread_rewound は終わったランを名指しするので除く
        fenced = sorted(
            {
                str(e["run_id"])
                for e in events
                if e.get("run_id") and e.get("type") != "thread_rewound" and e.get("run_id") != item.run_started
            }
        )
        prefix = f"{self.keys.prefix}:t:{thread_id}:"
        keys = [
            prefix + "record",
            prefix + "seq",
            prefix + "events",
            prefix + "history",
            prefix + "runs",
            self._open_runs,
            prefix + "lease",
            self._index_prefix,
        ]
        args = [
            repr(float(now)),
            *self._limit_args(),
            len(events),
            truncate,
            len(entries),
            _NONE if item.title is None else json.dumps(item.title, ensure_ascii=False),
            item.run_started or "",
            item.run_ended or "",
            thread_id,
            order_key(now, thread_id),
            *bodies,
            *entries,
            self.writer_id or "",
            *fenced,
        ]
        return keys, args

    def _write_batch(self, items: Sequence[CommitItem]) -> None:
        """(グループコミットのリーダーとして) 項目を EVALSHA のパイプライン 1 回で書き、結果か誤りを項目に入れる。

        スクリプトが Redis のキャッシュに無ければ (Redis の再起動の後)、読み込んで、それで断られた項目だけを
        もう一度送る (NOSCRIPT で断られた項目は何も書いていない)。Redis に届かなければ、全部の項目が
        ``StoreUnavailable`` になる。
        """
        ready: list[tuple[CommitItem, tuple[Any, ...]]] = []
        for item in items:
            try:
                keys, args = self._commit_args(item)
            except (ValueError, SerializationError) as exc:
                item.error = exc
                continue
            ready.append((item, (keys, args)))
        if not ready:
            return
        try:
            replies = self._evalsha_many("commit", self._commit, [call for _, call in ready])
        except StoreUnavailable as exc:
            for item, _ in ready:
                item.error = exc
            return
        for (item, _), reply in zip(ready, replies, strict=True):
            if isinstance(reply, Exception):
                item.error = self._refusal("commit", str(reply), item.thread_id)
                continue
            first = int(reply)
            for i, event in enumerate(item.events):
                event["seq"] = first + i
            item.result = list(item.events)

    def _evalsha_many(self, what: str, script: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """同じスクリプトを ``(keys, args)`` ごとに、専用の接続の 1 回の往復 (パイプライン) で実行し、返事を順に返す。

        Raises:
            StoreUnavailable: Redis に届かないとき。
        """
        with unavailable_errors(self.client, what):
            return self._pipe.evalsha_many(script, calls)

    def trim(self, thread_id: str, now: float | None = None) -> int:
        """上限を超えた古いイベントを捨て、捨てた件数を返す。"""
        now = self._clock() if now is None else now
        keys = [self._k(thread_id, "record"), self._k(thread_id, "events")]
        return int(self._call("event trim", self._trim, keys, [repr(float(now)), *self._limit_args()], thread_id))

    def _first_visible(self, thread_id: str) -> tuple[int, int]:
        """``(読める最古の seq, 最後の seq)``。経過秒の上限を過ぎた先頭は (消えていなくても) 読めない。

        最新の 1 件は必ず読める。ふつうは先頭の 1 件を見るだけ (1 往復)。
        """
        events = self._k(thread_id, "events")
        with unavailable_errors(self.client, "event log read"):
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(self._k(thread_id, "record"))
            pipe.get(self._k(thread_id, "seq"))
            pipe.xrange(events, "-", "+", count=1)
            exists, last, head = pipe.execute()
            if not exists:
                raise UnknownThread(thread_id)
            last = int(last) if last else 0
            if not head:
                return last + 1, last
            max_age = self.limits.max_age_s
            if not max_age:
                return int(_text(head[0][0]).split("-")[0]), last
            cutoff = self._clock() - max_age
            start = "-"
            while True:
                chunk = self.client.xrange(events, start, "+", count=100)
                for entry_id, fields in chunk:
                    seq = int(_text(entry_id).split("-")[0])
                    if seq >= last or float(fields[b"t"]) >= cutoff:
                        return seq, last
                if len(chunk) < 100:
                    return last, last
                start = "(" + _text(chunk[-1][0])

    def after(self, thread_id: str, seq: int, limit: int | None = None) -> list[dict[str, Any]]:
        """``seq`` より後の保持しているイベントを古い順に返す (経過秒の上限を過ぎたものは含めない)。"""
        first, last = self._first_visible(thread_id)
        start = max(int(seq) + 1, first)
        if start > last:
            return []
        with unavailable_errors(self.client, "event replay"):
            entries = self.client.xrange(self._k(thread_id, "events"), f"{start}-0", "+", count=limit)
        out = []
        for entry_id, fields in entries:
            event = json_codec.loads(fields[b"e"])
            event["seq"] = int(_text(entry_id).split("-")[0])
            out.append(event)
        return out

    def bounds(self, thread_id: str) -> LogBounds:
        """保持している範囲。"""
        first, last = self._first_visible(thread_id)
        return LogBounds(first, last)

    # ------------------------------------------------------------ ランとリース

    def _mark_run(self, thread_id: str, run_id: str, op: str, now: float | None) -> None:
        """ランの開始 (``start``) か終わり (``end``) を記録する。"""
        now = self._clock() if now is None else now
        keys = [self._k(thread_id, "record"), self._k(thread_id, "runs"), self._open_runs, self._k(thread_id, "lease")]
        self._call(f"run {op}", self._mark, keys, [run_id, repr(float(now)), op, thread_id], thread_id)

    def mark_run_active(self, thread_id: str, run_id: str, now: float | None = None) -> None:
        """ランが始まったことを記録する。"""
        self._mark_run(thread_id, run_id, "start", now)

    def mark_run_ended(self, thread_id: str, run_id: str, now: float | None = None) -> None:
        """ランが終わったことを記録し、そのランのリースを外す。"""
        self._mark_run(thread_id, run_id, "end", now)

    def active_runs(self) -> list[ActiveRun]:
        """終わっていないラン (全プロセスの分。リースの持ち主と期限つき)。"""
        with unavailable_errors(self.client, "active runs read"):
            members = [_text(m).split(_SEP, 1) for m in self.client.smembers(self._open_runs)]
            pipe = self.client.pipeline(transaction=False)
            for tid, rid in members:
                pipe.hget(self._k(tid, "runs"), rid)
                pipe.get(self._k(tid, "lease"))
            rows = pipe.execute() if members else []
        out = []
        for i, (tid, rid) in enumerate(members):
            run, lease = rows[2 * i], rows[2 * i + 1]
            if run is None:
                continue
            started = float(_text(run).split("|", 1)[0])
            owner = expires = None
            if lease:
                data = json.loads(lease)
                if data.get("run_id") == rid:
                    owner, expires = str(data["process"]), float(data["exp"])
            out.append(ActiveRun(tid, rid, started, owner, expires))
        return sorted(out, key=lambda r: (r.started_at, r.thread_id))

    def open_run(self, thread_id: str) -> ActiveRun | None:
        """スレッドの終わっていないラン (リースの持ち主と期限つき)。無ければ ``None``。"""
        with unavailable_errors(self.client, "run read"):
            run_id = self.client.hget(self._k(thread_id, "record"), "active_run")
            if run_id is None:
                return None
            run_id = _text(run_id)
            pipe = self.client.pipeline(transaction=False)
            pipe.hget(self._k(thread_id, "runs"), run_id)
            pipe.get(self._k(thread_id, "lease"))
            run, lease = pipe.execute()
        if run is None:
            return None
        owner = expires = None
        if lease:
            data = json.loads(lease)
            if data.get("run_id") == run_id:
                owner, expires = str(data["process"]), float(data["exp"])
        return ActiveRun(thread_id, run_id, float(_text(run).split("|", 1)[0]), owner, expires)

    def has_run(self, thread_id: str, run_id: str) -> bool:
        """そのスレッドで使われたことのある ``run_id`` なら真。"""
        with unavailable_errors(self.client, "run read"):
            return bool(self.client.hexists(self._k(thread_id, "runs"), run_id))

    def _lease_op(self, thread_id: str, run_id: str, owner_id: str, ttl_s: float, op: str) -> bool:
        """リースの取得・更新・解放 (1 つの Lua スクリプト)。"""
        keys = [self._k(thread_id, "record"), self._k(thread_id, "lease"), self._k(thread_id, "runs")]
        now = float(self._clock())
        body = json.dumps({"process": owner_id, "run_id": run_id, "exp": now + float(ttl_s)})
        args = [run_id, owner_id, repr(now), repr(float(ttl_s)), op, body]
        return bool(int(self._call(f"run lease {op}", self._lease, keys, args, thread_id)))

    def acquire_run_lease(self, thread_id: str, run_id: str, owner_id: str, ttl_s: float) -> bool:
        """期限内の他のリースが無く、ランがまだ終わっていなければ取る (1 スレッドに 1 ラン、全プロセスを通して)。

        終わりの記録があるランのリースは取れない: 持ち主を失ったランを 2 つのプロセスが同時に閉じようとしても、
        閉じられるのは 1 回だけ。スレッドに終わっていない別のラン (リースの切れた、持ち主を失ったものも) が
        あれば取れない: 呼ぶ側は先にそれを閉じる (:meth:`open_run`)。
        """
        return self._lease_op(thread_id, run_id, owner_id, ttl_s, "acquire")

    def renew_run_lease(self, thread_id: str, run_id: str, owner_id: str, ttl_s: float) -> bool:
        """自分のリースの期限を延ばす。もう自分のものでなければ偽。"""
        return self._lease_op(thread_id, run_id, owner_id, ttl_s, "renew")

    def renew_run_leases(self, runs: Sequence[tuple[str, str]], owner_id: str, ttl_s: float) -> list[bool]:
        """自分のリース ``(thread_id, run_id)`` をいくつもまとめて 1 回の往復で延ばす (更新係の 1 回分)。

        それぞれの結果は :meth:`renew_run_lease` と同じ (もう自分のものでなければ偽)。

        Raises:
            StoreUnavailable: Redis に届かないとき。
        """
        if not runs:
            return []
        now = float(self._clock())
        calls = []
        for thread_id, run_id in runs:
            keys = [self._k(thread_id, "record"), self._k(thread_id, "lease"), self._k(thread_id, "runs")]
            body = json.dumps({"process": owner_id, "run_id": run_id, "exp": now + float(ttl_s)})
            calls.append((keys, [run_id, owner_id, repr(now), repr(float(ttl_s)), "renew", body]))
        replies = self._evalsha_many("run lease renew", self._lease, calls)
        out = []
        for (thread_id, _), reply in zip(runs, replies, strict=True):
            if isinstance(reply, Exception):
                raise self._refusal("run lease renew", str(reply), thread_id)
            out.append(bool(int(reply)))
        return out

    def release_run_lease(self, thread_id: str, run_id: str, owner_id: str) -> None:
        """自分のリースを手放す (他人のものなら何もしない)。"""
        self._lease_op(thread_id, run_id, owner_id, 0, "release")

    def ping(self) -> bool:
        """Redis に届けば真 (届かなければ ``StoreUnavailable``)。"""
        with unavailable_errors(self.client, "ping"):
            return bool(self.client.ping())

    def close(self) -> None:
        """接続を閉じる。"""
        self._pipe.close()
        self.client.close()


def open_redis_store(settings: Any, limits: LogLimits | None = None) -> RedisStore:
    """設定 (``store.redis.*``) と ``.env`` の ``LLM_ROUTER_REDIS_URL`` から Redis のストアを開く。

    Redis にまだ届かなくても開く (起動の後で Redis が戻れば、そのまま使える)。届かないことは警告に出す。

    Raises:
        StoreConfigurationError: ``LLM_ROUTER_REDIS_URL`` が無いか解釈できないとき (値は出さない)。
    """
    url = settings.redis_url or ""
    if not url:
        raise StoreConfigurationError(
            "store.backend: 'redis' needs LLM_ROUTER_REDIS_URL in .env or the environment "
            "(store.backend=redis には .env の LLM_ROUTER_REDIS_URL が必要です)"
        )
    rcfg = settings.config.store.redis
    try:
        client = connect(url, rcfg)
    except StoreUnavailable as exc:
        raise StoreConfigurationError(f"LLM_ROUTER_REDIS_URL: {exc}") from None
    store = RedisStore(client, limits, Keys(str(rcfg.key_prefix)))
    try:
        store.ping()
    except StoreUnavailable as exc:
        logger.warning("redis store %s is not reachable yet: %s", redact_url(url), exc)
    return store
