"""主体ごとの使用中のスレッドの数 (``server.max_threads_per_principal``) を、全プロセスを通して Redis で数える。

- 表: 主体ごとの sorted set ``<prefix>:owner:<主体>:open`` (メンバーはスレッド ID、点数は最後に開いた時刻のミリ秒)。
- 開く: 表に無いスレッドが上限に当たれば、どのプロセスにもソケットが無く、ランの記録もリースも無い最古のスレッドを
  表から外して (閉じて) 通す。外せるものが無ければ断る。確かめて足すまでと在席の書き込みは 1 つの Lua で行う。
- スレッドの記録・履歴・イベントログそのものはストア (``llm_router/store/redis.py`` の ``RedisStore``) が持つ。
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from llm_router.cluster.connection import Keys, unavailable_errors

if TYPE_CHECKING:
    import redis

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
