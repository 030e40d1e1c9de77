#!/bin/sh
# `make loadhttp` (docs/BENCHMARKS.md, "From outside (HTTP)"): starts
# `uims run` in the background with a temporary data folder, free ports and
# the profiles of scripts/profiles.yaml (alice-token, bob-token; no daily
# quota), waits until its web API answers, drives it with `uims bench http`
# (the uims row, its delivery check and the trivial server's row), and
# stops it. Settings: BIN (bin/uims), DURATION (10s), CLIENTS (64),
# SIZE (100), TOKENS (alice-token:bob), OUT (bin/loadhttp); extra
# arguments go to `uims bench http`. With redis-server on PATH it runs one
# on a free port for `uims run` (UIMS_REDIS_URL), as a deployment would;
# without, the embedded in-memory store (slower: its Lua runs in Go), and
# says so. REDIS=embedded forces the embedded one.
set -eu
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/uims}
data=$(mktemp -d "${TMPDIR:-/tmp}/uims-loadhttp.XXXXXX")
log="$data/run.log"
pid=""
rpid=""
stop() {
	if [ -n "$pid" ]; then
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	fi
	if [ -n "$rpid" ]; then
		kill "$rpid" 2>/dev/null || true
		wait "$rpid" 2>/dev/null || true
	fi
	rm -rf "$data"
}
trap stop EXIT
trap 'exit 130' INT TERM

redis_url=""
if [ "${REDIS:-}" != embedded ] && command -v redis-server >/dev/null 2>&1; then
	rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
	redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$data" >"$data/redis.log" 2>&1 &
	rpid=$!
	redis_url="redis://127.0.0.1:$rport/0"
	echo "redis-server (pid $rpid) at $redis_url"
else
	echo "no redis-server: the embedded in-memory store (its Lua runs in Go: slower)"
fi

UIMS_DATA_DIR="$data" UIMS_PROFILES=scripts/profiles.yaml UIMS_REDIS_URL="$redis_url" \
	UIMS_HTTP_ADDR=127.0.0.1:0 UIMS_NATS_ADDR=127.0.0.1:0 UIMS_OPS_ADDR=127.0.0.1:0 \
	UIMS_SMTP_ADDR=off UIMS_SMPP_ADDR=off UIMS_SIP_ADDR=off UIMS_LOG_LEVEL=warn \
	"$BIN" run >"$log" 2>&1 &
pid=$!

# `uims run` prints "web page and API   http://127.0.0.1:PORT" once ready.
url=""
i=0
while [ -z "$url" ]; do
	if ! kill -0 "$pid" 2>/dev/null; then
		echo "uims run stopped:" >&2
		cat "$log" >&2
		exit 1
	fi
	i=$((i + 1))
	if [ "$i" -gt 600 ]; then
		echo "uims run not ready after 60 s:" >&2
		cat "$log" >&2
		exit 1
	fi
	sleep 0.1
	url=$(sed -n 's/^ *web page and API *\(http[^ ]*\).*/\1/p' "$log" | head -n 1)
done
echo "uims run (pid $pid) at $url, data in $data"

"$BIN" bench http --url "$url" --server-pid "$pid" \
	--clients "${CLIENTS:-64}" --duration "${DURATION:-10s}" --size "${SIZE:-100}" \
	--tokens "${TOKENS:-alice-token:bob}" --out "${OUT:-bin/loadhttp}" "$@"
