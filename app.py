"""llm_router のエントリポイント: 非同期モードのモンキーパッチ → Hydra で設定 → Flask + Socket.IO を起動。

起動: ``uv run python app.py [Hydra のオーバーライド]``
例: ``uv run python app.py server.port=8080 agent.model=ollama/llama3.2``

モンキーパッチは他のどの import よりも先に行う (requests/urllib3/ssl をパッチ前に読み込むと
eventlet の下で ssl が壊れるため)。非同期モードは設定 ``server.async_mode`` だが、Hydra を
組み立てる前に決める必要があるので、コマンドラインのオーバーライドか YAML の既定値を先に覗く。
"""

import sys


def _early_async_mode(argv: list[str]) -> str:
    """コマンドラインか YAML から ``server.async_mode`` を (重い import なしで) 読む。"""
    for arg in argv:
        if arg.lstrip("+").startswith("server.async_mode="):
            return arg.split("=", 1)[1].strip()
    import os

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llm_router/config/hydra_conf/server/default.yaml")
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("async_mode:"):
                    return line.split(":", 1)[1].split("#", 1)[0].strip()
    except OSError:
        pass
    return "eventlet"


ASYNC_MODE = _early_async_mode(sys.argv[1:])
if ASYNC_MODE == "eventlet":
    import warnings

    # eventlet は保守モードで、import 時に非推奨の警告を出す (docs/design.md 1 章: 既定のまま、選べるようにする)
    warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
    import eventlet

    eventlet.monkey_patch()
elif ASYNC_MODE == "gevent":
    from gevent import monkey

    monkey.patch_all()

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from llm_router.config.hydra_registration import register_configs  # noqa: E402
from llm_router.config.settings import settings_from_config  # noqa: E402

register_configs()


@hydra.main(config_path="llm_router/config/hydra_conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    """設定を組み立て、サーバーを起動する。"""
    import os

    from llm_router.server import serve

    # テストのハーネスは開発者の .env を読ませないよう、別の .env ファイルをこの変数で指す
    settings = settings_from_config(cfg, env_file=os.environ.get("LLM_ROUTER_ENV_FILE") or ".env")
    if settings.config.server.async_mode != ASYNC_MODE:
        raise SystemExit(
            f"server.async_mode={settings.config.server.async_mode} does not match the mode patched at start "
            f"({ASYNC_MODE}); pass it on the command line"
        )
    serve(settings)


if __name__ == "__main__":
    main()
