"""共有のエラー型の再輸出 (定義は :mod:`llm_router.errors`: config と core が共に使う依存の無い葉)。"""

from llm_router.errors import (
    ConfigurationError,
    LLMRouterError,
    MissingCredentialError,
    ModelNotFoundError,
    ProviderAuthError,
    ProviderBadRequestError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderStreamBrokenError,
    ProviderTimeoutError,
    ProviderUnavailableError,
    RequestCancelled,
)

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
]
