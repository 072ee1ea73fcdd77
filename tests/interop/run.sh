#!/usr/bin/env bash
# Runs the interop suite against herald's echo example: builds it once, then
# runs the Go clients (gorilla/websocket, coder/websocket) and the node tests (ws, and Chromium through playwright-core; the
# browser tests also load the ticker, chat and notify examples' pages, built
# here too, and the ticker's page on two nodes of its cluster build sharing
# a port and a nats-server with JetStream). The Go tests and the echo's node tests run against both of the
# echo's paths: its own listener, and mounted on net/http (-mount).
# Run setup.sh first on a new machine.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

if [ ! -d "$here/node/node_modules" ]; then
	echo "run.sh: node packages missing; run $here/setup.sh first" >&2
	exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

(cd "$root" && go build -o "$tmp/echo" ./examples/echo)
export HERALD_ECHO_BIN="$tmp/echo"
(cd "$root" && go build -o "$tmp/ticker" ./examples/ticker && go build -o "$tmp/chat" ./examples/chat)
# The notify example is a module of its own (its /metrics imports prom).
(cd "$root/examples/notify" && go build -o "$tmp/notify" .)
export HERALD_TICKER_BIN="$tmp/ticker" HERALD_CHAT_BIN="$tmp/chat" HERALD_NOTIFY_BIN="$tmp/notify"
# The ticker's cluster build and the broker its resume test runs on (with
# JetStream), from the nats module: the version its go.mod pins.
(cd "$root/nats" && go build -o "$tmp/ticker-nats" ./cmd/ticker && go build -o "$tmp/nats-server" github.com/nats-io/nats-server/v2)
export HERALD_TICKER_NATS_BIN="$tmp/ticker-nats" HERALD_NATS_SERVER_BIN="$tmp/nats-server"

status=0
echo "== interop: Go clients"
# Without the race detector: no herald code runs in the test process (the
# echo is another process), only the clients' libraries and the test's own
# code, and under it their masking and compressing of messages up to
# 16 MiB was most of this script's CPU.
(cd "$here" && go test -count=1 -timeout 5m ./...) || status=1
echo "== interop: node (ws, chromium)"
(cd "$here/node" && node --test --test-concurrency=1 test/) || status=1
echo "== interop: node (ws, chromium) against the echo mounted on net/http"
(cd "$here/node" && HERALD_ECHO_MOUNT=1 node --test --test-concurrency=1 test/ws.test.mjs test/chromium.test.mjs) || status=1
exit "$status"
