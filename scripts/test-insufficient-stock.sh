#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Insufficient stock: stock 5, order 10 units -> FAILED; inventory unchanged
# (available 5, reserved 0); no payment (GET /payments/:order_id is 404).
# Needs a running stack (scripts/stack.sh start all && scripts/stack.sh wait-ready).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

echo "== insufficient stock =="
wait_ready_urls || finish insufficient-stock

if ! product="$(create_product 5)"; then
    fail "create product with 5 units"
    finish insufficient-stock
fi
pass "created product $product with 5 units"

place_order "$product" 10 99.90
check "POST /orders answers 201" 201 "$HTTP_STATUS"
[[ -n "$ORDER_ID" ]] || { fail "no order_id in $HTTP_BODY"; finish insufficient-stock; }
log "order $ORDER_ID placed"

if wait_order_status "$ORDER_ID" "$ORDER_TIMEOUT" CONFIRMED FAILED COMPENSATED; then
    check "order reaches FAILED" FAILED "$LAST_STATUS"
else
    fail "order not terminal after ${ORDER_TIMEOUT}s (status '$LAST_STATUS')"
fi

inventory_of "$product"
check "inventory available_qty unchanged" 5 "$AVAILABLE"
check "inventory reserved_qty unchanged" 0 "$RESERVED"

http GET "$PAYMENT_URL/payments/$ORDER_ID"
check "no payment: GET /payments/:order_id answers 404" 404 "$HTTP_STATUS"

finish insufficient-stock
