"""RAG のコマンドライン: ``uv run python -m llm_router.rag ingest|search|list|remove``。

``key=value`` の形の引数は Hydra のオーバーライド (例 ``rag.store_path=data/docs rag.top_k=3``)。
``--`` より後ろの引数はオーバーライドとみなさない (``=`` を含む検索語のため)。

終了コード: 0 成功、1 一部のファイルが失敗 / 消す対象が無い、2 設定・使い方の誤り (モデルの不一致など)。
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

OVERRIDE = re.compile(r"^[+~]{0,2}[A-Za-z_][\w.\-/]*=")


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """引数を (通常の引数, Hydra のオーバーライド) に分ける。``--`` の後ろは常に通常の引数。"""
    args: list[str] = []
    overrides: list[str] = []
    rest = False
    for arg in argv:
        if rest:
            args.append(arg)
        elif arg == "--":
            rest = True
            args.append(arg)
        elif OVERRIDE.match(arg):
            overrides.append(arg)
        else:
            args.append(arg)
    return args, overrides


def build_parser() -> argparse.ArgumentParser:
    """サブコマンドの定義。"""
    parser = argparse.ArgumentParser(
        prog="python -m llm_router.rag",
        description="文書を取り込み、検索する (RAG)。key=value の引数は Hydra のオーバーライド。",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ingest = sub.add_parser("ingest", help="ファイルやフォルダを取り込む (.txt .md .html .pdf)")
    ingest.add_argument("paths", nargs="+", help="ファイルまたはフォルダ")
    ingest.add_argument("--quiet", action="store_true", help="進捗バーを出さない")
    ingest.add_argument(
        "--prune", action="store_true", help="指定したフォルダの下で、ディスクから消えたファイルをストアからも消す"
    )
    search = sub.add_parser("search", help="取り込んだ文書を検索する")
    search.add_argument("query", help="検索語")
    search.add_argument("-k", "--top-k", type=int, default=None, help="件数 (既定は rag.top_k)")
    search.add_argument("--json", action="store_true", help="JSON で出力する")
    listing = sub.add_parser("list", help="取り込んだファイルの一覧")
    listing.add_argument("--json", action="store_true", help="JSON で出力する")
    remove = sub.add_parser("remove", help="ファイル (またはフォルダの下) のチャンクを消す")
    remove.add_argument("sources", nargs="+", help="取り込んだときのパス (相対パスは作業フォルダから)")
    return parser


def _settings(overrides: list[str]) -> Any:
    """設定を組み立てる (.env はアプリと同じく ``LLM_ROUTER_ENV_FILE`` か作業フォルダの ``.env``)。"""
    from llm_router.config.settings import load_settings

    return load_settings(overrides, env_file=os.environ.get("LLM_ROUTER_ENV_FILE") or ".env")


def _tokens(report: Any) -> str:
    """要約のトークン数 (推定なら印をつける)。"""
    mark = " (推定)" if report.tokens_estimated else ""
    return f"{report.tokens:,}{mark}"


def summary_line(report: Any) -> str:
    """取り込みの要約の 1 行 (追加 / 更新 / 変更なし / 失敗 / 削除、チャンク、トークン)。"""
    files = [
        f"追加 {len(report.added)}",
        f"更新 {len(report.updated)}",
        f"変更なし {len(report.unchanged)}",
        f"失敗 {len(report.failed)}",
    ]
    if report.removed:
        files.append(f"削除 {len(report.removed)}")
    return (
        f"取り込み完了 ({report.model}): {' / '.join(files)} ファイル, "
        f"チャンク {report.chunks} (新たに埋め込み {report.embedded_chunks}, 再利用 {report.reused_chunks}), "
        f"埋め込みトークン {_tokens(report)}"
    )


def cmd_ingest(settings: Any, args: argparse.Namespace) -> int:
    """``ingest``: 取り込み、要約を出す。"""
    from llm_router.rag.embedding import HASHING_SPEC, LEXICAL_NOTICE
    from llm_router.rag.ingest import ingest
    from llm_router.rag.progress import ProgressBar
    from llm_router.rag.search import display_source

    bar = ProgressBar(sys.stderr, enabled=not args.quiet)
    try:
        report = ingest(settings, args.paths, progress=bar, prune=args.prune)
    finally:
        bar.finish()
    if report.model == HASHING_SPEC:
        print(f"注意: {LEXICAL_NOTICE}", file=sys.stderr)
    for source, reason in report.failed:
        print(f"失敗: {display_source(source)}: {reason}", file=sys.stderr)
    print(summary_line(report))
    return 1 if report.failed else 0


def cmd_search(settings: Any, args: argparse.Namespace) -> int:
    """``search``: 検索して結果を出す。"""
    from llm_router.rag.search import DocumentSearch, hit_to_dict

    outcome = DocumentSearch(settings).search(args.query, args.top_k)
    results = [hit_to_dict(hit) for hit in outcome.hits]
    if args.json:
        print(json.dumps({"model": outcome.model, "notices": outcome.notices, "results": results}, ensure_ascii=False))
        return 0
    for notice in outcome.notices:
        print(f"注意: {notice}", file=sys.stderr)
    for rank, item in enumerate(results, start=1):
        where = f" ({item['location']})" if item["location"] else ""
        print(f"{rank}. [{item['score']:.4f}] {item['source']}{where}")
        text = " ".join(item["text"].split())
        print(f"   {text[:300]}{'…' if len(text) > 300 else ''}")
    return 0


def cmd_list(settings: Any, args: argparse.Namespace) -> int:
    """``list``: ストアの目録と取り込んだファイルの一覧。"""
    from llm_router.rag.ingest import store_root
    from llm_router.rag.search import display_source
    from llm_router.rag.store import VectorStore

    root = store_root(settings)
    store = VectorStore.load(root)
    if store is None:
        print(f"ストア {root} はまだありません (no documents have been ingested)")
        return 0
    records = sorted(store.sources.values(), key=lambda r: r.source)
    if args.json:
        payload = {"store": str(root), "manifest": store.manifest.to_dict(), "sources": [vars(r) for r in records]}
        print(json.dumps(payload, ensure_ascii=False))
        return 0
    kind = "意味" if store.manifest.semantic else "語彙 (lexical)"
    print(
        f"ストア {root}: モデル {store.manifest.model} ({store.manifest.dimension} 次元, {kind}), "
        f"{len(records)} ファイル, {store.count} チャンク"
    )
    for record in records:
        print(f"  {record.chunks:6d}  {record.kind:4s}  {display_source(record.source)}")
    return 0


def cmd_remove(settings: Any, args: argparse.Namespace) -> int:
    """``remove``: ファイルのチャンクを消す。"""
    from llm_router.rag.ingest import remove_sources
    from llm_router.rag.search import display_source

    removed = remove_sources(settings, args.sources)
    for source in removed:
        print(f"削除: {display_source(source)}")
    if not removed:
        wanted = ", ".join(str(Path(s).expanduser().resolve()) for s in args.sources)
        print(f"ストアに該当するファイルがありません: {wanted}", file=sys.stderr)
        return 1
    return 0


COMMANDS = {"ingest": cmd_ingest, "search": cmd_search, "list": cmd_list, "remove": cmd_remove}


def main(argv: Sequence[str] | None = None) -> int:
    """コマンドラインの入口。終了コードを返す。"""
    from llm_router.core.schemas.errors import ConfigurationError, LLMRouterError

    args_list, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_args(args_list)
    # pypdf は壊れた PDF で警告をログに出す: 理由は取り込みの要約に 1 行で出すので、ここでは黙らせる
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        settings = _settings(overrides)
    except Exception as exc:
        # Hydra / OmegaConf の誤り (未知のキー、型の違い) は利用者の設定の問題
        print(f"設定の誤り: {exc}", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](settings, args)
    except ConfigurationError as exc:
        print(f"エラー: {exc}", file=sys.stderr)
        return 2
    except LLMRouterError as exc:
        print(f"エラー: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("中断しました (ストアは変更されていません)", file=sys.stderr)
        return 130
