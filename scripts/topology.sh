#!/usr/bin/env bash
# Runs the scaled topology of docker/compose.yaml as local processes, for
# machines without a Docker engine: a 3-node NATS cluster (embedded
# nats-server in `uims nats`, authentication on),
# Redis with a replica and three sentinels, two brokers, a processor and the
# web, e-mail and SMS gateways, each under a supervisor
# that restarts it when it exits. Ctrl-C stops everything.
#   scripts/topology.sh [data-dir]
# The data folder is the fabric's trust folder too: auth/ (operator and
# accounts), creds/<party>.creds and keys.json, written by the first
# `uims nats`; every other command finds them with --data (UIMS_DATA_DIR).
# Ports: NATS 11422 12422 13422 (routes 11622…), Redis 16379 (master) and
# 16380 (replica), sentinels 16381 16382 16383, web 8080,
# SMTP 12525, SMPP 12775.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-uims-topology}
mkdir -p "$dir"
rm -f "$dir"/*.log   # this run's logs only
go build -o "$dir/uims" .
U="$dir/uims"
# Ctrl-C or the end of the script stops the whole process group: every
# supervisor loop and what it runs.
trap 'trap - EXIT INT TERM; kill 0 2>/dev/null; wait' EXIT INT TERM
# start NAME COMMAND…: runs COMMAND under a supervisor, its output in
# $dir/NAME.log: whenever it exits, whatever the cause, it starts again a
# second later. Components wait for their dependencies (NATS, JetStream,
# the store) instead of exiting, so a restart is all a crash needs.
start() {
  local name=$1; shift
  touch "$dir/$name.log"
  (
    while :; do
      "$@" >>"$dir/$name.log" 2>&1 && code=0 || code=$?
      echo "topology: $name exited ($code); restarting in 1 s" >>"$dir/$name.log"
      sleep 1
    done
  ) &
}
# up NAME PATTERN COMMAND…: starts COMMAND (supervised) and waits until its
# log shows PATTERN, so that the roles start one at a time.
up() {
  local name=$1 pattern=$2 from s; shift 2
  from=1
  [ ! -f "$dir/$name.log" ] || from=$(($(wc -l <"$dir/$name.log") + 1))
  start "$name" "$@"
  for ((s = 0; s < 120; s++)); do
    grep -q "$pattern" < <(tail -n +"$from" "$dir/$name.log") && return 0
    sleep 1
  done
  echo "topology: $name did not start in 120 s: $(tail -n +"$from" "$dir/$name.log" | tail -1)" >&2
  exit 1
}
# waitfor SECONDS DESCRIPTION COMMAND…: retries COMMAND every second.
waitfor() {
  local n=$1 what=$2 i; shift 2
  for ((i = 0; i < n; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "topology: $what not ready after ${n}s; logs in $dir/" >&2
  exit 1
}

export UIMS_DATA_DIR="$dir"   # keys.json and creds/ of every command below
unset UIMS_KEYS UIMS_NATS_CREDS UIMS_OBSERVER_CREDS
export UIMS_NATS_URL=nats://127.0.0.1:11422,nats://127.0.0.1:12422,nats://127.0.0.1:13422
# Redis: a master, a replica and three sentinels; the brokers follow the
# master through Sentinel (and wait for the replica on every write).
export UIMS_REDIS_URL=redis-sentinel://127.0.0.1:16381,127.0.0.1:16382,127.0.0.1:16383/mymaster

# The cluster: nats1 provisions the trust folder (keys.json, auth/, creds/)
# alone, then the others start on the same --fabric.
start_nats() {
  local i=$1 routes
  routes=$(for j in 1 2 3; do [ $j = $i ] || printf 'nats://127.0.0.1:1%d622,' $j; done)
  start nats$i "$U" nats --addr 127.0.0.1:1${i}422 --cluster 127.0.0.1:1${i}622 --routes "${routes%,}" \
    --name nats$i --fabric "$dir" --data "$dir/nats$i"
}
start_nats 1   # alone first: it writes the trust folder
waitfor 30 "trust folder" grep -q "anonymous connections are refused" "$dir/nats1.log"
start_nats 2
start_nats 3
redis_args=(--bind 127.0.0.1 --appendonly yes --appendfsync always --maxmemory-policy noeviction)
mkdir -p "$dir/redis1" "$dir/redis2"
start redis1 redis-server --port 16379 --dir "$dir/redis1" "${redis_args[@]}"
waitfor 30 redis-server redis-cli -p 16379 ping
start redis2 redis-server --port 16380 --dir "$dir/redis2" "${redis_args[@]}" --replicaof 127.0.0.1 16379
for i in 1 2 3; do
  conf="$dir/sentinel$i.conf"
  # a sentinel rewrites its file: write it once, keep what it learnt
  [ -f "$conf" ] || printf 'port 1638%d\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 16379 2\nsentinel down-after-milliseconds mymaster 2000\nsentinel failover-timeout mymaster 10000\n' \
    "$i" "$dir" >"$conf"
  start sentinel$i redis-server "$conf" --sentinel
done
waitfor 30 "Redis Sentinel" redis-cli -p 16381 sentinel get-master-addr-by-name mymaster
"$U" profile put scripts/profiles.yaml --redis redis://127.0.0.1:16379/0   # before the brokers: straight into the master
# The brokers need JetStream (their epoch marker): in a fresh cluster it
# answers once the members elected a meta leader and the key registry is
# published.
waitfor 60 "JetStream (key registry)" grep -q "key registry published" "$dir/"nats?.log
# One at a time: each creates its streams before the next starts.
up broker1 "broker serving" "$U" broker --instance broker1
up broker2 "broker serving" "$U" broker --instance broker2
up processor "processor serving" "$U" processor
up web "gateway serving" "$U" gateway web --http 127.0.0.1:8080
up email "gateway serving" "$U" gateway email --smtp 127.0.0.1:12525
up sms "gateway serving" "$U" gateway sms --smpp 127.0.0.1:12775
waitfor 30 "brokers (uims profile list as admin)" "$U" profile list
echo "topology up: web http://127.0.0.1:8080, SMTP 127.0.0.1:12525, SMPP 127.0.0.1:12775,"
echo "  NATS $UIMS_NATS_URL (credentials in $dir/creds), Redis $UIMS_REDIS_URL; logs in $dir/"
echo "  try: $U send --data $dir --nats nats://127.0.0.1:11422 --from alice --to bob hello"
wait
