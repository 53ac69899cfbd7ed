#!/usr/bin/env bash
# shellcheck disable=SC2034  # the variables set here are read by the sourcing scripts
# Helpers shared by the scenario scripts (scripts/test-*.sh) and
# scripts/check-observability.sh. Source it; do not run it.
#
# Needs curl and python3 (used for JSON instead of jq, which may be missing).
# Base URLs follow the original system's ports and can be overridden:
#   ORDER_URL (http://127.0.0.1:8081), INVENTORY_URL (:8082), PAYMENT_URL (:8083)
# Deadlines (seconds): ORDER_TIMEOUT (default 60) for an order to reach the
# status a scenario expects.

ORDER_URL="${ORDER_URL:-http://127.0.0.1:${ORDER_PORT:-8081}}"
INVENTORY_URL="${INVENTORY_URL:-http://127.0.0.1:${INVENTORY_PORT:-8082}}"
PAYMENT_URL="${PAYMENT_URL:-http://127.0.0.1:${PAYMENT_PORT:-8083}}"
ORDER_TIMEOUT="${ORDER_TIMEOUT:-60}"

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPO_ROOT="$(cd "$SCRIPTS_DIR/.." && pwd)"
STACK="$SCRIPTS_DIR/stack.sh"
export ORDER_URL INVENTORY_URL PAYMENT_URL

PASSED=0
FAILED=0
HTTP_STATUS=""
HTTP_BODY=""

for _tool in curl python3; do
    if ! command -v "$_tool" >/dev/null 2>&1; then
        echo "FAIL: $_tool is required" >&2
        exit 2
    fi
done
unset _tool

_COMMON_TMP="$(mktemp -d "${TMPDIR:-/tmp}/dop-scenario.XXXXXX")"
# Scripts that set their own EXIT trap call cleanup_common from it.
cleanup_common() {
    rm -rf "$_COMMON_TMP"
}
trap cleanup_common EXIT

log() {
    printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*"
}

pass() {
    PASSED=$((PASSED + 1))
    echo "PASS: $*"
}

fail() {
    FAILED=$((FAILED + 1))
    echo "FAIL: $*"
}

# check DESCRIPTION EXPECTED ACTUAL: PASS when equal as strings.
check() {
    if [[ "$2" == "$3" ]]; then
        pass "$1 ($3)"
    else
        fail "$1: expected '$2', got '$3'"
    fi
}

# check_present DESCRIPTION VALUE: PASS when VALUE is not empty.
check_present() {
    if [[ -n "$2" ]]; then
        pass "$1 ($2)"
    else
        fail "$1 is missing"
    fi
}

# check_money DESCRIPTION EXPECTED ACTUAL: PASS when equal as decimals
# (199.98 == "199.98" == 199.980).
check_money() {
    if python3 - "$2" "$3" <<'PY'
import sys
from decimal import Decimal, InvalidOperation
try:
    sys.exit(0 if Decimal(sys.argv[1]) == Decimal(sys.argv[2]) else 1)
except InvalidOperation:
    sys.exit(1)
PY
    then
        pass "$1 ($3)"
    else
        fail "$1: expected $2, got '$3'"
    fi
}

# finish NAME: prints the scenario's tally and exits non-zero on any failure.
finish() {
    echo "$1: $PASSED passed, $FAILED failed"
    if ((FAILED > 0 || PASSED == 0)); then
        exit 1
    fi
    exit 0
}

# http METHOD URL [JSON_BODY]: sets HTTP_STATUS (000 when unreachable) and HTTP_BODY.
# Sends DOP_ADMIN__TOKEN as the bearer token when it is set (a stack with
# tokens needs it for inventory writes; one without ignores it).
http() {
    local method="$1" url="$2" body="${3:-}" out="$_COMMON_TMP/body"
    local args=(-sS -o "$out" -w '%{http_code}' -X "$method" --max-time 10)
    if [[ -n "${DOP_ADMIN__TOKEN:-}" ]]; then
        args+=(-H "Authorization: Bearer $DOP_ADMIN__TOKEN")
    fi
    if [[ -n "$body" ]]; then
        args+=(-H 'Content-Type: application/json' --data "$body")
    fi
    : >"$out"
    HTTP_STATUS="$(curl "${args[@]}" "$url" 2>/dev/null)" || HTTP_STATUS="000"
    HTTP_BODY="$(cat "$out")"
}

# json_get FIELD [JSON]: prints a top-level field of JSON (default HTTP_BODY);
# nested fields with dots (a.b). Prints nothing when absent or not JSON.
json_get() {
    local doc="${2-$HTTP_BODY}"
    python3 -c '
import json, sys
try:
    v = json.loads(sys.argv[2])
    for k in sys.argv[1].split("."):
        v = v[k]
except Exception:
    sys.exit(0)
if isinstance(v, bool):
    print("true" if v else "false")
elif v is None:
    print("")
elif isinstance(v, (dict, list)):
    print(json.dumps(v))
else:
    print(v)
' "$1" "$doc"
}

# unique_product_id: an id unlikely to exist yet (time-based plus random), so
# reruns do not collide with earlier products. create_product also retries on 409.
unique_product_id() {
    local now
    now="$(date +%s)"
    echo $((1000000000 + (now % 100000000) * 100 + RANDOM % 100))
}

# wait_ready_urls: waits (bounded) until the three roles answer GET /ready.
wait_ready_urls() {
    local deadline=$((SECONDS + ${READY_TIMEOUT:-60})) url
    for url in "$ORDER_URL" "$INVENTORY_URL" "$PAYMENT_URL"; do
        while true; do
            http GET "$url/ready"
            [[ "$HTTP_STATUS" == "200" ]] && break
            if ((SECONDS >= deadline)); then
                fail "$url/ready did not answer 200 (last status $HTTP_STATUS); is the stack running? (scripts/stack.sh start all)"
                return 1
            fi
            sleep 0.5
        done
    done
}

# create_product QTY: creates a product with a fresh id and prints the id.
# Retries with another id on 409; returns 1 on any other failure.
create_product() {
    local qty="$1" attempt pid
    for attempt in 1 2 3 4 5; do
        pid="$(unique_product_id)"
        http POST "$INVENTORY_URL/inventory" "{\"product_id\":$pid,\"available_qty\":$qty}"
        if [[ "$HTTP_STATUS" == "201" ]]; then
            echo "$pid"
            return 0
        fi
        if [[ "$HTTP_STATUS" != "409" ]]; then
            echo "POST /inventory (attempt $attempt) -> $HTTP_STATUS $HTTP_BODY" >&2
            return 1
        fi
    done
    echo "POST /inventory kept answering 409" >&2
    return 1
}

# place_order PRODUCT_ID QUANTITY AMOUNT [USER_ID]: POST /orders; sets
# HTTP_STATUS/HTTP_BODY and ORDER_ID/SAGA_ID (empty when not 201).
place_order() {
    local user="${4:-42}"
    ORDER_ID=""
    SAGA_ID=""
    http POST "$ORDER_URL/orders" \
        "{\"user_id\":$user,\"product_id\":$1,\"quantity\":$2,\"total_amount\":$3}"
    if [[ "$HTTP_STATUS" == "201" ]]; then
        ORDER_ID="$(json_get order_id)"
        SAGA_ID="$(json_get saga_id)"
    fi
}

# order_status ORDER_ID: prints the order's status (empty when unavailable).
order_status() {
    http GET "$ORDER_URL/orders/$1"
    if [[ "$HTTP_STATUS" == "200" ]]; then
        json_get status
    fi
}

# wait_order_status ORDER_ID TIMEOUT STATUS...: polls GET /orders/:id until its
# status is one of STATUS... or TIMEOUT seconds pass. Sets LAST_STATUS; returns
# 0 when reached, 1 on timeout.
wait_order_status() {
    local id="$1" timeout="$2" want
    shift 2
    local deadline=$((SECONDS + timeout)) delay=0.1
    LAST_STATUS=""
    while true; do
        LAST_STATUS="$(order_status "$id")"
        for want in "$@"; do
            if [[ "$LAST_STATUS" == "$want" ]]; then
                return 0
            fi
        done
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep "$delay"
        delay=0.5
    done
}

# inventory_of PRODUCT_ID: sets AVAILABLE and RESERVED from GET /inventory/:id.
inventory_of() {
    http GET "$INVENTORY_URL/inventory/$1"
    AVAILABLE="$(json_get available_qty)"
    RESERVED="$(json_get reserved_qty)"
}
