"""RAG のデータ型: 文書、節、チャンク、検索結果、ストアの目録、取り込みの報告、エラー。"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from llm_router.core.schemas.errors import ConfigurationError, LLMRouterError

STORE_FORMAT_VERSION = 1


# ---------------------------------------------------------------- エラー


class RagError(LLMRouterError):
    """RAG の処理の失敗 (ストアの破損など)。"""


class EmbeddingModelMismatchError(ConfigurationError):
    """ストアを作った埋め込みモデル (または次元) と違うモデルで検索・取り込みしようとした。"""

    def __init__(self, store_model: str, store_dimension: int, requested: str, requested_dimension: int | None) -> None:
        """ストアのモデルと、要求されたモデルを受け取り、直し方を含む文言を作る。"""
        asked = requested if requested_dimension is None else f"{requested} ({requested_dimension} 次元)"
        super().__init__(
            f"the store was built with embedding model '{store_model}' ({store_dimension} dims), not '{requested}' "
            f"(このストアは埋め込みモデル '{store_model}' ({store_dimension} 次元) で作られています。"
            f"{asked} では検索・取り込みできません。rag.embedding_model={store_model} を指定するか、"
            f"別の rag.store_path に取り込み直してください)"
        )
        self.store_model = store_model
        self.store_dimension = store_dimension
        self.requested = requested


class LoadError(RagError):
    """ファイルを読めない・テキストを取り出せない (ファイル名は呼び手が報告する)。"""


# ---------------------------------------------------------------- 文書とチャンク


@dataclass
class Section:
    """文書の一部分 (Markdown / HTML の見出しの下、PDF の 1 ページ、テキストファイル全体)。

    Attributes:
        text: この部分のテキスト。
        heading_path: 見出しの階層 (例 ``("導入", "インストール")``)。
        page: PDF のページ番号 (1 始まり)。それ以外は ``None``。
        first_line: ``text`` の先頭がファイルの何行目か (1 始まり、行番号を持たない形式は ``None``)。
    """

    text: str
    heading_path: tuple[str, ...] = ()
    page: int | None = None
    first_line: int | None = None


@dataclass
class Document:
    """読み込んだ 1 ファイル。``source`` は解決済みの絶対パス、``file_hash`` は中身の SHA-256。"""

    source: str
    kind: str
    file_hash: str
    sections: list[Section] = field(default_factory=list)


@dataclass
class Chunk:
    """検索の単位となるテキストの断片。

    Attributes:
        source: 元ファイルの絶対パス。
        text: チャンクのテキスト (元の文書の連続した一部分)。
        location: 人が読む位置 (PDF は ``p. 3``、Markdown は見出しの階層、テキストは行範囲)。
        content_hash: ``text`` の SHA-256 (同じテキストの埋め込みは再利用する)。
        ordinal: ファイルの中での順番 (0 始まり)。
        page: PDF のページ番号。
        heading_path: 見出しの階層。
        start_line: 開始行 (分かるとき)。
        end_line: 終了行 (分かるとき)。
    """

    source: str
    text: str
    location: str
    content_hash: str
    ordinal: int = 0
    page: int | None = None
    heading_path: tuple[str, ...] = ()
    start_line: int | None = None
    end_line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON に保存する形。"""
        data = asdict(self)
        data["heading_path"] = list(self.heading_path)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Chunk:
        """:meth:`to_dict` の逆。"""
        return cls(**{**data, "heading_path": tuple(data.get("heading_path") or ())})


@dataclass
class Hit:
    """検索結果の 1 件。

    Attributes:
        chunk: 見つかったチャンク。
        score: 最終的な順位付けの値 (ハイブリッドなら RRF の値、ベクトルのみならコサイン類似度)。
        vector_score: コサイン類似度 (ベクトル検索の候補に入らなかったら ``None``)。
        lexical_score: BM25 の値 (語彙検索の候補に入らなかったら ``None``)。
    """

    chunk: Chunk
    score: float
    vector_score: float | None = None
    lexical_score: float | None = None


# ---------------------------------------------------------------- ストアの目録


@dataclass
class SourceRecord:
    """ストアに入っている 1 ファイルの記録 (差分取り込みの判定に使う)。

    Attributes:
        source: 絶対パス。
        file_hash: 取り込んだときのファイルの SHA-256。
        chunking: チャンク分割の設定 (``"800/100"``: 大きさ/重なり)。変われば分割し直す。
        chunks: チャンク数。
        kind: 形式 (``txt`` / ``md`` / ``html`` / ``pdf``)。
        ingested_at: 取り込んだ時刻 (UNIX 秒)。
    """

    source: str
    file_hash: str
    chunking: str
    chunks: int
    kind: str
    ingested_at: float


@dataclass
class StoreManifest:
    """ストアの目録: 埋め込みモデルと次元、件数、形式の版。"""

    model: str
    dimension: int
    count: int = 0
    format_version: int = STORE_FORMAT_VERSION
    lexical: bool = True
    semantic: bool = True
    updated_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON に保存する形。"""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StoreManifest:
        """:meth:`to_dict` の逆 (知らないキーは無視する)。"""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# ---------------------------------------------------------------- 取り込みの報告


@dataclass
class IngestReport:
    """取り込み 1 回の結果 (CLI の要約)。"""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    embedded_chunks: int = 0
    reused_chunks: int = 0
    tokens: int = 0
    tokens_estimated: bool = False
    model: str = ""
