"""共有のエラー型 (llm_router のただ 1 つのエラーの木)。

依存を持たない葉のモジュール: ``config`` も ``core`` も、互いを読み込まずにここを使える。
``llm_router.core.schemas.errors`` は同じ型をそのまま再輸出する (既存の import のため)。

木構造::

    LLMRouterError
    ├── ConfigurationError
    │   └── MissingCredentialError        (設定すべき .env 変数名を含む)
    ├── RequestCancelled                  (キャンセルトークンで中断された)
    └── ProviderError                     (provider, status, retryable, code)
        ├── ProviderAuthError             provider_auth
        ├── ProviderRateLimitedError      provider_rate_limited (retry_after_s)
        ├── ProviderUnavailableError      provider_unavailable  (retry_after_s)
        ├── ProviderBadRequestError       provider_bad_request
        │   └── ModelNotFoundError        (提供終了など、404 のモデル)
        ├── ProviderStreamBrokenError     provider_stream_broken
        └── ProviderTimeoutError          timeout

``code`` はプロトコル (``docs/protocol.md`` の ``run_error``) のエラーコードと一致する。派生クラスはクラスの定義で
``code=`` (と、プロバイダのエラーなら既定の再試行の可否 ``retryable=``) を名乗る。
メッセージにはプロバイダ自身の文言を残すが、API キーは決して含めない。
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigurationError",
    "LLMRouterError",
    "MissingCredentialError",
    "ModelNotFoundError",
    "ProviderAuthError",
    "ProviderBadRequestError",
    "ProviderError",
    "ProviderRateLimitedError",
    "ProviderStreamBrokenError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "RequestCancelled",
    "StoreUnavailable",
]


class LLMRouterError(Exception):
    """llm_router のすべての例外の基底。"""

    code = "internal"

    def __init_subclass__(cls, code: str = "", **kwargs: Any) -> None:
        """派生クラスの定義で、プロトコルのエラーコードを受け取る (無ければ親のコードを引き継ぐ)。"""
        super().__init_subclass__(**kwargs)
        if code:
            cls.code = code

    def __init__(self, message: str) -> None:
        """メッセージを受け取る。"""
        super().__init__(message)
        self.message = message


class ConfigurationError(LLMRouterError, code="invalid_payload"):
    """設定の誤り (未知のプロバイダ、不正なモデル名など)。"""


class MissingCredentialError(ConfigurationError):
    """必要な API キーが無い。設定すべき環境変数名をメッセージに含める。"""

    def __init__(self, provider: str, variables: tuple[str, ...] | list[str]) -> None:
        """プロバイダ名と、キーを読む環境変数名を受け取る。"""
        names = " または ".join(variables)
        super().__init__(
            f"provider '{provider}' needs an API key: set {names} in .env "
            f"(プロバイダ '{provider}' の API キーがありません: .env に {names} を設定してください)"
        )
        self.provider = provider
        self.variables = tuple(variables)


class RequestCancelled(LLMRouterError, code="cancelled"):
    """キャンセルトークンによってリクエストが中断された。"""


class ProviderError(LLMRouterError, code="provider_unavailable"):
    """プロバイダ呼び出しの失敗。"""

    default_retryable = False

    def __init_subclass__(cls, retryable: bool | None = None, **kwargs: Any) -> None:
        """派生クラスの定義で、既定の再試行の可否を受け取る (無ければ親のものを引き継ぐ)。"""
        super().__init_subclass__(**kwargs)
        if retryable is not None:
            cls.default_retryable = retryable

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
        error_type: str | None = None,
    ) -> None:
        """プロバイダの文言、HTTP ステータス、再試行の可否などを受け取る。"""
        super().__init__(message)
        self.provider = provider
        self.status = status
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after_s = retry_after_s
        self.error_type = error_type

    def __str__(self) -> str:
        """``provider (status): message`` の形の文字列。"""
        where = self.provider or "provider"
        status = f" {self.status}" if self.status else ""
        return f"{where}{status}: {self.message}"


class ProviderAuthError(ProviderError, code="provider_auth"):
    """認証・権限の失敗 (401 / 403、Gemini の API_KEY_INVALID)。"""


class ProviderRateLimitedError(ProviderError, code="provider_rate_limited", retryable=True):
    """レート制限 (429)。``retry_after_s`` があれば従う。quota 切れは再試行しない。"""


class ProviderUnavailableError(ProviderError, code="provider_unavailable", retryable=True):
    """一時的な障害・過負荷 (5xx、529、接続失敗)。"""


class ProviderBadRequestError(ProviderError, code="provider_bad_request"):
    """リクエストの誤り (400 / 404 / 422 など)。再試行しない。"""


class ModelNotFoundError(ProviderBadRequestError):
    """モデルが存在しない、または提供終了 (404)。"""


class ProviderStreamBrokenError(ProviderError, code="provider_stream_broken", retryable=True):
    """ストリームが途中で壊れた (接続断、ストリーム内のエラーイベント、不正なフレーム)。"""


class ProviderTimeoutError(ProviderError, code="timeout", retryable=True):
    """接続または読み取りのタイムアウト。"""


class StoreUnavailable(LLMRouterError, code="store_unavailable"):
    """保存先 (SQLite のファイル、Redis など) が書き込み (または読み取り) を拒んだ・届かない。

    ディスクが一杯、読み取り専用、ロック、接続断など。この例外が出たとき、その呼び出しの書き込みは何も
    残っていない (トランザクションごと取り消した)。メッセージには何が失敗したかと宛先 (パスワードを伏せたもの)
    だけを含め、秘密情報は決して含めない。``code`` はプロトコルの ``run_error`` のコード ``store_unavailable``。
    """

    retryable = True
