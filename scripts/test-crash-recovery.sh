#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Crash recovery: with the inventory role stopped, an order is still accepted
# (201) and stays PENDING; once inventory is back the saga resumes and the
# order is CONFIRMED within a deadline (RECOVERY_TIMEOUT, default 90 s).
#
# Stops and starts inventory through scripts/stack.sh (local processes, or
# compose with DOP_STACK=compose). CRASH_SIGNAL=KILL kills it instead of a
# graceful stop. Inventory is started again on exit whatever happens.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

PENDING_SECONDS="${PENDING_SECONDS:-5}"
RECOVERY_TIMEOUT="${RECOVERY_TIMEOUT:-90}"
CRASH_SIGNAL="${CRASH_SIGNAL:-TERM}"
INVENTORY_DOWN=0

start_inventory() {
    "$STACK" start inventory && "$STACK" wait-ready inventory
}

# shellcheck disable=SC2317  # run by the EXIT trap
on_exit() {
    local rc=$?
    if [[ "$INVENTORY_DOWN" == 1 ]]; then
        start_inventory >/dev/null || echo "WARN: could not start inventory again (scripts/stack.sh start inventory)" >&2
    fi
    cleanup_common
    exit "$rc"
}
trap on_exit EXIT

echo "== crash recovery =="
wait_ready_urls || finish crash-recovery

if ! product="$(create_product 100)"; then
    fail "create product with 100 units"
    finish crash-recovery
fi
pass "created product $product with 100 units"

log "taking inventory down (SIG$CRASH_SIGNAL)"
INVENTORY_DOWN=1
if [[ "$CRASH_SIGNAL" == KILL ]]; then
    "$STACK" kill inventory
else
    "$STACK" stop inventory
fi
http GET "$INVENTORY_URL/health"
check "inventory is down" 000 "$HTTP_STATUS"

place_order "$product" 2 199.98
check "POST /orders with inventory down answers 201" 201 "$HTTP_STATUS"
[[ -n "$ORDER_ID" ]] || { fail "no order_id in $HTTP_BODY"; finish crash-recovery; }
log "order $ORDER_ID placed"

deadline=$((SECONDS + PENDING_SECONDS))
stayed=1
while ((SECONDS < deadline)); do
    status="$(order_status "$ORDER_ID")"
    if [[ "$status" != PENDING ]]; then
        stayed=0
        fail "order left PENDING while inventory was down (status '$status')"
        break
    fi
    sleep 0.5
done
if [[ "$stayed" == 1 ]]; then
    pass "order stays PENDING for ${PENDING_SECONDS}s while inventory is down"
fi

log "starting inventory again"
if start_inventory; then
    INVENTORY_DOWN=0
    pass "inventory back and ready"
else
    fail "start inventory again"
    finish crash-recovery
fi

if wait_order_status "$ORDER_ID" "$RECOVERY_TIMEOUT" CONFIRMED FAILED COMPENSATED; then
    check "order reaches CONFIRMED after recovery" CONFIRMED "$LAST_STATUS"
else
    fail "order not terminal ${RECOVERY_TIMEOUT}s after inventory came back (status '$LAST_STATUS')"
fi

inventory_of "$product"
check "inventory available_qty" 98 "$AVAILABLE"
check "inventory reserved_qty" 2 "$RESERVED"

http GET "$PAYMENT_URL/payments/$ORDER_ID"
check "payment status" SUCCESS "$(json_get status)"

finish crash-recovery
