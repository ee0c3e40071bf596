"""スレッドごとのイベントログを Redis Stream に置く: どのプロセスが書いても ``seq`` は 1 から隙間なく続く。

- 追加は 1 つの Lua スクリプト (:data:`APPEND_LUA`) で原子的に行う: スレッドの ``seq`` カウンタを INCR し、
  その値を ID ``<seq>-0`` にして XADD する。別々のプロセスが同時に書いても、番号の重複も飛びも起きない
  (Redis はスクリプトを 1 つずつ実行する)。ID を明示するので、万一カウンタが戻っても XADD が拒む。
- 上限: 件数は ``MAXLEN ~ max_events`` (Redis が内部のノード単位で捨てるので、少し多めに残ることがある)、
  経過時間はエントリに入れた壁時計 (Redis の ``TIME``、ミリ秒) で、先頭から古いものを ``XTRIM MINID`` で捨てる。
  最後の 1 件は必ず残す。カウンタは切り詰めても消さないので、``seq`` は決して再利用されない。
- 履歴の変更 (ユーザーのメッセージ、完了したステップ、巻き戻し) は、それを知らせるイベントと同じスクリプトで
  書ける (``append_many(..., history_push=... | history_replace=...)``)。途中の状態は誰にも見えない。
- 持ち主の検査 (fencing): ``lease`` を渡すと、その貸与を今も持っているときだけ書く (貸与を失った古い持ち主が、
  別のプロセスが ``interrupted`` で終えたランに書き足すことを防ぐ)。
- 再開は ``XRANGE (<seq>+1)-0 +``。:meth:`RedisEventLog.delete` はスレッドのログとカウンタを消す
  (その後の同じ id のスレッドは ``seq`` 1 から始まる新しいスレッド)。
- Redis を永続化していない (``--save ""``、AOF なし) 構成で Redis 自体を再起動すると中身は空になる。
  ``seq`` を Redis の再起動をまたいで守るには、Redis 側で AOF (``appendonly yes``) を使うこと (README.md)。
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from llm_router.cluster.connection import Keys, unavailable_errors

if TYPE_CHECKING:
    import redis

    from llm_router.cluster.leases import Lease

# 年齢による切り詰め (Lua の関数、両方のスクリプトの先頭に付ける)。まず先頭の 1 件だけを見て、新しければ何もしない
# (ふだんの追加はこれだけで O(1))。古ければ先頭から 100 件ずつ見て、壁時計 ``t`` が cutoff より古いものを
# XTRIM MINID で捨てる。最後の 1 件は残す。1 回の呼び出しで見るのは最大 rounds 回。
_TRIM_FN = """
local function trim_age(key, cutoff, rounds)
  local removed = 0
  local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
  if #first == 0 or tonumber(first[1][2][4]) >= cutoff then return 0 end
  for _ = 1, rounds do
    local head = redis.call('XRANGE', key, '-', '+', 'COUNT', 100)
    if #head <= 1 then break end
    local keep = nil
    for j = 1, #head do
      if tonumber(head[j][2][4]) >= cutoff then keep = head[j][1] break end
    end
    if keep ~= nil then
      removed = removed + redis.call('XTRIM', key, 'MINID', keep)
      break
    end
    removed = removed + redis.call('XTRIM', key, 'MINID', head[#head][1])
    if #head < 100 then break end
  end
  return removed
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS: 1 seq カウンタ, 2 ストリーム, 3 貸与 (fencing), 4 履歴, 5 実行中のランの表
# ARGV: 1 max_events, 2 max_age_ms (0 以下なら年齢で捨てない), 3 貸与のトークン ("" なら検査しない),
#       4 イベントの件数 N, 5 履歴の操作 ("" / "push" / "replace"), 6..5+N イベント, 6+N.. 履歴のメッセージ
#       最後の 2 つの手前に: release ("1" なら書いた後に貸与を返す), thread_id
# 返り値: 最初に付けた seq。貸与を失っていればエラー "LEASE_LOST" (何も書かない)
APPEND_LUA = (
    _TRIM_FN
    + """
if ARGV[3] ~= '' and redis.call('GET', KEYS[3]) ~= ARGV[3] then
  return redis.error_reply('LEASE_LOST the run lease is not held by this writer')
end
local release = ARGV[#ARGV - 1]
local thread_id = ARGV[#ARGV]
local last = #ARGV - 2
local now = now_ms()
local n = tonumber(ARGV[4])
local first = nil
for i = 6, 5 + n do
  local seq = redis.call('INCR', KEYS[1])
  if first == nil then first = seq end
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], seq .. '-0', 'e', ARGV[i], 't', now)
end
local op = ARGV[5]
if op == 'replace' then redis.call('DEL', KEYS[4]) end
if op ~= '' and last > 5 + n then redis.call('RPUSH', KEYS[4], unpack(ARGV, 6 + n, last)) end
if release == '1' and ARGV[3] ~= '' then
  redis.call('DEL', KEYS[3])
  if redis.call('HGET', KEYS[5], thread_id) == ARGV[3] then redis.call('HDEL', KEYS[5], thread_id) end
end
local max_age = tonumber(ARGV[2])
if max_age > 0 then trim_age(KEYS[2], now - max_age, 10) end
return first
"""
)

# 読み取り時の年齢による切り詰め (追加が止まったスレッドも古いものを返さない)。KEYS: 1 ストリーム, ARGV: 1 max_age_ms
TRIM_AGE_LUA = (
    _TRIM_FN
    + """
return trim_age(KEYS[1], now_ms() - tonumber(ARGV[1]), 1000)
"""
)


class LeaseLost(Exception):
    """書き手がランの貸与をもう持っていない (別のプロセスがランを終えた)。何も書かれていない。"""


def _seq_of(entry_id: bytes | str) -> int:
    """ストリームの ID ``<seq>-0`` から ``seq``。"""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


class RedisEventLog:
    """Redis Stream のイベントログ (全スレッド分。スレッドは引数で指す)。

    Args:
        client: redis-py のクライアント (:func:`llm_router.cluster.connection.connect`)。
        max_events: 1 スレッドに残す件数 (``server.event_log_max_events``、概数)。
        max_age_s: 残す秒数 (``server.event_log_max_age_s``、壁時計)。0 以下なら年齢では捨てない。
        keys: キーの名前。
    """

    def __init__(self, client: redis.Redis, max_events: int, max_age_s: float, keys: Keys | None = None) -> None:
        """スクリプトを登録する (Redis にはまだ何も送らない)。"""
        self.client = client
        self.max_events = max(1, int(max_events))
        self.max_age_ms = int(max_age_s * 1000) if max_age_s > 0 else 0
        self.keys = keys or Keys()
        self._append = client.register_script(APPEND_LUA)
        self._trim_age = client.register_script(TRIM_AGE_LUA)

    def append(self, thread_id: str, event: dict[str, Any], lease: Lease | None = None) -> int:
        """イベントを 1 件書き、付けた ``seq`` を返す (``event["seq"]`` にも入れる)。

        Raises:
            LeaseLost: ``lease`` を渡し、それがもう有効でないとき (何も書かれない)。
            StoreUnavailable: Redis に届かないとき (書けたかどうかは :meth:`last_seq` で確かめられる)。
        """
        return self.append_many(thread_id, [event], lease)[0]

    def append_many(
        self,
        thread_id: str,
        events: Sequence[dict[str, Any]],
        lease: Lease | None = None,
        *,
        history_push: Sequence[dict[str, Any]] = (),
        history_replace: Sequence[dict[str, Any]] | None = None,
        release: bool = False,
    ) -> list[int]:
        """複数のイベントを 1 回の往復でまとめて書く (連続した ``seq``)。各 ``event["seq"]`` にも入れる。

        履歴の変更 (それを知らせるイベントと同じ原子操作で、途中の状態は誰にも見えない):

        Args:
            history_push: 履歴の末尾に足すメッセージ (完了したステップ、ユーザーのメッセージなど)。
            history_replace: 履歴を丸ごと置き換えるメッセージ (巻き戻し、失敗したランの取り消し)。
                ``history_push`` とは同時に使えない。
            release: 書いた後、同じ原子操作で ``lease`` を返す (終わりのイベントと一緒に使う。終わりのイベントが
                書けたのに貸与が残る、あるいはその逆の隙間が無いので、後始末が 2 つ目の終わりを書くことがない)。

        Raises:
            ValueError: イベントが無いのに履歴を変えようとしたとき、または両方の操作を渡したとき。
            LeaseLost: ``lease`` がもう有効でないとき (何も書かれない)。
            StoreUnavailable: Redis に届かないとき。
        """
        if history_replace is not None and history_push:
            raise ValueError("history_push and history_replace cannot be combined")
        if release and lease is None:
            raise ValueError("release: needs the lease to give back")
        if not events:
            if history_push or history_replace is not None:
                raise ValueError("events: a history change must be announced by at least one event")
            return []
        payloads = [json.dumps({k: v for k, v in e.items() if k != "seq"}, ensure_ascii=False) for e in events]
        op, messages = "", ()
        if history_replace is not None:
            op, messages = "replace", history_replace
        elif history_push:
            op, messages = "push", history_push
        history = [json.dumps(m, ensure_ascii=False) for m in messages]
        first = self._run_append(thread_id, payloads, lease, op, history, release)
        seqs = list(range(first, first + len(events)))
        for event, seq in zip(events, seqs, strict=True):
            event["seq"] = seq
        return seqs

    def _run_append(
        self,
        thread_id: str,
        payloads: list[str],
        lease: Lease | None,
        op: str = "",
        history: Iterable[str] = (),
        release: bool = False,
    ) -> int:
        """追加のスクリプトを 1 回実行して最初の ``seq`` を返す。"""
        import redis

        keys = [
            self.keys.seq(thread_id),
            self.keys.events(thread_id),
            self.keys.lease(thread_id),
            self.keys.history(thread_id),
            self.keys.active_runs,
        ]
        token = lease.token if lease is not None else ""
        args = [self.max_events, self.max_age_ms, token, len(payloads), op, *payloads, *history]
        args += ["1" if release else "0", thread_id]
        with unavailable_errors(self.client, "event append"):
            try:
                return int(self._append(keys=keys, args=args))
            except redis.ResponseError as exc:
                if "LEASE_LOST" in str(exc):
                    raise LeaseLost(f"run lease on thread {thread_id!r} is no longer held by this process") from None
                raise

    def last_seq(self, thread_id: str) -> int:
        """最後に付けた ``seq`` (まだ無ければ 0)。"""
        with unavailable_errors(self.client, "event log read"):
            value = self.client.get(self.keys.seq(thread_id))
        return int(value) if value else 0

    def first_seq(self, thread_id: str) -> int:
        """残っている最古の ``seq`` (空なら ``last_seq + 1``)。"""
        with unavailable_errors(self.client, "event log read"):
            head = self.client.xrange(self.keys.events(thread_id), "-", "+", count=1)
        return _seq_of(head[0][0]) if head else self.last_seq(thread_id) + 1

    def after(self, thread_id: str, seq: int, limit: int | None = None) -> list[dict[str, Any]]:
        """``seq`` より後のイベントを古い順に返す (捨てた範囲は含まない。:meth:`missing_before` で分かる)。"""
        with unavailable_errors(self.client, "event replay"):
            if self.max_age_ms:
                self._trim_age(keys=[self.keys.events(thread_id)], args=[self.max_age_ms])
            entries = self.client.xrange(self.keys.events(thread_id), f"{max(0, seq) + 1}-0", "+", count=limit)
        out = []
        for entry_id, fields in entries:
            event = json.loads(fields[b"e"])
            event["seq"] = _seq_of(entry_id)
            out.append(event)
        return out

    def missing_before(self, thread_id: str, seq: int) -> bool:
        """``seq`` の直後からの再開に要るイベントが既に捨てられていれば真。"""
        last = self.last_seq(thread_id)
        return seq < last and seq + 1 < self.first_seq(thread_id)

    def length(self, thread_id: str) -> int:
        """残っている件数。"""
        with unavailable_errors(self.client, "event log read"):
            return int(self.client.xlen(self.keys.events(thread_id)))

    def delete(self, thread_id: str) -> None:
        """スレッドのログとカウンタを消す (以後の同じ id は新しいスレッドとして 1 から数える)。"""
        with unavailable_errors(self.client, "event log delete"):
            self.client.delete(self.keys.events(thread_id), self.keys.seq(thread_id))
