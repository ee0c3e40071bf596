"""ログの設定: 秘密情報 (API キー、接続トークン) をすべてのログ行から伏せるフィルタ付き。"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from llm_router.core.redaction import redact, secret_list


class SecretRedactingFilter(logging.Filter):
    """ログレコードのメッセージと引数から秘密の値を ``***`` に置き換えるフィルタ。"""

    def __init__(self, secrets: Iterable[str]) -> None:
        """伏せる値 (短すぎる値は誤検出を避けて除く) を受け取る。"""
        super().__init__()
        self._secrets = secret_list(secrets)

    def _redact(self, text: str) -> str:
        """文字列中の秘密の値を伏せる (:func:`llm_router.core.redaction.redact`)。"""
        return redact(text, self._secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        """レコードを書き換えて通す (落とさない)。"""
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = self._redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self._redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if redacted != message or record.args:
            record.msg, record.args = redacted, ()
        return True


def configure_logging(level: str, secrets: Iterable[str]) -> None:
    """ルートロガーを設定し、全ハンドラに伏せ字フィルタを付ける。"""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level.upper())
    flt = SecretRedactingFilter(secrets)
    for handler in root.handlers:
        for old in [f for f in handler.filters if isinstance(f, SecretRedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(flt)
