"""Redis の部品 (llm_router/cluster) のテスト。本物の redis-server をテストが自分で起動する。"""
