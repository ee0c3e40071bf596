"""RAG (取り込み、チャンク分割、埋め込み、ストア、検索、CLI、search_documents) のテスト。"""
