"""全プロセスで共有する制限: 主体ごとのレート制限 (``server.rate_limit_per_minute``) とカウンタ (スレッド数など)。

- :class:`SharedRateLimiter`: 1 プロセス版 (``llm_router.realtime.auth.RateLimiter``) と同じトークンバケット
  (1 分あたり ``per_minute`` 件、同数までのバースト) を Redis のハッシュに置き、Lua で原子的に消費する。
  時刻は Redis の ``TIME`` を使うので、プロセスやマシンの時計のずれに左右されない。キーは 2 分使われなければ消える。
- :class:`SharedCounters`: 上限つきで 1 増やす / 1 減らす (同時に実行中のランの数など)。
  スレッド数の上限は、作成と同じ原子操作の中で ``RedisThreadRecords.put(max_threads=...)`` が検査する。
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llm_router.cluster.connection import Keys, unavailable_errors

if TYPE_CHECKING:
    import redis

# KEYS: 1 バケット。ARGV: 1 per_minute。返り値: 1 許可 / 0 拒否
BUCKET_LUA = """
local cap = tonumber(ARGV[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or cap
local last = tonumber(state[2]) or now
if now > last then tokens = math.min(cap, tokens + (now - last) * cap / 60.0) end
local allowed = 0
if tokens >= 1.0 then
  tokens = tokens - 1.0
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], 120000)
return allowed
"""

# KEYS: 1 カウンタ。ARGV: 1 上限 (0 なら無制限)。返り値: 増やした後の値 / 上限なら -1
INCR_BELOW_LUA = """
local cap = tonumber(ARGV[1])
local value = tonumber(redis.call('GET', KEYS[1]) or '0')
if cap > 0 and value >= cap then return -1 end
return redis.call('INCR', KEYS[1])
"""

# KEYS: 1 カウンタ。返り値: 減らした後の値 (0 より下にはしない。0 になったらキーを消す)
DECR_LUA = """
local value = tonumber(redis.call('GET', KEYS[1]) or '0')
if value <= 1 then
  redis.call('DEL', KEYS[1])
  return 0
end
return redis.call('DECR', KEYS[1])
"""


class SharedRateLimiter:
    """主体ごとのトークンバケットを全プロセスで共有する (``allow(principal)`` は 1 プロセス版と同じ形)。

    Args:
        client: redis-py のクライアント。
        per_minute: 1 分あたりの上限 (0 以下なら無制限、Redis には問い合わせない)。
        name: 制限の名前 (キーの一部。別々の制限を並べるとき用)。
        keys: キーの名前。
    """

    def __init__(self, client: redis.Redis, per_minute: int, name: str = "events", keys: Keys | None = None) -> None:
        """スクリプトを登録する。"""
        self.client = client
        self.per_minute = int(per_minute)
        self.name = name
        self.keys = keys or Keys()
        self._bucket = client.register_script(BUCKET_LUA)

    def allow(self, principal: str) -> bool:
        """1 件を消費できれば真。

        Raises:
            StoreUnavailable: Redis に届かないとき (呼び手が断るか通すかを決める)。
        """
        if self.per_minute <= 0:
            return True
        with unavailable_errors(self.client, "rate limit"):
            return bool(int(self._bucket(keys=[self.keys.rate(self.name, principal)], args=[self.per_minute])))


class SharedCounters:
    """主体ごとの、全プロセスで共有するカウンタ。

    Args:
        client: redis-py のクライアント。
        name: カウンタの名前 (例 ``active_runs``)。
        keys: キーの名前。
    """

    def __init__(self, client: redis.Redis, name: str, keys: Keys | None = None) -> None:
        """スクリプトを登録する。"""
        self.client = client
        self.name = name
        self.keys = keys or Keys()
        self._incr = client.register_script(INCR_BELOW_LUA)
        self._decr = client.register_script(DECR_LUA)

    def acquire(self, principal: str, limit: int) -> bool:
        """上限 ``limit`` (0 なら無制限) の下なら 1 増やして真。上限なら何も変えずに偽。"""
        with unavailable_errors(self.client, "shared counter"):
            return int(self._incr(keys=[self.keys.counter(self.name, principal)], args=[max(0, int(limit))])) >= 0

    def release(self, principal: str) -> int:
        """1 減らして、減らした後の値を返す (0 より下にはならない)。"""
        with unavailable_errors(self.client, "shared counter"):
            return int(self._decr(keys=[self.keys.counter(self.name, principal)]))

    def value(self, principal: str) -> int:
        """今の値。"""
        with unavailable_errors(self.client, "shared counter"):
            raw = self.client.get(self.keys.counter(self.name, principal))
        return int(raw) if raw else 0
