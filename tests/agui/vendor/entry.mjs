// tests/agui/vendor/ag-ui-client.js の入口: @ag-ui/client の公開 API を window.AgUiClient に出す (build.sh が束ねる)
export * from "@ag-ui/client";
