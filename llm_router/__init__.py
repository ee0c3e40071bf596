"""llm_router: リアルタイム・エージェントサーバーのパッケージ。

重いモジュールはここでは読み込まない (``import llm_router`` を軽く保つため)。
"""

__all__: list[str] = []
