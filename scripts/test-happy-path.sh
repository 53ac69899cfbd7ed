#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Happy path: stock 100, order 2 units for 199.98 -> CONFIRMED; inventory
# available 98 / reserved 2; payment SUCCESS for 199.98.
# Needs a running stack (scripts/stack.sh start all && scripts/stack.sh wait-ready).
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

echo "== happy path =="
wait_ready_urls || finish happy-path

if ! product="$(create_product 100)"; then
    fail "create product with 100 units"
    finish happy-path
fi
pass "created product $product with 100 units"

place_order "$product" 2 199.98
check "POST /orders answers 201" 201 "$HTTP_STATUS"
check "new order is PENDING" PENDING "$(json_get status)"
[[ -n "$ORDER_ID" ]] || { fail "no order_id in $HTTP_BODY"; finish happy-path; }
check_present "saga_id" "$SAGA_ID"
log "order $ORDER_ID placed"

if wait_order_status "$ORDER_ID" "$ORDER_TIMEOUT" CONFIRMED FAILED COMPENSATED; then
    check "order reaches CONFIRMED" CONFIRMED "$LAST_STATUS"
else
    fail "order not terminal after ${ORDER_TIMEOUT}s (status '$LAST_STATUS')"
fi

http GET "$ORDER_URL/orders/$ORDER_ID"
check "GET /orders/:id quantity" 2 "$(json_get quantity)"
check_money "GET /orders/:id total_amount" 199.98 "$(json_get total_amount)"
check "GET /orders/:id product_id" "$product" "$(json_get product_id)"

inventory_of "$product"
check "inventory available_qty" 98 "$AVAILABLE"
check "inventory reserved_qty" 2 "$RESERVED"

http GET "$PAYMENT_URL/payments/$ORDER_ID"
check "GET /payments/:order_id answers 200" 200 "$HTTP_STATUS"
check "payment status" SUCCESS "$(json_get status)"
check_money "payment amount" 199.98 "$(json_get amount)"
check_present "payment tx_id" "$(json_get tx_id)"

finish happy-path
