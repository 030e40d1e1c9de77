#!/bin/sh
# The full benchmark run behind docs/BENCHMARKS.md: every flow, content
# size, MIAP mode and sender count, with the references measured beside
# the real flow. Results, the plot and the CPU profiles go to docs/bench/
# (override with --out). Extra flags go to `uims bench`; see
# `uims bench -h`. The machine is shared: each cell waits (up to a minute)
# for other processes to leave the CPUs, and every cell records the load
# they caused anyway.
set -eu
cd "$(dirname "$0")/.."
go build -o bin/uims .
exec ./bin/uims bench --out docs/bench --wait-idle 60s "$@"
