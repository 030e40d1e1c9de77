#!/usr/bin/env bash
# Runs the whole test suite. Installs redis-server and python3 first when
# they are missing and this machine can (root or sudo, Debian's apt).
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v python3 >/dev/null || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null && { [ "$(id -u)" = 0 ] || command -v sudo >/dev/null; }; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
    echo "installing ${missing[*]}" >&2
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: ${missing[*]} missing and cannot be installed here; tests that need them will be skipped loudly" >&2
  fi
fi
exec go test -race -count=1 -timeout 20m "$@" ./...
