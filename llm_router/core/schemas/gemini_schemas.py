"""Gemini API (Generative Language API, REST ``v1beta``) のワイヤ上の形 (TypedDict)。

このモジュールの型は Gemini クライアントの外に出さない。フィールド名は REST の camelCase のまま。
参考: https://ai.google.dev/api/generate-content 、https://ai.google.dev/api/caching#Content 、
https://ai.google.dev/api/embeddings 。
"""

from __future__ import annotations

from typing import Any, Literal, TypedDict


class FunctionRef(TypedDict, total=False):
    """呼び出しと結果が共有する、どの関数のどの呼び出しか (``id`` は新しいモデルだけが付ける)。"""

    id: str
    name: str


class FunctionCall(FunctionRef, total=False):
    """モデルの関数呼び出し (``args`` は解析済みのオブジェクト)。"""

    args: dict[str, Any]


class FunctionResponse(FunctionRef, total=False):
    """関数の結果。``response`` はオブジェクトでなければならない (``{"output": 値}`` / ``{"error": 文言}``)。"""

    response: dict[str, Any]


class Part(TypedDict, total=False):
    """コンテンツの 1 パーツ。``thought`` は思考の要約、``thoughtSignature`` はそのまま送り返す不透明な署名。"""

    text: str
    thought: bool
    thoughtSignature: str
    functionCall: FunctionCall
    functionResponse: FunctionResponse
    inlineData: dict[str, str]  # {"mimeType", "data" (base64)}
    fileData: dict[str, str]  # {"mimeType", "fileUri"}


class Content(TypedDict):
    """1 つの番 (``user`` か ``model``)。"""

    role: Literal["user", "model"]
    parts: list[Part]


class SystemInstruction(TypedDict):
    """``systemInstruction`` (役割なしのパーツ列)。"""

    parts: list[Part]


class FunctionDeclaration(TypedDict, total=False):
    """関数の宣言。``parametersJsonSchema`` (JSON Schema) と ``parameters`` (OpenAPI サブセット) は排他。"""

    name: str
    description: str
    parameters: dict[str, Any]
    parametersJsonSchema: dict[str, Any]


class Tool(TypedDict):
    """``tools`` の 1 要素。"""

    functionDeclarations: list[FunctionDeclaration]


class FunctionCallingConfig(TypedDict, total=False):
    """関数呼び出しの方針。"""

    mode: Literal["AUTO", "ANY", "NONE", "VALIDATED"]
    allowedFunctionNames: list[str]


class ToolConfig(TypedDict):
    """ツールの設定 ``toolConfig``。"""

    functionCallingConfig: FunctionCallingConfig


class ThinkingConfig(TypedDict, total=False):
    """思考の設定 (2.5 系は ``thinkingBudget``、3 系は ``thinkingLevel``。併用は 400)。"""

    thinkingBudget: int
    thinkingLevel: str
    includeThoughts: bool


class GenerationConfig(TypedDict, total=False):
    """生成の設定 ``generationConfig``。"""

    temperature: float
    maxOutputTokens: int
    thinkingConfig: ThinkingConfig


class GenerateContentRequest(TypedDict, total=False):
    """``:generateContent`` / ``:streamGenerateContent`` の本文。"""

    contents: list[Content]
    systemInstruction: SystemInstruction
    tools: list[Tool]
    toolConfig: ToolConfig
    generationConfig: GenerationConfig


class UsageMetadata(TypedDict, total=False):
    """使用量 (ストリームではチャンクごとの累計値)。``totalTokenCount`` は思考の分も含む。"""

    promptTokenCount: int
    toolUsePromptTokenCount: int
    candidatesTokenCount: int
    thoughtsTokenCount: int
    totalTokenCount: int


class Candidate(TypedDict, total=False):
    """候補 (このクライアントは 1 つ目だけを使う)。"""

    content: Content
    finishReason: str
    index: int


class PromptFeedback(TypedDict, total=False):
    """プロンプト自体が止められたときの理由 (``candidates`` は無い)。"""

    blockReason: str


class GenerateContentResponse(TypedDict, total=False):
    """応答 (ストリームでは新しいパーツだけを持つ 1 チャンク)。"""

    candidates: list[Candidate]
    usageMetadata: UsageMetadata
    promptFeedback: PromptFeedback
    modelVersion: str
    responseId: str


class EmbedContentRequest(TypedDict, total=False):
    """``:batchEmbedContents`` の ``requests`` の 1 要素 (``model`` は ``models/M`` を毎回書く)。"""

    model: str
    content: SystemInstruction
    taskType: str
    outputDimensionality: int


class BatchEmbedContentsRequest(TypedDict):
    """``:batchEmbedContents`` の本文。"""

    requests: list[EmbedContentRequest]


class BatchEmbedContentsResponse(TypedDict, total=False):
    """``:batchEmbedContents`` の応答 (入力と同じ順)。"""

    embeddings: list[dict[str, list[float]]]
