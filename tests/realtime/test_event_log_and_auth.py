"""イベントログ (件数・時間の上限、再開) と認証・レート制限・CORS の単体テスト。"""

from llm_router.realtime.auth import ANONYMOUS, Authenticator, RateLimiter, origin_checker
from llm_router.realtime.event_log import EventLog


class FakeClock:
    """手で進める単調時計。"""

    def __init__(self) -> None:
        """0 秒から始める。"""
        self.now = 0.0

    def __call__(self) -> float:
        """今の時刻。"""
        return self.now


def _fill(log: EventLog, n: int) -> None:
    """seq を付けたイベントを n 件足す。"""
    for _ in range(n):
        log.append({"seq": log.next_seq()})


def test_log_replays_events_after_a_seq():
    """seq > N のイベントだけを順に返す。"""
    log = EventLog(100, 3600)
    _fill(log, 5)
    assert [e["seq"] for e in log.after(2)] == [3, 4, 5]
    assert log.after(5) == [] and log.after(9) == []
    assert [e["seq"] for e in log.after(0)] == [1, 2, 3, 4, 5]


def test_log_is_bounded_by_count_and_reports_the_gap():
    """件数の上限を超えた古いものは捨て、抜けがあることが分かる。"""
    log = EventLog(3, 3600)
    _fill(log, 10)
    assert len(log) == 3 and log.first_seq == 8 and log.last_seq == 10
    assert [e["seq"] for e in log.after(2)] == [8, 9, 10]
    assert log.missing_before(2) and not log.missing_before(7)


def test_log_is_bounded_by_age():
    """時間の上限を過ぎたイベントは捨てる (最後の 1 件は残す)。"""
    clock = FakeClock()
    log = EventLog(100, 10, clock=clock)
    _fill(log, 3)
    clock.now = 20
    _fill(log, 1)
    assert [e["seq"] for e in log.after(0)] == [4]
    clock.now = 100
    assert [e["seq"] for e in log.after(0)] == [4]


def test_without_tokens_everyone_is_the_anonymous_principal():
    """トークン未設定なら全員 anonymous。"""
    auth = Authenticator([])
    assert not auth.required and auth.principal(None) == ANONYMOUS


def test_tokens_map_to_distinct_principals_that_do_not_contain_the_token():
    """トークンごとに別の主体、誤り・欠落は拒否、主体名にトークンは出ない。"""
    auth = Authenticator(["alpha-token", "beta-token"])
    a, b = auth.principal({"token": "alpha-token"}), auth.principal({"token": "beta-token"})
    assert a and b and a != b and "alpha-token" not in a
    for bad in (None, {}, {"token": ""}, {"token": "alpha"}, {"token": 5}, "alpha-token"):
        assert auth.principal(bad) is None


def test_rate_limiter_refills_over_time():
    """1 分あたりの上限を超えると拒否し、時間が経てば戻る。主体ごとに別のバケツ。"""
    clock = FakeClock()
    limiter = RateLimiter(3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")
    clock.now = 20.0
    assert limiter.allow("a")


def test_origin_checker_defaults_to_own_origin_and_localhost():
    """既定は自分のオリジンと localhost だけ。* は明示したときだけ。"""
    allowed = origin_checker([])
    env = {"HTTP_HOST": "example.org:5000", "wsgi.url_scheme": "http"}
    assert allowed("http://example.org:5000", env)
    assert allowed("http://localhost:3000", env) and allowed("http://127.0.0.1:8080", env)
    assert not allowed("https://evil.example", env)
    assert allowed(None, env)
    custom = origin_checker(["https://app.example.com"])
    assert custom("https://app.example.com", env) and not custom("http://localhost:3000", env)
    assert origin_checker(["*"]) == "*"
