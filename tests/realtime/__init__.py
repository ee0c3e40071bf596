"""リアルタイム層 (Socket.IO) のテスト: 本物のサーバープロセスと本物の python-socketio クライアントで確かめる。"""
