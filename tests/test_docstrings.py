"""プロジェクトの規約テスト: app.py・llm_router/・tools/ のすべての関数とクラスに日本語の docstring があること。"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")


def _python_files() -> list[Path]:
    """検査対象のファイル一覧。"""
    files = [ROOT / "app.py"] if (ROOT / "app.py").exists() else []
    for folder in ("llm_router", "tools"):
        files.extend(sorted((ROOT / folder).rglob("*.py")))
    return files


def test_every_module_function_and_class_has_a_japanese_docstring():
    """docstring が無い、または日本語を含まないものを一覧にして失敗させる。"""
    missing = []
    for path in _python_files():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = [
            tree,
            *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)),
        ]
        for node in nodes:
            doc = ast.get_docstring(node)
            if not doc or not JAPANESE.search(doc):
                name = getattr(node, "name", "<module>")
                missing.append(f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 1)} {name}")
    assert not missing, "Japanese docstring missing:\n" + "\n".join(missing)


def test_the_check_itself_catches_a_missing_docstring(tmp_path):
    """検査が本当に失敗しうること (英語だけの docstring を見逃さない)。"""
    tree = ast.parse('def f():\n    """English only."""\n')
    node = tree.body[0]
    assert not JAPANESE.search(ast.get_docstring(node) or "")
