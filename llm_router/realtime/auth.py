"""接続の認証 (``LLM_ROUTER_API_TOKENS``)、主体ごとのレート制限、CORS の許可オリジン。

- トークンが設定されていれば、``auth: {"token": ...}`` が一致しない接続は ``unauthorized`` で拒否する。
  比較は ``hmac.compare_digest`` (時間差からトークンを推測させないため)。各トークンが 1 つの主体になる。
  主体の名前はトークンのハッシュの先頭で、トークンそのものは決して保持・記録しない。
- トークンが無ければ全接続を受け入れ、全員が同じ主体 ``anonymous`` になる (起動時に警告を出す)。
- CORS: 既定はサーバー自身のオリジンと ``http://localhost:*`` / ``http://127.0.0.1:*`` のみ。``*`` は既定にしない
  (資格情報つきで任意のオリジンを返すとクロスサイト WebSocket ハイジャックになるため。docs/design.md 1 章)。
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

ANONYMOUS = "anonymous"
DEFAULT_ORIGINS = ("http://localhost:*", "http://127.0.0.1:*", "http://[[]::1]:*")


class Authenticator:
    """接続時の ``auth`` からトークンを調べ、主体の名前を返す。"""

    def __init__(self, tokens: Sequence[str]) -> None:
        """有効なトークンの一覧 (空なら認証なし) を受け取る。"""
        self._tokens = [t.encode() for t in tokens if t]

    @property
    def required(self) -> bool:
        """トークンが必要なら真。"""
        return bool(self._tokens)

    def principal(self, auth: Any) -> str | None:
        """``auth`` (``{"token": "..."}``) に対応する主体。拒否すべきなら ``None``。"""
        if not self._tokens:
            return ANONYMOUS
        token = auth.get("token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            return None
        given = token.encode()
        matched = None
        # どのトークンに一致したかで時間が変わらないよう、全トークンと比べる
        for candidate in self._tokens:
            if hmac.compare_digest(given, candidate):
                matched = candidate
        if matched is None:
            return None
        return "token:" + hashlib.sha256(matched).hexdigest()[:12]


class RateLimiter:
    """主体ごとのトークンバケット (1 分あたり ``per_minute`` 件、同数までのバースト)。O(1)。"""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        """1 分あたりの上限を受け取る (0 以下なら無制限)。"""
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, principal: str) -> bool:
        """1 件を消費できれば真。"""
        if self.per_minute <= 0:
            return True
        now = self._clock()
        rate = self.per_minute / 60.0
        with self._lock:
            tokens, last = self._buckets.get(principal, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens < 1.0:
                self._buckets[principal] = (tokens, now)
                return False
            self._buckets[principal] = (tokens - 1.0, now)
            return True


def origin_checker(configured: Sequence[str]) -> Callable[[str | None, dict[str, Any]], bool] | str:
    """python-engineio の ``cors_allowed_origins`` に渡す判定関数 (``*`` が明示されたときだけ ``"*"``)。

    許可するのは、サーバー自身のオリジン (``Host`` ヘッダから)、設定のパターン (``fnmatch`` 形式、
    例 ``https://app.example.com`` や ``http://localhost:*``)。設定が空なら localhost のパターンを使う。
    """
    patterns = tuple(configured) or DEFAULT_ORIGINS
    if "*" in patterns:
        return "*"

    def allowed(origin: str | None, environ: dict[str, Any] | None = None) -> bool:
        """オリジンが許可されていれば真。"""
        if not origin:
            return True
        environ = environ or {}
        host = environ.get("HTTP_HOST")
        if host and origin == f"{environ.get('wsgi.url_scheme', 'http')}://{host}":
            return True
        return any(fnmatch.fnmatchcase(origin, p) for p in patterns)

    return allowed
