"""複数のサーバープロセスで 1 組のスレッドを共有するための Redis の部品。

- :mod:`.connection`: 接続 (``LLM_ROUTER_REDIS_URL``)、キーの名前、Redis に届かないときの :class:`StoreUnavailable`。
- :mod:`.event_stream`: スレッドごとの Redis Stream のイベントログ (どのプロセスが書いても ``seq`` が連続)。
- :mod:`.threads`: スレッドの記録と履歴、持ち主ごとの一覧 (カーソルでのページ送り)、持ち主の検査。
- :mod:`.leases`: 実行中のランの貸与 (1 スレッドに 1 ラン)、更新係、持ち主を失ったランの検出。
- :mod:`.commands`: ランの持ち主のプロセスへのコマンド (``tool_result``、``cancel`` ...) とその返事。
- :mod:`.limits`: 主体ごとの共有カウンタと共有のレート制限。
- :mod:`.follower`: 他のプロセスのランのイベントをストリームから追って自分のソケットへ届ける。

重いものは import しない (``redis`` はこのパッケージのモジュールを import したときに読み込まれる)。
流れの図は README.md にある。
"""
