#!/bin/sh
# tests/agui/vendor/ag-ui-client.js を作り直す: npm レジストリの @ag-ui/client を一時フォルダに入れ、
# esbuild で 1 つの IIFE (window.AgUiClient) に束ねる。CI はこのファイルを使うだけで npm を要らない。
# 使い方: sh tests/agui/vendor/build.sh   (版を変えるときは下の 2 つの変数と README.md を直す)
set -eu
AGUI_CLIENT_VERSION=1.0.0
ESBUILD_VERSION=0.28.2
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
npm init -y >/dev/null
npm install --no-audit --no-fund "@ag-ui/client@$AGUI_CLIENT_VERSION" "esbuild@$ESBUILD_VERSION" >/dev/null
cp "$HERE/entry.mjs" .
./node_modules/.bin/esbuild entry.mjs --bundle --format=iife --global-name=AgUiClient --platform=browser \
  --target=es2020 --minify --legal-comments=eof \
  --banner:js="/* @ag-ui/client@$AGUI_CLIENT_VERSION (MIT), bundled for the tests by tests/agui/vendor/build.sh */" \
  --outfile="$HERE/ag-ui-client.js"
npm ls --all 2>/dev/null | grep -v "UNMET OPTIONAL" > "$HERE/npm-ls.txt" || true
echo "built $HERE/ag-ui-client.js from @ag-ui/client@$AGUI_CLIENT_VERSION"
