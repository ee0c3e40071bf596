"""設定 (Hydra + .env) のテスト。"""

import pytest

from llm_router.config.settings import load_settings
from llm_router.core.schemas.errors import MissingCredentialError


def test_protocol_configuration_keys_exist_with_their_names():
    """docs/protocol.md 8 章の設定キーが、その名前のまま存在する。"""
    s = load_settings(env_file=None, environ={})
    c = s.config
    assert c.server.host == "127.0.0.1"
    assert c.server.port == 5000
    assert isinstance(c.server.cors_allowed_origins, list)
    assert "/" in c.agent.model or c.agent.model == "auto"
    assert c.agent.max_steps > 0 and c.agent.client_tool_timeout_s > 0
    assert isinstance(c.agent.server_tools, list)
    assert c.providers.openai.base_url.endswith("/v1")
    assert not c.providers.anthropic.base_url.rstrip("/").endswith("/v1")
    assert c.providers.gemini.api_version == "v1beta"
    assert not c.providers.ollama.base_url.rstrip("/").endswith("/api")
    assert c.providers.anthropic.api_version == "2023-06-01"


def test_overrides_are_applied():
    """コマンドラインと同じ形のオーバーライドが効く。"""
    s = load_settings(["server.port=8080", "agent.model=ollama/llama3.2"], env_file=None, environ={})
    assert s.config.server.port == 8080
    assert s.config.agent.model == "ollama/llama3.2"


def test_an_override_with_the_wrong_type_is_refused():
    """構造化設定が型を検査する。"""
    with pytest.raises(Exception, match="port"):
        load_settings(["server.port=not-a-number"], env_file=None, environ={})


def test_dotenv_is_read_and_the_environment_wins(tmp_path):
    """.env を読み、同じ変数が環境にあれば環境が優先される。"""
    env = tmp_path / ".env"
    env.write_text("OPENAI_API_KEY=from-dotenv\nANTHROPIC_API_KEY=anthropic-dotenv\n")
    s = load_settings(env_file=env, environ={"OPENAI_API_KEY": "from-environ"})
    assert s.api_key("openai") == "from-environ"
    assert s.api_key("anthropic") == "anthropic-dotenv"


def test_gemini_key_falls_back_to_google_api_key(tmp_path):
    """GEMINI_API_KEY が無ければ GOOGLE_API_KEY を使う。"""
    s = load_settings(env_file=None, environ={"GOOGLE_API_KEY": "g-key"})
    assert s.api_key("gemini") == "g-key"


def test_missing_key_error_names_the_variable():
    """キーが無いときのエラーは設定すべき変数名を含む。"""
    s = load_settings(env_file=None, environ={})
    with pytest.raises(MissingCredentialError, match="ANTHROPIC_API_KEY"):
        s.require_api_key("anthropic")
    with pytest.raises(MissingCredentialError, match="GEMINI_API_KEY"):
        s.require_api_key("gemini")
    assert s.require_api_key("ollama") is None


def test_secrets_never_appear_in_the_public_config_or_repr():
    """公開用の設定と repr に秘密の値が出ない。"""
    secret = "sk-test-very-secret-value"
    s = load_settings(env_file=None, environ={"OPENAI_API_KEY": secret, "LLM_ROUTER_API_TOKENS": "tok1,tok2"})
    assert secret not in repr(s)
    assert secret not in str(s.public_dict())
    assert s.api_tokens == ["tok1", "tok2"]
    assert "tok1" not in repr(s.secrets)


def test_model_options_match_patterns():
    """モデルの癖はパターンで引ける。"""
    s = load_settings(env_file=None, environ={})
    assert s.model_options("openai", "gpt-5-mini").max_tokens_param == "max_completion_tokens"
    assert s.model_options("openai", "gpt-4.1-mini").max_tokens_param is None
    assert s.model_options("anthropic", "claude-3-opus-20240229").retired


def test_compose_does_not_litter_the_working_directory(tmp_path, monkeypatch):
    """compose で outputs/ などを作らない。"""
    monkeypatch.chdir(tmp_path)
    load_settings(env_file=None, environ={})
    assert list(tmp_path.iterdir()) == []
