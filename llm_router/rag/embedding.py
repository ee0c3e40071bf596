"""埋め込みモデルの選択と呼び出し (自前のクライアント経由、バッチ分割、L2 正規化)。

- ``rag.embedding_model`` は ``provider/model``。``auto`` は、既存のストアがあればそのモデル
  (別のモデルに黙って切り替えるとストアが使えなくなるため)、無ければ API キーのある最初の
  プロバイダで ``embedding_model`` が設定されているもの、どれも無ければ ``demo/hashing``。
  Ollama はキーが無くても使えてしまうので ``auto`` では選ばない (明示的に
  ``rag.embedding_model=ollama/nomic-embed-text`` と指定する)。
- ``demo/hashing`` はプロセス内の文字 n-gram ハッシング (:mod:`hashing_embedder`)。ネットワークを
  使わず、語彙的 (文字の重なり) であって意味的ではないことを利用者に告げる。
- それ以外は ``ModelRouter(settings).client(provider).embed(...)``。バッチの大きさはプロバイダ設定の
  ``embedding_batch_size`` (OpenAI 2048、Gemini 100 など)、再試行はクライアントの ``request()`` が行う。
- コサイン類似度を内積で計算するため、返すベクトルはすべて L2 正規化する。
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from llm_router.core.schemas.errors import ConfigurationError, ProviderStreamBrokenError
from llm_router.core.tokens import estimate_tokens
from llm_router.rag.hashing_embedder import hash_embed

if TYPE_CHECKING:
    from llm_router.config.settings import Settings
    from llm_router.core.cancel import CancelToken

AUTO = "auto"
# プロセス内で計算する埋め込み (ネットワークなし)。キーは ``provider/model``
HASHING_SPEC = "demo/hashing"
LEXICAL_NOTICE = (
    "embedding model demo/hashing is lexical (character n-grams), not semantic "
    "(埋め込みモデル demo/hashing は文字 n-gram の語彙的な一致であり、意味の近さは測りません。"
    "意味検索には API キーを .env に設定するか rag.embedding_model=ollama/nomic-embed-text を指定してください)"
)

# 進み具合の通知: (終わったバッチ数, 全バッチ数)
BatchCallback = Callable[[int, int], None]


@dataclass
class EmbeddingResult:
    """埋め込みの結果: 正規化済みの行列、トークン数 (推定なら ``tokens_estimated``)。"""

    vectors: np.ndarray
    tokens: int
    tokens_estimated: bool = False


def normalize_rows(matrix: np.ndarray) -> np.ndarray:
    """行ごとに L2 正規化した float32 行列 (長さ 0 の行はそのまま)。"""
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def split_spec(spec: str) -> tuple[str, str]:
    """``provider/model`` を分ける。

    Raises:
        ConfigurationError: 形が違うとき。
    """
    provider, sep, model = spec.partition("/")
    if not sep or not provider or not model:
        raise ConfigurationError(
            f"rag.embedding_model '{spec}' must be 'provider/model' or 'auto' "
            f"(rag.embedding_model は 'provider/model' か 'auto' で指定してください)"
        )
    return provider, model


def resolve_embedding_spec(settings: Settings, store_model: str | None = None) -> str:
    """使う埋め込みモデル (``provider/model``) を決める。``auto`` の規則はモジュールの説明のとおり。"""
    configured = (settings.config.rag.embedding_model or AUTO).strip()
    if configured != AUTO:
        split_spec(configured)
        return configured
    if store_model:
        return store_model
    for provider in settings.provider_names():
        config = settings.provider(provider)
        if config.embedding_model and settings.api_key(provider):
            return f"{provider}/{config.embedding_model}"
    return HASHING_SPEC


class HashingEmbedder:
    """``demo/hashing``: プロセス内の文字 n-gram ハッシング (語彙的)。"""

    semantic = False

    def __init__(self, dimension: int) -> None:
        """次元 (``rag.hashing_dimension``) を受け取る。"""
        self.spec = HASHING_SPEC
        self.dimension: int | None = dimension
        self.batch_size = 1000

    def embed(self, texts: list[str], task: str, cancel: CancelToken | None = None) -> EmbeddingResult:
        """テキストを埋め込む (``task`` は使わない)。"""
        return EmbeddingResult(hash_embed(texts, self.dimension or 0), sum(estimate_tokens(t) for t in texts), True)


class ClientEmbedder:
    """プロバイダのクライアント (``ChatClient.embed``) による埋め込み。"""

    semantic = True

    def __init__(self, spec: str, client: Any, batch_size: int) -> None:
        """``provider/model``、クライアント、1 リクエストのバッチの大きさを受け取る。"""
        self.spec = spec
        self.model = split_spec(spec)[1]
        self.client = client
        self.batch_size = max(1, batch_size)
        self.dimension: int | None = None

    def embed(self, texts: list[str], task: str, cancel: CancelToken | None = None) -> EmbeddingResult:
        """1 バッチを埋め込む (``task`` は ``document`` / ``query``: Gemini の taskType になる)。"""
        from llm_router.core.schemas.common import EmbeddingRequest

        response = self.client.embed(EmbeddingRequest(model=self.model, inputs=list(texts), task=task), cancel=cancel)
        vectors = np.asarray(response.vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise ProviderStreamBrokenError(
                f"{self.spec}: expected {len(texts)} embeddings, got shape {vectors.shape}",
                provider=split_spec(self.spec)[0],
            )
        if self.dimension is None:
            self.dimension = int(vectors.shape[1])
        tokens = int(getattr(response.usage, "input_tokens", 0) or 0)
        if tokens:
            return EmbeddingResult(normalize_rows(vectors), tokens)
        return EmbeddingResult(normalize_rows(vectors), sum(estimate_tokens(t) for t in texts), True)


def make_embedder(settings: Settings, spec: str, router: Any = None) -> HashingEmbedder | ClientEmbedder:
    """``provider/model`` の埋め込み器を作る。

    Raises:
        ConfigurationError: 形が違う、未知のプロバイダ、プロバイダに埋め込みが無い。
        MissingCredentialError: API キーが必要なのに無いとき (設定すべき .env の変数名を含む)。
    """
    if spec == HASHING_SPEC:
        return HashingEmbedder(settings.config.rag.hashing_dimension)
    provider, _ = split_spec(spec)
    try:
        provider_config = settings.provider(provider)
    except KeyError as exc:
        raise ConfigurationError(
            f"rag.embedding_model '{spec}': unknown provider '{provider}' (未知のプロバイダです)"
        ) from exc
    if router is None:
        from llm_router.core.router import ModelRouter

        router = ModelRouter(settings)
    client = router.client(provider)
    return ClientEmbedder(spec, client, provider_config.embedding_batch_size)


def embed_in_batches(
    embedder: HashingEmbedder | ClientEmbedder,
    texts: list[str],
    task: str = "document",
    *,
    cancel: CancelToken | None = None,
    on_batch: BatchCallback | None = None,
) -> EmbeddingResult:
    """テキストをバッチに分けて埋め込み、入力順の正規化済み行列にまとめる。"""
    size = embedder.batch_size
    total = (len(texts) + size - 1) // size
    parts: list[np.ndarray] = []
    tokens = 0
    estimated = False
    for number, start in enumerate(range(0, len(texts), size), start=1):
        result = embedder.embed(texts[start : start + size], task, cancel=cancel)
        parts.append(result.vectors)
        tokens += result.tokens
        estimated = estimated or result.tokens_estimated
        if on_batch is not None:
            on_batch(number, total)
    if not parts:
        return EmbeddingResult(np.zeros((0, embedder.dimension or 0), dtype=np.float32), 0)
    widths = {p.shape[1] for p in parts}
    if len(widths) != 1:
        raise ProviderStreamBrokenError(f"{embedder.spec}: embeddings of different dimensions {sorted(widths)}")
    return EmbeddingResult(np.concatenate(parts, axis=0), tokens, estimated)
