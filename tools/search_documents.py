"""サーバー側ツール ``search_documents``: 取り込んだ文書 (RAG のストア) を検索し、引用できる形で返す。

ツールの登録簿 (:mod:`tools.registry`) が ``build_tool(settings)`` を呼んで関数を受け取り、型ヒントと
docstring からスキーマを作る。ストアは最初の呼び出しで開き、CLI の取り込みで書き換わったら読み直す
(サーバーを再起動しなくてよい)。ストアが無い・空のときは例外ではなく「まだ文書が取り込まれていない」
という結果を返し、モデルがそれを利用者に伝えられるようにする。
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llm_router.config.settings import Settings


def search_payload(search: Any, query: str, top_k: int, max_top_k: int) -> dict[str, Any]:
    """検索してツールの結果 (JSON にできる dict) を作る。

    Args:
        search: :class:`llm_router.rag.search.DocumentSearch`。
        query: 検索語。
        top_k: 件数 (1 以上 ``max_top_k`` 以下に丸める)。
        max_top_k: 件数の上限 (``rag.max_top_k``)。
    """
    from llm_router.rag.search import hit_to_dict

    query = (query or "").strip()
    if not query:
        return {"results": [], "message": "query is empty (検索語が空です)"}
    k = max(1, min(int(top_k), max_top_k))
    outcome = search.search(query, k)
    payload: dict[str, Any] = {"query": query, "results": [hit_to_dict(hit) for hit in outcome.hits]}
    if outcome.empty_store:
        payload["message"] = outcome.notices[0]
    else:
        payload["embedding_model"] = outcome.model
        if outcome.notices:
            payload["notices"] = outcome.notices
        if not outcome.hits:
            payload["message"] = "no matching passages (該当する文書が見つかりません)"
    return payload


def build_tool(settings: Settings) -> Callable[..., dict[str, Any]]:
    """設定 (``rag``) を閉じ込めた ``search_documents`` 関数を作る。"""
    from llm_router.rag.search import DocumentSearch

    search = DocumentSearch(settings)
    config = settings.config.rag
    default_k = config.top_k

    def search_documents(query: str, top_k: int = default_k) -> dict[str, Any]:
        """取り込まれた文書 (日本語・英語の .txt / .md / .html / .pdf) から、問いに関係する箇所を探す。

        結果の各件には出典 (source)、位置 (location: ページや見出し)、スコア (score)、本文 (text) がある。
        答えるときは出典と位置を引用すること。文書が取り込まれていなければ、その旨の message を返す。

        Args:
            query: 検索する内容 (キーワードや質問文。型番や固有名詞はそのまま入れる)。
            top_k: 返す件数。
        """
        return search_payload(search, query, top_k, config.max_top_k)

    return search_documents
