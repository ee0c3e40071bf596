"""層の規則のテスト: 全モジュールの import を ast で読み、上向き・横向きの矢印が無いことを確かめる。

- core は Hydra / omegaconf、RAG、エージェント、リアルタイム層、設定の Hydra 側を読み込まない。
- config は core を読み込まない (エラーの木は ``llm_router.errors`` にある)。
- クライアントの共通インターフェースは、型のためだけに requests や Hydra を読み込まない。
- OpenAI のクライアントを読み込んでも Hydra、omegaconf、numpy、RAG は読み込まれない (新しいプロセスで確かめる)。
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "llm_router"

CORE_FORBIDDEN = (
    "hydra",
    "omegaconf",
    "llm_router.rag",
    "llm_router.agent",
    "llm_router.realtime",
    "llm_router.config.hydra_registration",
)


def module_name(path: Path) -> str:
    """ファイルのパスからモジュール名 (``llm_router.core.router`` など) を作る。"""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    """1 つのファイルが読み込むモジュール名の集合 (関数の中、TYPE_CHECKING の中、相対 import も含む)。"""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            # from pkg import sub はサブモジュールの import でもありうるので、両方を数える
            found.update(f"{prefix}.{alias.name}" for alias in node.names)
    return found


def modules_under(folder: str) -> list[Path]:
    """``llm_router/<folder>`` の下のすべての .py ファイル。"""
    return sorted((PACKAGE / folder).rglob("*.py"))


def violations(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    """``forbidden`` (またはその下のモジュール) を読み込んでいる箇所の一覧。"""
    out = []
    for path in paths:
        for name in sorted(imported_modules(path)):
            if any(name == bad or name.startswith(bad + ".") for bad in forbidden):
                out.append(f"{path.relative_to(ROOT)} imports {name}")
    return out


def test_the_import_parser_sees_every_kind_of_import(tmp_path, monkeypatch):
    """ast の読み取りが、関数の中・相対・from の import を見落とさない (規則のテストが空振りしないため)。"""
    package = tmp_path / "llm_router" / "core"
    package.mkdir(parents=True)
    source = package / "probe.py"
    source.write_text(
        "import hydra\nfrom ..rag import store\n\ndef f():\n    from omegaconf import OmegaConf\n", encoding="utf-8"
    )
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    assert {"hydra", "llm_router.rag", "llm_router.rag.store", "omegaconf"} <= imported_modules(source)
    assert len(violations([source], CORE_FORBIDDEN)) == 5


def test_core_imports_no_hydra_rag_agent_or_realtime():
    """core のどのモジュールも Hydra / omegaconf / RAG / エージェント / リアルタイム層 / 設定の Hydra 側を読まない。"""
    paths = modules_under("core")
    assert len(paths) > 20
    assert violations(paths, CORE_FORBIDDEN) == []


def test_config_imports_no_core():
    """config は core を読み込まない (config → core → config の循環が無い)。"""
    paths = modules_under("config")
    assert paths
    assert violations(paths, ("llm_router.core",)) == []


def test_config_schema_imports_no_hydra():
    """設定の型のモジュールは Hydra も omegaconf も読まない (登録は hydra_registration だけ)。"""
    schema = PACKAGE / "config" / "schema.py"
    assert violations([schema], ("hydra", "omegaconf")) == []
    assert violations([PACKAGE / "config" / "hydra_registration.py"], ("hydra",)) != []


def test_client_interface_imports_no_http_or_hydra():
    """クライアントの共通インターフェースは、型のためだけに requests / urllib3 / Hydra を読まない。"""
    interface = PACKAGE / "core" / "clients" / "interface.py"
    forbidden = ("requests", "urllib3", "hydra", "omegaconf", "llm_router.core.clients.base_client")
    assert violations([interface], forbidden) == []


@pytest.mark.parametrize(
    ("module", "absent"),
    [
        ("llm_router.core.clients.openai_client", ("hydra", "omegaconf", "numpy", "llm_router.rag")),
        ("llm_router.core.clients.demo_client", ("hydra", "omegaconf", "llm_router.rag")),
        ("llm_router.core.clients.interface", ("hydra", "omegaconf", "requests", "llm_router.rag")),
        ("llm_router.config.settings", ("hydra", "omegaconf", "llm_router.core")),
    ],
)
def test_importing_a_module_in_a_fresh_process_loads_nothing_above_it(module, absent):
    """新しいプロセスで読み込んだとき、sys.modules に上の層や重い依存が入らない。"""
    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    loaded = set(json.loads(result.stdout))
    assert module in loaded
    leaked = sorted(name for name in loaded if any(name == bad or name.startswith(bad + ".") for bad in absent))
    assert leaked == []
