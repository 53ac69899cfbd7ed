#!/usr/bin/env bash
# Measures POST /orders ingress with wrk, a load generator outside dop, so
# `dop bench`'s acceptance figures can be checked by an independent tool.
# Runs against a stack already listening on loopback (scripts/stack.sh
# start all), seeds products 8001-8010 first, and is bounded in time.
#
#   scripts/bench-wrk.sh [DURATION] [CONNECTIONS] [THREADS]
#   scripts/bench-wrk.sh 30s 50 2          (the defaults)
#
# Environment:
#   ORDER_URL      the order role, loopback only (default http://127.0.0.1:8081)
#   INVENTORY_URL  for seeding (default http://127.0.0.1:8082)
#   SKIP_SEED=1    do not (re)seed the products
#
# wrk measures acceptance only (201 once the order and its saga are stored);
# run `dop bench` for the sagas' end-to-end completion and the audit.
# Installs the Debian package wrk with apt-get when it is missing (as root).
set -euo pipefail

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LUA="$SCRIPTS_DIR/loadtest/post_orders.lua"
ORDER_URL="${ORDER_URL:-http://127.0.0.1:${ORDER_PORT:-8081}}"
DURATION="${1:-30s}"
CONNECTIONS="${2:-50}"
THREADS="${3:-2}"
MAX_SECONDS=1800

die() {
    echo "bench-wrk: $*" >&2
    exit 2
}

# DURATION as seconds: 30, 30s, 5m or 1h.
seconds() {
    local d="$1"
    [[ "$d" =~ ^([0-9]+)([smh]?)$ ]] || die "duration '$d' must look like 30s, 5m or 1h"
    local n="${BASH_REMATCH[1]}"
    case "${BASH_REMATCH[2]}" in
        m) echo $((n * 60)) ;;
        h) echo $((n * 3600)) ;;
        *) echo "$n" ;;
    esac
}

secs="$(seconds "$DURATION")"
((secs >= 1 && secs <= MAX_SECONDS)) || die "duration must be between 1 s and $MAX_SECONDS s"
if ! [[ "$CONNECTIONS" =~ ^[0-9]+$ ]] || ((CONNECTIONS < 1 || CONNECTIONS > 10000)); then
    die "connections must be a number from 1 to 10000"
fi
if ! [[ "$THREADS" =~ ^[0-9]+$ ]] || ((THREADS < 1 || THREADS > CONNECTIONS)); then
    die "threads must be a number from 1 to the number of connections"
fi

# Loopback only: this is a load generator, not something to aim elsewhere.
host="${ORDER_URL#http://}"
host="${host%%/*}"
case "$host" in
    127.0.0.1 | 127.0.0.1:* | localhost | localhost:* | "[::1]" | "[::1]:"*) ;;
    *) die "ORDER_URL must be http:// on loopback (127.0.0.1, localhost or [::1]), not $ORDER_URL" ;;
esac

if ! command -v wrk >/dev/null 2>&1; then
    if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "bench-wrk: installing wrk with apt-get" >&2
        timeout 600 apt-get update -qq
        DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -qq wrk >/dev/null
    else
        die "wrk is not installed: run 'sudo apt-get update && sudo apt-get install -y wrk'"
    fi
fi
command -v curl >/dev/null 2>&1 || die "curl is required"

if ! curl -fsS --max-time 5 -o /dev/null "$ORDER_URL/ready"; then
    die "the order role at $ORDER_URL is not ready: start the stack (scripts/stack.sh start all)"
fi

if [[ "${SKIP_SEED:-0}" != 1 ]]; then
    "$SCRIPTS_DIR/loadtest/seed.sh" >/dev/null
fi

echo "wrk: POST $ORDER_URL/orders for ${secs}s, $CONNECTIONS connections, $THREADS threads"
# wrk stops itself after the duration; the timeout is a backstop.
exec timeout --kill-after=10 $((secs + 60)) \
    wrk --threads "$THREADS" --connections "$CONNECTIONS" --duration "${secs}s" \
    --timeout 10s --latency --script "$LUA" "$ORDER_URL/orders"
