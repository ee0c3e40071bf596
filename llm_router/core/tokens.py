"""トークン数の概算 (プロバイダのトークナイザを使わない、安全側に倒した唯一の規則)。

規則 (docs/protocol.md「文脈の大きさ」と同じ):
- テキスト: ASCII の文字は 4 文字で 1 トークン (切り上げ)、ASCII 以外の文字 (日本語の仮名・漢字、絵文字など) は
  1 文字で 1 トークン。実際のトークナイザでは日本語は 1 文字あたり 1 トークン以下のことが多いので、
  日本語の多い会話では多めに見積もる (文脈からあふれるより、早めに古いターンを外す方を選ぶ)。
- メッセージ 1 つにつき 4 トークンの枠 (役割や区切りの分)。
- 画像 1 つは 1600 トークン (大きな画像にプロバイダが数える上限の目安。base64 の長さは数えない)。
- ツール呼び出しは名前と引数の JSON、ツール結果はモデルへ渡す文字列、推論はその文を数える。

RAG の埋め込みの使用量 (プロバイダが数を返さないとき) と、デモ・プロバイダの使用量も同じ関数で数える。
"""

from __future__ import annotations

import json
from typing import Any

from llm_router.core.schemas.common import ImagePart, Message, TextPart, ToolDefinition

ASCII_CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
IMAGE_TOKENS = 1600


def estimate_tokens(text: str) -> int:
    """文字列のトークン数の概算 (ASCII は 4 文字で 1、それ以外は 1 文字で 1)。"""
    if not text:
        return 0
    ascii_chars = len(text) if text.isascii() else len(text.encode("ascii", "ignore"))
    other = len(text) - ascii_chars
    return -(-ascii_chars // ASCII_CHARS_PER_TOKEN) + other


def estimate_message_tokens(message: Message) -> int:
    """メッセージ 1 つのトークン数の概算 (枠の分を含む)。"""
    total = MESSAGE_OVERHEAD_TOKENS
    if isinstance(message.content, str):
        total += estimate_tokens(message.content)
    else:
        for part in message.content:
            if isinstance(part, TextPart):
                total += estimate_tokens(part.text)
            elif isinstance(part, ImagePart):
                total += IMAGE_TOKENS
    for call in message.tool_calls:
        arguments = call.raw_arguments if call.raw_arguments is not None else _json(call.arguments)
        total += estimate_tokens(call.name) + estimate_tokens(arguments)
    if message.tool_result is not None:
        total += estimate_tokens(message.tool_result.as_text())
    for reasoning in message.reasoning:
        total += estimate_tokens(reasoning.text)
    return total


def estimate_tools_tokens(tools: list[ToolDefinition]) -> int:
    """ツール定義 (名前・説明・スキーマの JSON) のトークン数の概算。"""
    return sum(estimate_tokens(_json(tool.to_dict())) for tool in tools)


def _json(value: Any) -> str:
    """概算のための JSON 文字列 (日本語はそのまま)。"""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
