"""全プロセスで共有する制限: 主体ごとのレート制限 (``server.rate_limit_per_minute``) と同時のラン数。

- :class:`SharedRateLimiter`: 1 プロセス版 (``llm_router.realtime.auth.RateLimiter``) と同じトークンバケット
  (1 分あたり ``per_minute`` 件、同数までのバースト) を Redis のハッシュに置き、Lua で原子的に消費する。
  時刻は Redis の ``TIME`` を使うので、プロセスやマシンの時計のずれに左右されない。キーは 2 分使われなければ消える。
- :class:`RunSlots`: 主体の同時のラン数 (``server.max_active_runs_per_principal``)。数はランごとの期限つきの枠の数
  そのもので、返しそびれた枠は期限で消える (Redis が落ちても数がずれたまま残らない)。
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

# 枠の表 (sorted set、メンバー ``<thread_id>|<run_id>``、点数は期限の Redis 時刻ミリ秒) の、期限の過ぎたものを捨てる
_NOW_FN = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: 1 主体の枠の表。ARGV: 1 メンバー, 2 上限 (0 なら無制限), 3 期限のミリ秒
# 返り値: 1 取れた (既に持っていた枠なら期限を延ばしただけ) / 0 上限
SLOT_ACQUIRE_LUA = (
    _NOW_FN
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local cap = tonumber(ARGV[2])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
)

# KEYS: 枠の表の列 (メンバーごとに 1 つ)。ARGV: 1 期限のミリ秒, 2.. メンバー。生きているランの枠の期限を延ばす
# (期限が過ぎて捨てられていれば入れ直す: ランはまだ動いている)
SLOT_RENEW_LUA = (
    _NOW_FN
    + """
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], ARGV[1])
end
return #KEYS
"""
)

# KEYS: 1 主体の枠の表。返り値: 期限内の枠の数
SLOT_COUNT_LUA = (
    _NOW_FN
    + """
return redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
"""
)


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


class RunSlots:
    """主体ごとの、全プロセスで共有する同時のラン数 (``server.max_active_runs_per_principal``)。

    数は別のカウンタ (INCR / DECR) ではなく、動いているランごとの「枠」(期限つき) の数そのもの:

    - 取る: 期限の過ぎた枠を捨ててから数え、上限の下なら ``<thread_id>|<run_id>`` の枠を期限つきで足す
      (1 つの Lua)。同じランの枠をもう一度取っても 1 つのまま (Redis が落ちて答えを受け取れなかった取得を
      やり直しても、数えすぎない)。
    - 延ばす: ランを動かしているプロセスが、リースと一緒に ``lease_s / 3`` ごとに延ばす (:meth:`renew`)。
    - 返す: ランの終わりに消す。返せなかった (Redis に届かなかった、持ち主が死んだ) 枠も、延ばす者がいないので
      ``lease_s`` で消える。Redis が途中で落ちても、主体が上限に張り付いたままになることはない。

    時刻は Redis の ``TIME`` なので、プロセスの時計のずれに左右されない。

    Args:
        client: redis-py のクライアント。
        ttl_s: 枠の期限 (``store.run_lease_s``)。
        keys: キーの名前。
    """

    def __init__(self, client: redis.Redis, ttl_s: float, keys: Keys | None = None) -> None:
        """スクリプトを登録する。"""
        if ttl_s <= 0:
            raise ValueError("store.run_lease_s must be > 0")
        self.client = client
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.keys = keys or Keys()
        self._acquire = client.register_script(SLOT_ACQUIRE_LUA)
        self._renew = client.register_script(SLOT_RENEW_LUA)
        self._count = client.register_script(SLOT_COUNT_LUA)

    def _key(self, principal: str) -> str:
        """主体の枠の表。"""
        return self.keys.counter("run_slots", principal)

    def acquire(self, principal: str, thread_id: str, run_id: str, limit: int) -> bool:
        """上限 ``limit`` (0 なら無制限) の下なら、そのランの枠を取って真。上限なら何も変えずに偽。"""
        member = f"{thread_id}|{run_id}"
        with unavailable_errors(self.client, "run slot"):
            result = self._acquire(keys=[self._key(principal)], args=[member, max(0, int(limit)), self.ttl_ms])
        return bool(int(result))

    def renew(self, slots: list[tuple[str, str, str]]) -> None:
        """``(principal, thread_id, run_id)`` の枠の期限を延ばす (まとめて 1 往復)。"""
        if not slots:
            return
        with unavailable_errors(self.client, "run slot renew"):
            self._renew(
                keys=[self._key(p) for p, _, _ in slots], args=[self.ttl_ms, *(f"{t}|{r}" for _, t, r in slots)]
            )

    def release(self, principal: str, thread_id: str, run_id: str) -> None:
        """そのランの枠を返す (無ければ何もしない)。"""
        with unavailable_errors(self.client, "run slot"):
            self.client.zrem(self._key(principal), f"{thread_id}|{run_id}")

    def count(self, principal: str) -> int:
        """期限内の枠の数 (主体の動いているランの数)。"""
        with unavailable_errors(self.client, "run slot"):
            return int(self._count(keys=[self._key(principal)]))
