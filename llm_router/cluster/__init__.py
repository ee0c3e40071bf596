"""複数のサーバープロセスで 1 組のスレッドを共有するための Redis の部品。

- :mod:`.connection`: 接続 (``LLM_ROUTER_REDIS_URL``)、キーの名前、Redis に届かないときの :class:`StoreUnavailable`。
- :mod:`.open_threads`: 主体ごとの使用中のスレッドの数 (全プロセスで ``server.max_threads_per_principal``)。
- :mod:`.leases`: 実行中のランのリースの読み手 (コマンドの宛先の持ち主を引く。リースを書くのはストア)。
- :mod:`.commands`: ランの持ち主のプロセスへのコマンド (``tool_result``、``cancel`` ...) とその返事。
- :mod:`.limits`: 共有のレート制限と、主体の同時ラン数の枠。
- :mod:`.follower`: 他のプロセスのランのイベントをストリームから追って自分のソケットへ届ける。

スレッド・履歴・イベントログはストア (``llm_router.store.redis.RedisStore``) が持つ。
重いものは import しない (``redis`` はこのパッケージのモジュールを import したときに読み込まれる)。
流れの図は README.md にある。
"""
