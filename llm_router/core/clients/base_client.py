"""全プロバイダクライアントの土台: セッション、タイムアウト、再試行、ストリームの読み取り、キャンセル、エラー変換。

- 1 クライアントにつき 1 つの ``requests.Session`` (接続プール)。
- 再試行は ``for attempt in range(max_retries + 1)`` の有界ループ。再試行するのは再試行可能な
  エラーだけで、しかも出力がまだ 1 バイトも流れていない (応答ヘッダを受け取る前の) ときだけ。
  待ち時間は ``retry-after-ms`` → ``retry-after`` (秒または HTTP 日付) → 指数バックオフ + ジッタ
  (参考: openai-python ``_base_client.py`` の ``_calculate_retry_timeout``、``x-should-retry``)。
- ``requests`` / ``urllib3`` の例外は :func:`translate_errors` 1 か所で共有のエラー型に変える。
- ストリームは ``response.raw.read1`` で届いた分ずつ読み、I/O を持たないデコーダ
  (:mod:`stream_readers`) に渡す。キャンセルはトークンのコールバックでソケットを ``shutdown`` する:
  eventlet では別のグリーンスレッドからの ``response.close()`` は再入エラーになり、チャンク間の
  フラグ確認では停止したストリームで待たされるため。応答の ``close()`` は読み手自身のスコープで行う。
- API キーはヘッダでのみ送り、ログ・例外の文言からは伏せる (:meth:`BaseClient.redact`)。
"""

from __future__ import annotations

import email.utils
import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import requests
import urllib3.exceptions

from llm_router import errors
from llm_router.config.schema import ModelOptions, ProviderConfig, model_options_for
from llm_router.core import json_codec
from llm_router.core.cancel import CancelToken
from llm_router.core.clients.connection_tracking import ConnectionHolder, TrackingAdapter, tracking
from llm_router.core.clients.interface import RetryCallback
from llm_router.core.clients.stream_readers import NDJSONDecoder, SSEDecoder, SSEEvent
from llm_router.core.schemas.common import ChatRequest, EmbeddingRequest, EmbeddingResponse, StreamChunk, Usage

logger = logging.getLogger(__name__)

_MAX_ERROR_BODY = 4000

# 埋め込みの 1 バッチの結果: (入力順のベクトル, 入力トークン数)
EmbedBatchResult = tuple[list[list[float]], int]
# 1 回の JSON の POST: (相対パス, 本文) → JSON の応答 (キャンセル・再試行・404 の注記は呼び手の分を引き継ぐ)
PostJson = Callable[[str, Any], Any]


def parse_retry_after(headers: Any) -> float | None:
    """``retry-after-ms`` → ``retry-after`` (秒または HTTP 日付) の順に待ち秒数を読む。

    参考: openai-python ``_base_client.py`` (``_parse_retry_after_header``)。
    """
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, email.utils.mktime_tz(parsed) - time.time())


def error_for_status(
    status: int,
    message: str,
    *,
    provider: str,
    retry_after_s: float | None = None,
    error_type: str | None = None,
) -> errors.ProviderError:
    """HTTP ステータスから共有のエラー型を選ぶ (唯一の対応表)。

    408 / 409 / 429 / 5xx は再試行可能 (openai-python と anthropic-sdk-python の ``_should_retry`` と同じ)。
    """
    kwargs: dict[str, Any] = {"provider": provider, "status": status, "error_type": error_type}
    if status in (401, 403):
        return errors.ProviderAuthError(message, **kwargs)
    if status == 429:
        return errors.ProviderRateLimitedError(message, retry_after_s=retry_after_s, **kwargs)
    if status == 408:
        return errors.ProviderTimeoutError(message, retry_after_s=retry_after_s, **kwargs)
    if status == 409 or status >= 500:
        return errors.ProviderUnavailableError(message, retry_after_s=retry_after_s, **kwargs)
    if status == 404:
        return errors.ModelNotFoundError(message, **kwargs)
    return errors.ProviderBadRequestError(message, **kwargs)


@contextmanager
def translate_errors(provider: str, *, streaming: bool = False) -> Iterator[None]:
    """``requests`` / ``urllib3`` / ``socket`` の例外を共有のエラー型に変える (唯一の場所)。"""
    try:
        yield
    except (errors.ProviderError, errors.RequestCancelled):
        raise
    except (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError) as exc:
        raise errors.ProviderTimeoutError(f"connection timed out: {type(exc).__name__}", provider=provider) from exc
    except (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError) as exc:
        raise errors.ProviderTimeoutError(f"read timed out: {type(exc).__name__}", provider=provider) from exc
    except (
        requests.exceptions.ChunkedEncodingError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.IncompleteRead,
    ) as exc:
        raise errors.ProviderStreamBrokenError(f"the stream broke: {type(exc).__name__}", provider=provider) from exc
    except (requests.ConnectionError, ConnectionError, OSError) as exc:
        if streaming:
            raise errors.ProviderStreamBrokenError(
                f"the stream broke: {type(exc).__name__}", provider=provider
            ) from exc
        raise errors.ProviderUnavailableError(f"could not connect: {type(exc).__name__}", provider=provider) from exc
    except requests.RequestException as exc:
        raise errors.ProviderUnavailableError(f"request failed: {type(exc).__name__}", provider=provider) from exc


def _socket_of(response: requests.Response) -> socket.socket | None:
    """ストリーム応答の下にあるソケットを探す (urllib3 2.x の内部属性をたどる)。"""
    raw = getattr(response, "raw", None)
    connection = getattr(raw, "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        return sock
    fp = getattr(getattr(raw, "_fp", None), "fp", None)
    return getattr(getattr(fp, "raw", None), "_sock", None)


def _shutdown(sock: socket.socket) -> None:
    """ソケットを両方向とも閉じ、ブロック中の読み手を即座に起こす。"""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class BaseClient:
    """プロバイダクライアントの基底クラス。各プロバイダはヘッダとエラー本文の解釈だけを上書きする。"""

    provider: ClassVar[str] = ""

    def __init__(
        self,
        config: ProviderConfig,
        api_key: str | None = None,
        *,
        session: requests.Session | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """設定と API キーを受け取る。キーはヘッダでのみ使う。"""
        self.config = config
        self._api_key = api_key
        self.session = session or requests.Session()
        adapter = TrackingAdapter(pool_connections=4, pool_maxsize=config.pool_maxsize, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self._rng = rng or random.Random()

    def close(self) -> None:
        """セッション (接続プール) を閉じる。"""
        self.session.close()

    def __repr__(self) -> str:
        """キーを含まない表現。"""
        return f"{type(self).__name__}(base_url={self.config.base_url!r})"

    # ------------------------------------------------------------ 上書きする部分

    def _auth_headers(self) -> dict[str, str]:
        """認証ヘッダ (プロバイダごとに上書き)。"""
        return {}

    def _parse_error_body(self, body: Any, text: str) -> tuple[str, str | None]:
        """エラー本文から (プロバイダの文言, 種別) を取り出す。既定は ``{"error": {"message", "type"}}``。"""
        if isinstance(body, dict):
            error = body.get("error")
            if isinstance(error, dict):
                message = error.get("message") or text
                kind = error.get("type") or error.get("status") or error.get("code")
                return str(message), str(kind) if kind is not None else None
            if isinstance(error, str):
                return error, None
        return text.strip() or "(empty error body)", None

    def _classify(
        self, status: int, message: str, error_type: str | None, body: Any, headers: Any
    ) -> errors.ProviderError:
        """ステータスと本文からエラーを作る (プロバイダ固有の例外規則はここを上書き)。"""
        return error_for_status(
            status,
            message,
            provider=self.provider,
            retry_after_s=parse_retry_after(headers),
            error_type=error_type,
        )

    def _schema_warnings(self, tool: Any, model: str) -> list[str]:
        """1 つのツールのスキーマを送るときの警告 (プロバイダごとに上書き。既定は無し)。"""
        return []

    # ------------------------------------------------------------ 共通の道具

    def tool_warnings(self, tools: list[Any], model: str) -> list[str]:
        """このプロバイダ/モデルへ送るときに落とす・書き換えるスキーマのキーワード (ツール名つき)。"""
        out: list[str] = []
        for tool in tools:
            for warning in self._schema_warnings(tool, model):
                out.append(warning if tool.name in warning else f"{tool.name}: {warning}")
        return out

    def reasoning_warning(self, model: str, level: str) -> str | None:
        """推論 (thinking) を求められたが、設定でモデルが推論に対応しないときの警告文 (対応していれば ``None``)。"""
        if level == "off" or model_options_for(self.config, model).reasoning:
            return None
        return (
            f"model '{self.provider}/{model}' does not support reasoning; reasoning={level} is ignored "
            f"(モデル '{self.provider}/{model}' は推論 (thinking) に対応していないため、reasoning={level} は無視されます)"
        )

    def model_not_found(self, model: str, exc: errors.ModelNotFoundError) -> errors.ModelNotFoundError:
        """404 を、モデル名と (設定にあれば) 提供終了の注記を含むエラーにする。"""
        options = model_options_for(self.config, model)
        note = " (retired" + (f": {options.note}" if options.note else "") + ")" if options.retired else ""
        return errors.ModelNotFoundError(
            f"model '{self.provider}/{model}' was not found{note}; choose a served model "
            f"(モデル '{self.provider}/{model}' が見つかりません。提供中のモデルを選んでください): {exc.message}",
            provider=self.provider,
            status=exc.status,
            error_type=exc.error_type,
        )

    def redact(self, text: str) -> str:
        """文字列から API キーを伏せる。"""
        if self._api_key and self._api_key in text:
            text = text.replace(self._api_key, "***")
        return text

    def _url(self, path: str) -> str:
        """``base_url`` と相対パスをつなぐ。"""
        return self.config.base_url.rstrip("/") + path

    def _timeout(self) -> tuple[float, float]:
        """(接続, 読み取り) タイムアウト。"""
        return (self.config.connect_timeout_s, self.config.read_timeout_s)

    def error_from_response(self, response: requests.Response) -> errors.ProviderError:
        """HTTP エラー応答を共有のエラー型にする (本文を読み、応答を閉じる)。"""
        try:
            text = response.text[:_MAX_ERROR_BODY]
        except Exception:
            text = ""
        finally:
            response.close()
        try:
            body = response.json() if text else None
        except ValueError:
            body = None
        message, error_type = self._parse_error_body(body, text)
        error = self._classify(response.status_code, self.redact(message), error_type, body, response.headers)
        should_retry = response.headers.get("x-should-retry")
        if should_retry == "true":
            error.retryable = True
        elif should_retry == "false":
            error.retryable = False
        return error

    def _retry_delay(self, attempt: int, error: errors.ProviderError) -> float:
        """``attempt`` 回目 (0 始まり) の失敗の後の待ち秒数。"""
        policy = self.config.retry
        if error.retry_after_s is not None and error.retry_after_s <= policy.max_retry_after_s:
            return error.retry_after_s
        backoff = min(policy.initial_backoff_s * (2**attempt), policy.max_backoff_s)
        return backoff * (1.0 - policy.jitter * self._rng.random())

    def _send(
        self,
        method: str,
        path: str,
        body: Any,
        *,
        stream: bool,
        headers: dict[str, str] | None,
        cancel: CancelToken | None = None,
    ) -> requests.Response:
        """1 回だけ送る (再試行なし)。接続の例外は共有のエラー型になる。

        応答ヘッダを待っている間のキャンセルは、使用中の接続のソケットを閉じて即座に止める
        (:mod:`connection_tracking`)。
        """
        all_headers = {"content-type": "application/json", **self._auth_headers(), **(headers or {})}
        if stream:
            all_headers.setdefault("accept-encoding", "identity")
        holder = ConnectionHolder()
        handle = cancel.add_callback(holder.shutdown) if cancel is not None else 0
        try:
            with tracking(holder), translate_errors(self.provider):
                return self.session.request(
                    method,
                    self._url(path),
                    data=None if body is None else json_codec.dumps(body, allow_nan=False).encode("utf-8"),
                    headers=all_headers,
                    stream=stream,
                    timeout=self._timeout(),
                )
        finally:
            if handle:
                cancel.remove_callback(handle)  # type: ignore[union-attr]

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        stream: bool = False,
        headers: dict[str, str] | None = None,
        cancel: CancelToken | None = None,
        on_retry: RetryCallback | None = None,
        model: str | None = None,
    ) -> requests.Response:
        """再試行付きで送り、成功した応答を返す (失敗は共有のエラー型で投げる)。

        再試行は応答ヘッダを受け取るまでの失敗に限る: ストリームが流れ始めた後の失敗は呼び手に任せる。
        ``model`` を渡すと、404 はモデル名と提供終了の注記を加えた :meth:`model_not_found` になる
        (全プロバイダ共通の 1 か所)。
        """
        attempts = max(0, self.config.retry.max_retries) + 1
        for attempt in range(attempts):
            if cancel is not None:
                cancel.raise_if_cancelled()
            try:
                response = self._send(method, path, body, stream=stream, headers=headers, cancel=cancel)
                if response.status_code < 400:
                    if cancel is not None and cancel.cancelled:
                        response.close()
                        cancel.raise_if_cancelled()
                    return response
                error = self.error_from_response(response)
            except errors.ProviderError as exc:
                if cancel is not None and cancel.cancelled:
                    raise errors.RequestCancelled("request cancelled") from None
                error = exc
            if not error.retryable or attempt == attempts - 1:
                if model and isinstance(error, errors.ModelNotFoundError):
                    raise self.model_not_found(model, error) from error
                raise error
            delay = self._retry_delay(attempt, error)
            logger.debug("retrying %s after %.2fs: %s", self.provider, delay, error)
            if on_retry is not None:
                on_retry(attempt + 1, delay, error)
            if cancel is not None:
                if cancel.wait(delay):
                    cancel.raise_if_cancelled()
            else:
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def post_json(
        self,
        path: str,
        body: Any,
        *,
        headers: dict[str, str] | None = None,
        cancel: CancelToken | None = None,
        on_retry: RetryCallback | None = None,
        model: str | None = None,
    ) -> Any:
        """JSON を POST し、JSON の応答を返す (``model`` は 404 の注記用: :meth:`request`)。"""
        response = self.request("POST", path, body, headers=headers, cancel=cancel, on_retry=on_retry, model=model)
        return self.read_json(response)

    def read_json(self, response: requests.Response) -> Any:
        """JSON の応答本文を読み、応答を閉じる。JSON でなければストリーム破損。"""
        try:
            with translate_errors(self.provider):
                return response.json()
        except ValueError as exc:
            raise errors.ProviderStreamBrokenError("response is not valid JSON", provider=self.provider) from exc
        finally:
            response.close()

    # ------------------------------------------------------------ 本文の共通部品

    def max_tokens(self, request: ChatRequest) -> int:
        """最大出力トークン数: リクエストの値、無ければ設定 ``default_max_tokens``。"""
        return request.max_tokens or self.config.default_max_tokens

    @staticmethod
    def set_temperature(target: Any, request: ChatRequest, options: ModelOptions, *, thinking: bool = False) -> None:
        """送るべき温度があれば ``target["temperature"]`` に書く。全プロバイダで同じ規則 (モデルの癖は設定 ``models``)。

        思考中は送らない (Anthropic "Extended thinking": 互換性のない設定)。モデルが固定の温度を持てば
        それを、温度を受け付けるモデルならリクエストの値 (あれば) を送る。
        """
        if thinking:
            return
        if options.fixed_temperature is not None:
            target["temperature"] = options.fixed_temperature
        elif options.supports_temperature and request.temperature is not None:
            target["temperature"] = request.temperature

    def build_body(self, request: ChatRequest, *, stream: bool) -> Any:
        """共通のリクエストからプロバイダの本文を作る (プロバイダごとに上書き)。"""
        raise NotImplementedError

    def chat_path(self, model: str) -> str:
        """チャットのストリームを POST する相対パス (プロバイダごとに上書き)。"""
        raise NotImplementedError

    def read_stream(self, response: requests.Response, model: str, cancel: CancelToken | None) -> Iterator[StreamChunk]:
        """ストリーム応答を共通のチャンクにする。最後は必ず ``StreamEnd`` (プロバイダごとに上書き)。"""
        raise NotImplementedError

    def chat_stream(
        self, request: ChatRequest, *, cancel: CancelToken | None = None, on_retry: RetryCallback | None = None
    ) -> Iterator[StreamChunk]:
        """ストリーミングのチャット (全プロバイダ共通の流れ): 本文 → ストリームを開く → プロバイダの読み手。"""
        body = self.build_body(request, stream=True)
        response = self.open_stream(self.chat_path(request.model), body, request.model, cancel, on_retry)
        yield from self.read_stream(response, request.model, cancel)

    def embed_batch(self, model: str, batch: list[str], request: EmbeddingRequest, send: PostJson) -> EmbedBatchResult:
        """埋め込みの 1 バッチを ``send`` で送り、(入力順のベクトル, 入力トークン数) を返す (プロバイダごとに上書き)。"""
        raise errors.ProviderBadRequestError(f"{self.provider} has no embeddings API", provider=self.provider)

    def open_stream(
        self, path: str, body: Any, model: str, cancel: CancelToken | None, on_retry: RetryCallback | None
    ) -> requests.Response:
        """ストリームの要求を POST し、ヘッダを受け取った応答を返す (再試行と 404 の注記は :meth:`request`)。"""
        return self.request("POST", path, body, stream=True, cancel=cancel, on_retry=on_retry, model=model)

    def embed(
        self, request: EmbeddingRequest, *, cancel: CancelToken | None = None, on_retry: RetryCallback | None = None
    ) -> EmbeddingResponse:
        """入力を ``embedding_batch_size`` ごとに :meth:`embed_batch` へ渡し、入力順の float32 行列にまとめる。

        返ったベクトルの数がバッチと合わなければストリーム破損。
        """
        model = request.model or self.config.embedding_model or ""
        size = max(1, int(self.config.embedding_batch_size))
        rows: list[list[float]] = []
        usage = Usage()

        def send(path: str, body: Any) -> Any:
            """このバッチを POST する (404 はこの埋め込みモデルの名前つき)。"""
            return self.post_json(path, body, cancel=cancel, on_retry=on_retry, model=model)

        for start in range(0, len(request.inputs), size):
            batch = request.inputs[start : start + size]
            vectors, tokens = self.embed_batch(model, batch, request, send)
            if len(vectors) != len(batch):
                raise errors.ProviderStreamBrokenError(
                    f"expected {len(batch)} embeddings, got {len(vectors)}", provider=self.provider
                )
            rows.extend(vectors)
            usage = usage + Usage(input_tokens=tokens)
        import numpy as np  # 埋め込みのときだけ読み込む (import llm_router を軽く保つ)

        width = len(rows[0]) if rows else (request.dimensions or 0)
        matrix = np.asarray(rows, dtype=np.float32).reshape(len(rows), width)
        return EmbeddingResponse(vectors=matrix, model=model, usage=usage)

    def iter_bytes(self, response: requests.Response, cancel: CancelToken | None = None) -> Iterator[bytes]:
        """ストリーム応答のバイト列を届いた分ずつ返す。キャンセルでソケットを閉じて即座に止まる。

        応答は最後に (読み手自身のスコープで) 必ず閉じる。
        """
        sock = _socket_of(response)
        handle = cancel.add_callback(lambda: _shutdown(sock)) if (cancel is not None and sock is not None) else 0
        raw = response.raw
        try:
            while True:
                try:
                    with translate_errors(self.provider, streaming=True):
                        data = raw.read1(65536)
                except errors.ProviderError:
                    if cancel is not None and cancel.cancelled:
                        raise errors.RequestCancelled("request cancelled") from None
                    raise
                if cancel is not None and cancel.cancelled:
                    raise errors.RequestCancelled("request cancelled")
                if not data:
                    return
                yield data
        finally:
            if handle:
                cancel.remove_callback(handle)  # type: ignore[union-attr]
            response.close()

    def iter_sse(self, response: requests.Response, cancel: CancelToken | None = None) -> Iterator[SSEEvent]:
        """ストリーム応答を SSE イベントとして読む。"""
        decoder = SSEDecoder()
        for data in self.iter_bytes(response, cancel):
            yield from decoder.feed(data)
        yield from decoder.flush()

    def iter_ndjson(self, response: requests.Response, cancel: CancelToken | None = None) -> Iterator[Any]:
        """ストリーム応答を NDJSON の行として読む。解析できない行はストリーム破損とする。"""
        decoder = NDJSONDecoder()
        try:
            for data in self.iter_bytes(response, cancel):
                yield from decoder.feed(data)
            yield from decoder.flush()
        except ValueError as exc:
            raise errors.ProviderStreamBrokenError(str(exc), provider=self.provider) from exc
