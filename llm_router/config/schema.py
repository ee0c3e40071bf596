"""Hydra の構造化設定 (dataclass) の定義。Hydra も omegaconf も読み込まない (純粋な dataclass)。

YAML (``hydra_conf/``) の値はここで定義した型に照らして検証される。
秘密情報 (API キーなど) はここには置かない: それは ``settings.Secrets`` が .env から読む。
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# OmegaConf の「必須で値が無い」印 (``omegaconf.MISSING`` と同じ文字列)。ここで Hydra を読み込まないために
# 値だけを書く: この型は HTTP クライアントからも読まれ、Hydra の登録は :mod:`hydra_registration` が受け持つ。
MISSING: Any = "???"


@dataclass
class RetryConfig:
    """再試行の方針 (指数バックオフ + ジッタ + Retry-After)。"""

    max_retries: int = 2
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    jitter: float = 0.25
    max_retry_after_s: float = 120.0


@dataclass
class ModelOptions:
    """モデルごとの癖 (パラメータ名、温度の可否、推論の対応など)。

    キーは ``fnmatch`` 形式のパターン (例 ``gpt-5*``) で、最初に一致したものが使われる。
    """

    max_tokens_param: str | None = None
    supports_temperature: bool = True
    fixed_temperature: float | None = None
    reasoning: bool = False
    reasoning_style: str | None = None
    retired: bool = False
    note: str = ""
    # このモデルの文脈の大きさ (トークン)。None ならプロバイダの ``context_tokens``
    context_tokens: int | None = None


@dataclass
class ProviderConfig:
    """1 つのプロバイダ (OpenAI / Anthropic / Gemini / Ollama / demo) の接続設定。"""

    base_url: str = MISSING
    api_version: str | None = None
    chat_model: str = MISSING
    embedding_model: str | None = None
    embedding_batch_size: int = 100
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 120.0
    # 同時に開いておく接続の数 (同じプロバイダへの同時ストリーム数より大きくする)
    pool_maxsize: int = 256
    default_max_tokens: int = 1024
    # モデルの文脈の大きさ (トークン) の既定。models.<パターン>.context_tokens が優先。0 なら切り詰めない
    context_tokens: int = 128000
    retry: RetryConfig = field(default_factory=RetryConfig)
    schema_mode: str = "json_schema"
    strict_tools: bool = False
    stream_delay_s: float = 0.0
    reasoning_levels: dict[str, Any] = field(default_factory=dict)
    models: dict[str, ModelOptions] = field(default_factory=dict)


@dataclass
class ProvidersConfig:
    """全プロバイダの設定。"""

    openai: ProviderConfig = MISSING
    anthropic: ProviderConfig = MISSING
    gemini: ProviderConfig = MISSING
    ollama: ProviderConfig = MISSING
    demo: ProviderConfig = MISSING


@dataclass
class ModelsConfig:
    """モデルの別名、フォールバック、プリセット。"""

    aliases: dict[str, str] = field(default_factory=dict)
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    presets: dict[str, str] = field(default_factory=dict)
    auto_candidates: list[str] = field(default_factory=list)


@dataclass
class ServerConfig:
    """Socket.IO サーバーの設定。"""

    host: str = "127.0.0.1"
    port: int = 5000
    cors_allowed_origins: list[str] = field(default_factory=list)
    async_mode: str = "eventlet"
    max_payload_bytes: int = 1048576
    max_http_buffer_size: int = 2097152
    # user_message の画像 1 枚 (data / data URL) のデコード後の上限バイト数
    max_image_bytes: int = 1000000
    # この大きさ (見積もりのバイト数) 以上の JSON の変換はハブの外の OS スレッドで (0 ならいつもその場)
    offload_json_bytes: int = 65536
    max_connections: int = 1024
    event_log_max_events: int = 10000
    event_log_max_age_s: float = 3600.0
    # スレッドごとのイベントログの JSON の長さの合計の上限 (0 なら無制限)
    event_log_max_bytes: int = 8388608
    thread_idle_ttl_s: float = 86400.0
    # 使われていないスレッドを消す見回りの間隔 (バックグラウンドのタイマー)
    thread_sweep_interval_s: float = 60.0
    # 1 つの主体が持てるスレッドの数 (超える start は、ソケットもランも無い最古のスレッドを消すか limit_reached)
    max_threads_per_principal: int = 1000
    # 1 つの主体が同時に動かせるランの数 (超える user_message は limit_reached)
    max_active_runs_per_principal: int = 32
    rate_limit_per_minute: int = 600
    log_level: str = "INFO"


@dataclass
class AgentConfig:
    """エージェントループの設定。"""

    model: str = "auto"
    max_steps: int = 8
    client_tool_timeout_s: float = 60.0
    server_tool_timeout_s: float = 30.0
    disconnect_timeout_s: float = 600.0
    server_tools: list[str] = field(default_factory=list)
    temperature: float | None = None
    max_tokens: int = 1024
    step_reset_retries: int = 1
    # サーバー側ツールを動かす OS スレッドのプール: tpool (非同期ライブラリのプール) か threads (threading モードのみ)
    tool_executor: str = "tpool"
    tool_threads: int = 4
    # モデルに見せるツール結果の最大文字数 (超えたら頭と尻尾を残して中を省く。tool_result イベントは全文)
    max_tool_result_chars: int = 20000


@dataclass
class RagConfig:
    """RAG ストアの設定。"""

    store_path: str = "data/rag_store"
    embedding_model: str = "auto"
    chunk_size: int = 800
    chunk_overlap: int = 100
    top_k: int = 5
    hybrid: bool = True
    rrf_k: int = 60
    hashing_dimension: int = 512
    candidate_multiplier: int = 4
    min_candidates: int = 50
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    max_top_k: int = 20


@dataclass
class RedisStoreConfig:
    """Redis の部品 (``llm_router/cluster``) の設定。接続 URL は秘密情報なので .env の ``LLM_ROUTER_REDIS_URL``。"""

    # すべてのキーの接頭辞 (1 つの Redis を複数の環境で分けるとき用)
    key_prefix: str = "llm_router"
    connect_timeout_s: float = 2.0
    socket_timeout_s: float = 2.0
    # 接続が切れたあと、1 つのコマンドを何回まで繋ぎ直して試すか (redis-py の Retry)
    retries: int = 1
    # 1 つのクライアントが同時に使う接続の上限と、上限のときに空きを待つ最大秒数 (超えたら store_unavailable)
    pool_size: int = 64
    pool_timeout_s: float = 5.0
    # 別プロセスのランの持ち主へ送ったコマンドの返事を待つ秒数
    command_timeout_s: float = 5.0
    # コマンドの受信ループが 1 回の BLPOP で待つ秒数 (止める要求に気づくまでの最大の遅れ)
    command_poll_s: float = 1.0
    # 持ち主を失ったランを探す間隔 (0 以下なら run_lease_s の半分)
    orphan_scan_interval_s: float = 0.0


@dataclass
class StoreConfig:
    """スレッドとイベントログのストア (``llm_router/store``) の設定。"""

    # sqlite (既定: 1 ファイル) / memory (再起動で消える) / redis (複数プロセス。URL は .env の LLM_ROUTER_REDIS_URL)
    backend: str = "sqlite"
    path: str = "data/llm_router.sqlite3"
    # 実行中のランのリースの秒数 (持ち主のプロセスが更新し続ける)
    run_lease_s: float = 10.0
    # 他の接続が書き込みのロックを持つときに待つ最大ミリ秒 (超えたら store_unavailable)
    busy_timeout_ms: int = 5000
    # NORMAL: プロセスの異常終了 (SIGKILL) まで守る / FULL: 電源断まで守る (コミットごとに fsync)
    synchronous: str = "NORMAL"
    redis: RedisStoreConfig = field(default_factory=RedisStoreConfig)


@dataclass
class McpServerConfig:
    """MCP サーバー 1 つの接続設定 (``mcp.servers.<name>``)。説明は docs/mcp.md。

    ``transport`` が ``stdio`` なら ``command`` (実行ファイルと引数のリスト) と ``env``、``http`` なら ``url`` と
    ``headers`` (値は ``${VAR}`` で .env の変数を指せる)。``None`` の項目は ``mcp`` の既定値を使う。
    """

    transport: str = "stdio"
    command: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    start: str | None = None
    enabled: bool = True
    startup_timeout_s: float | None = None
    call_timeout_s: float | None = None


@dataclass
class McpConfig:
    """MCP サーバーをツールの供給元にする設定 (``mcp``)。

    ``protocol_version`` は ``initialize`` で名乗る版、``accepted_protocol_versions`` はサーバーが答えてよい版。
    """

    config_file: str | None = None
    servers: dict[str, McpServerConfig] = field(default_factory=dict)
    allowed_commands: list[str] = field(default_factory=list)
    start: str = "lazy"
    protocol_version: str = "2025-11-25"
    accepted_protocol_versions: list[str] = field(default_factory=lambda: ["2025-11-25", "2025-06-18", "2025-03-26"])
    startup_timeout_s: float = 30.0
    call_timeout_s: float = 60.0
    request_timeout_s: float = 10.0
    shutdown_timeout_s: float = 3.0
    connect_timeout_s: float = 5.0
    max_tool_pages: int = 100
    max_stderr_line_chars: int = 2000
    max_message_bytes: int = 16777216
    inherited_env: list[str] = field(default_factory=lambda: ["HOME", "LOGNAME", "PATH", "SHELL", "TERM", "USER"])
    retry_listing_after_s: float = 30.0
    client_name: str = "llm_router"
    client_version: str = "0.1.0"


@dataclass
class AguiConfig:
    """AG-UI のエンドポイント (``POST /agui``、docs/agui.md) の設定。"""

    enabled: bool = True
    path: str = "/agui"
    keepalive_s: float = 15.0
    disconnect_poll_s: float = 0.25
    max_body_bytes: int = 4194304
    max_threads: int = 10000


@dataclass
class AppConfig:
    """アプリ全体の設定のルート。"""

    server: ServerConfig = field(default_factory=ServerConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    providers: ProvidersConfig = field(default_factory=ProvidersConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    rag: RagConfig = field(default_factory=RagConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    mcp: McpConfig = field(default_factory=McpConfig)
    agui: AguiConfig = field(default_factory=AguiConfig)


def model_options_for(config: ProviderConfig, model: str) -> ModelOptions:
    """プロバイダ設定 ``models`` から、モデル名に最初に一致したパターンの癖を返す (無ければ既定値)。"""
    import fnmatch

    for pattern, options in config.models.items():
        if fnmatch.fnmatchcase(model, pattern):
            return options
    return ModelOptions()


def context_tokens_for(config: ProviderConfig, model: str) -> int | None:
    """モデルの文脈の大きさ (トークン)。最初に一致した ``models.<パターン>.context_tokens`` が先、無ければ
    プロバイダの ``context_tokens``。0 以下 (切り詰めない) なら ``None``。
    """
    value = model_options_for(config, model).context_tokens or config.context_tokens
    return int(value) if value and int(value) > 0 else None
