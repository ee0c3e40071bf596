"""ModelRouter のテスト: 別名、プリセット、auto、フォールバック、キーが無いときのエラー、クライアントの生成。"""

from __future__ import annotations

import pytest

from llm_router.config.settings import load_settings
from llm_router.core.router import ModelRoute, ModelRouter
from llm_router.core.schemas.common import ToolDefinition
from llm_router.core.schemas.errors import ConfigurationError, MissingCredentialError


class RecordingClient:
    """テスト用のクライアント: 受け取った設定とキーを覚え、警告を決まった形で返す。"""

    provider = "openai"
    closed = 0

    def __init__(self, config, api_key):
        """設定とキーを覚える。"""
        self.config = config
        self.api_key = api_key

    def tool_warnings(self, tools, model):
        """ツールごとに 1 つの警告を返す。"""
        return [f"tool '{t.name}' ({model}): checked" for t in tools]

    def reasoning_warning(self, model, level):
        """off 以外なら警告を返す。"""
        return None if level == "off" else f"{model}: no reasoning"

    def close(self):
        """閉じた回数を数える。"""
        RecordingClient.closed += 1


FAKE = "tests.core.test_router:RecordingClient"


def make_router(environ=None, overrides=(), classes=None):
    """.env を読まず、与えた環境変数だけで設定を組み立てたルーター。"""
    settings = load_settings(list(overrides), env_file=None, environ=environ or {})
    return ModelRouter(settings, client_classes=classes)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("openai/gpt-4.1-mini", ("openai", "gpt-4.1-mini")),
        ("anthropic/claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
        ("ollama/hf.co/org/model:Q4", ("ollama", "hf.co/org/model:Q4")),
        ("fast", ("anthropic", "claude-haiku-4-5")),
        ("smart", ("anthropic", "claude-sonnet-4-6")),
        ("local", ("ollama", "llama3.2")),
        ("gpt-4o", ("openai", "gpt-4o")),
        ("gemini", ("gemini", "gemini-2.5-flash")),
        ("openai/", ("openai", "gpt-4.1-mini")),
        ("OpenAI/gpt-4.1-mini", ("openai", "gpt-4.1-mini")),
        ("  smart  ", ("anthropic", "claude-sonnet-4-6")),
    ],
)
def test_resolve_table(spec, expected):
    """provider/model、別名、プリセット、プロバイダ名だけ (既定モデル) を解決する。"""
    route = make_router().resolve(spec)
    assert (route.provider, route.model) == expected
    assert route.spec == f"{expected[0]}/{expected[1]}"


def test_alias_records_where_it_came_from():
    """別名から解決したルートは元の名前を ``via`` に持つ。"""
    route = make_router().resolve("fast")
    assert route.via == "fast"
    assert route == ModelRoute("anthropic", "claude-haiku-4-5")


@pytest.mark.parametrize("spec", ["nonsense", "mistral/large", "gpt4"])
def test_bad_spec_error_names_the_format(spec):
    """形式の違う指定は 'provider/model' の形を示すエラーになる。"""
    with pytest.raises(ConfigurationError, match="provider/model") as info:
        make_router().resolve(spec)
    assert spec in str(info.value)


def test_retired_preset_carries_a_warning():
    """提供終了のプリセットは解決できるが、警告を持つ。"""
    route = make_router().resolve("claude-3-opus")
    assert route.spec == "anthropic/claude-3-opus-20240229"
    assert route.warning and "retired" in route.warning


def test_served_model_has_no_warning():
    """提供中のモデルには警告が無い。"""
    assert make_router().resolve("smart").warning is None


def test_auto_without_any_key_is_demo():
    """キーが 1 つも無ければ auto は demo プロバイダになる。"""
    router = make_router()
    route = router.resolve(None)
    assert route.provider == "demo"
    assert route.spec == "demo/scripted"
    assert router.is_demo_default()
    assert router.default_spec() == "demo/scripted"


def test_auto_picks_the_first_candidate_with_a_key():
    """auto は models.auto_candidates のうちキーのある最初のものを選ぶ。"""
    router = make_router({"GEMINI_API_KEY": "g-key", "ANTHROPIC_API_KEY": "a-key"})
    assert router.resolve("auto").spec == "anthropic/claude-sonnet-4-6"
    assert not router.is_demo_default()
    only_gemini = make_router({"GOOGLE_API_KEY": "g-key"})
    assert only_gemini.default_spec() == "gemini/gemini-2.5-flash"


def test_explicit_agent_model_is_the_default():
    """agent.model を指定すればそれが既定になる (キーの有無に関係なく)。"""
    router = make_router(overrides=["agent.model=fast"])
    assert router.default_spec() == "anthropic/claude-haiku-4-5"


def test_circular_aliases_are_refused():
    """別名の循環は止まらずにエラーになる。"""
    router = make_router(overrides=["+models.aliases.a=b", "+models.aliases.b=a"])
    with pytest.raises(ConfigurationError, match="circular"):
        router.resolve("a")


def test_fallback_chain_is_followed_transitively_for_providers_with_keys():
    """フォールバックは設定を推移的にたどり、キーのあるものだけを並べる。"""
    keys = {"ANTHROPIC_API_KEY": "a", "OPENAI_API_KEY": "o", "GEMINI_API_KEY": "g"}
    chain = make_router(keys).chain("smart")
    assert [r.spec for r in chain] == [
        "anthropic/claude-sonnet-4-6",
        "openai/gpt-4.1-mini",
        "gemini/gemini-2.5-flash",
    ]
    partial = make_router({"ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g"}).chain("smart")
    assert [r.spec for r in partial] == ["anthropic/claude-sonnet-4-6", "gemini/gemini-2.5-flash"]


def test_chain_without_fallbacks_is_the_route_alone():
    """フォールバックの無いモデルの連鎖はそのモデルだけ。"""
    assert [r.spec for r in make_router().chain("local")] == ["ollama/llama3.2"]


def test_chain_survives_a_fallback_cycle():
    """フォールバックが循環していても、各モデルは 1 度だけ並ぶ。"""
    router = make_router({"OPENAI_API_KEY": "o", "GEMINI_API_KEY": "g"})
    # "/" を含むキーは Hydra のオーバーライド文法で書けないので、組み立てた設定を直接変える
    router.settings.config.models.fallbacks["gemini/gemini-2.5-flash"] = ["openai/gpt-4.1-mini"]
    assert [r.spec for r in router.chain("mini")] == ["openai/gpt-4.1-mini", "gemini/gemini-2.5-flash"]


def test_missing_key_error_names_the_env_variable():
    """キーの無いプロバイダのクライアントを求めると、設定すべき .env 変数名が出る。"""
    router = make_router(classes={"anthropic": FAKE})
    with pytest.raises(MissingCredentialError, match="ANTHROPIC_API_KEY"):
        router.client("anthropic")
    gemini = make_router(classes={"gemini": FAKE})
    with pytest.raises(MissingCredentialError, match=r"GEMINI_API_KEY.*GOOGLE_API_KEY"):
        gemini.client("gemini")


def test_client_is_built_from_the_table_with_config_and_key_and_cached():
    """クライアントは表のクラスから、プロバイダ設定とキーで作られ、キャッシュされる。"""
    router = make_router({"OPENAI_API_KEY": "sk-test"}, classes={"openai": FAKE})
    client = router.client("openai")
    assert isinstance(client, RecordingClient)
    assert client.api_key == "sk-test"
    assert client.config.base_url.endswith("/v1")
    assert router.client("openai") is client


def test_keyless_provider_gets_no_key():
    """Ollama はキー不要: キー無しで作られる。"""
    client = make_router(classes={"ollama": FAKE}).client("ollama")
    assert client.api_key is None


def test_missing_client_module_is_a_clear_error():
    """クライアントのモジュールが無ければ、何が無いかを言うエラーになる。"""
    router = make_router(classes={"demo": "llm_router.core.clients.no_such_module:Nope"})
    with pytest.raises(ConfigurationError, match=r"demo.*no_such_module"):
        router.client("demo")


def test_unknown_provider_client_is_refused():
    """表に無いプロバイダは設定の誤り。"""
    with pytest.raises(ConfigurationError, match="unknown provider"):
        make_router(classes={}).client("mistral")


def test_real_openai_client_is_importable_from_the_default_table():
    """既定の表の import パスが実在するクライアントを指す (OpenAI)。"""
    router = make_router({"OPENAI_API_KEY": "sk-test"})
    client = router.client("openai")
    assert client.provider == "openai"
    router.close()


def test_tool_and_reasoning_warnings_delegate_to_the_client_even_without_a_key():
    """警告はクライアントに任せる。キーが無くても (ネットワークに出ずに) 調べられる。"""
    router = make_router(classes={"anthropic": FAKE})
    tools = [ToolDefinition("a"), ToolDefinition("b")]
    assert router.tool_warnings("fast", tools) == [
        "tool 'a' (claude-haiku-4-5): checked",
        "tool 'b' (claude-haiku-4-5): checked",
    ]
    assert router.tool_warnings("fast", []) == []
    assert router.reasoning_warning("fast", "high") == "claude-haiku-4-5: no reasoning"
    assert router.reasoning_warning("fast", "off") is None


def test_available_models_lists_defaults_aliases_presets_and_flags():
    """一覧: 各プロバイダの既定、別名とプリセット、has_key / demo / retired。"""
    router = make_router({"OPENAI_API_KEY": "o"})
    models = {m["id"]: m for m in router.available_models()}
    for provider in ("openai", "anthropic", "gemini", "ollama", "demo"):
        assert any(m["provider"] == provider for m in models.values())
    assert models["openai/gpt-4.1-mini"]["has_key"] is True
    assert "mini" in models["openai/gpt-4.1-mini"]["aliases"]
    assert models["anthropic/claude-sonnet-4-6"]["has_key"] is False
    assert "smart" in models["anthropic/claude-sonnet-4-6"]["aliases"]
    assert models["demo/scripted"]["demo"] is True and models["demo/scripted"]["has_key"] is True
    assert models["anthropic/claude-3-opus-20240229"]["retired"] is True
    assert models["gemini/gemini-1.5-pro"]["retired"] is True
    assert models["openai/gpt-4o"]["retired"] is False
    assert all(set(m) >= {"id", "aliases", "has_key", "demo", "retired"} for m in models.values())


def test_close_closes_every_built_client():
    """close は作ったクライアントをすべて閉じる。"""
    router = make_router({"OPENAI_API_KEY": "o"}, classes={"openai": FAKE, "gemini": FAKE})
    router.client("openai")
    router.tool_warnings("gemini", [ToolDefinition("a")])
    before = RecordingClient.closed
    router.close()
    assert RecordingClient.closed == before + 2


def test_router_answers_what_the_agent_needs_from_the_configuration():
    """エージェントが尋ねる文脈の大きさ・再試行の待ち時間・秘密の値は、設定と環境変数から答える。"""
    router = make_router(
        environ={"OPENAI_API_KEY": "sk-test-value"},
        overrides=["providers.ollama.context_tokens=0", "providers.openai.retry.initial_backoff_s=0.25"],
    )
    assert router.context_tokens("openai", "gpt-4.1-mini") == 1047576
    assert router.context_tokens("openai", "gpt-4o") == 128000
    assert router.context_tokens("ollama", "llama3.2") is None
    assert router.context_tokens("nosuch", "m") is None
    assert router.retry_backoff_s("openai") == 0.25 and router.retry_backoff_s("nosuch") == 0.0
    assert "sk-test-value" in router.secret_values()
