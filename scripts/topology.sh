#!/usr/bin/env bash
# Runs the scaled topology of docker/compose.yaml as local processes, for
# machines without a Docker engine: a 3-node NATS cluster (embedded
# nats-server in `uims nats`), redis-server, two brokers, a processor and the
# web gateway. Ctrl-C stops everything.
#   scripts/topology.sh [data-dir]
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-uims-topology}
mkdir -p "$dir"
go build -o "$dir/uims" .
U="$dir/uims"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait' EXIT INT TERM
start() { "$@" >"$dir/$(echo "$*" | tr ' /' '__' | cut -c1-60).log" 2>&1 & pids+=($!); }

export UIMS_KEYS="$dir/keys.json"
"$U" keys generate
for i in 1 2 3; do
  routes=$(for j in 1 2 3; do [ $j = $i ] || printf 'nats://127.0.0.1:1%d622,' $j; done)
  start "$U" nats --addr 127.0.0.1:1${i}422 --cluster 127.0.0.1:1${i}622 --routes "${routes%,}" --name nats$i --data "$dir/nats$i"
done
start redis-server --port 16379 --bind 127.0.0.1 --dir "$dir" --appendonly yes --appendfsync always --maxmemory-policy noeviction
sleep 2
export UIMS_NATS_URL=nats://127.0.0.1:11422,nats://127.0.0.1:12422,nats://127.0.0.1:13422
export UIMS_REDIS_URL=redis://127.0.0.1:16379/0
"$U" profile put scripts/profiles.yaml --redis "$UIMS_REDIS_URL"   # before the brokers: straight into the store
start "$U" broker --instance broker1
start "$U" broker --instance broker2
start "$U" processor
start "$U" gateway web --http 127.0.0.1:8080
echo "topology up: web http://127.0.0.1:8080, NATS $UIMS_NATS_URL, Redis $UIMS_REDIS_URL; logs in $dir/"
wait
