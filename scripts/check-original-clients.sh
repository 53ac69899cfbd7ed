#!/usr/bin/env bash
# Drives a running dop stack the way the original system's clients do
# (its scenario scripts, Locust file and Go integration tests), to prove the
# drop-in claim of docs/compatibility.md: curl with and without a JSON
# content type, order ids read as `"order_id":<digits>` from the raw answer
# or with `jq -r .order_id` and put straight into a path, products seeded by
# the inventory role (1001) used without creating them, a product set up by
# POST (any answer) then PUT (must succeed) with no token, and the fields
# and types of the order, payment and inventory JSON that those clients
# read. dop's own scenario scripts (scripts/test-*.sh) check the saga
# outcomes in depth; this checks the client contract.
#
#   scripts/stack.sh start all && scripts/stack.sh wait-ready all
#   scripts/check-original-clients.sh
#
# Needs curl and jq. Bounded: every wait has a deadline. Exits 1 on any
# failed check and prints "original-clients: N passed, N failed".
set -euo pipefail

ORDER_URL="${ORDER_URL:-http://localhost:8081}"
INVENTORY_URL="${INVENTORY_URL:-http://localhost:8082}"
PAYMENT_URL="${PAYMENT_URL:-http://localhost:8083}"
WAIT_SECS="${WAIT_SECS:-30}"

for tool in curl jq; do
    command -v "$tool" >/dev/null || { echo "original-clients: $tool is missing (apt-get install -y $tool)"; exit 1; }
done

pass=0 fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
ko() { echo "FAIL $1"; fail=$((fail + 1)); }
expect() { # name want got
    if [[ "$3" == "$2" ]]; then ok "$1"; else ko "$1 (want '$2', got '$3')"; fi
}

# wait_status ID STATUS...: polls GET /orders/ID until one of STATUS.
wait_status() {
    local id=$1 s="" deadline=$((SECONDS + WAIT_SECS))
    shift
    while ((SECONDS < deadline)); do
        s=$(curl -sf "$ORDER_URL/orders/$id" | jq -r .status) || s=""
        for want in "$@"; do [[ "$s" == "$want" ]] && { echo "$s"; return 0; }; done
        sleep 0.2
    done
    echo "$s"
}

# 1. A seeded product, an order read with grep, with and without a JSON
#    content type (curl -d alone sends application/x-www-form-urlencoded).
body='{"user_id":42,"product_id":1001,"quantity":1,"total_amount":99.99}'
resp=$(curl -sf -X POST "$ORDER_URL/orders" -H 'Content-Type: application/json' -d "$body") || resp=""
id=$(echo "$resp" | grep -o '"order_id":[0-9]*' | cut -d: -f2 || true)
if [[ -n "$id" ]]; then ok "POST /orders on the seeded product 1001: order_id $id read as digits"; else ko "no \"order_id\":<digits> in '$resp'"; fi
resp2=$(curl -sf -X POST "$ORDER_URL/orders" -d "$body") || resp2=""
id2=$(echo "$resp2" | jq -r .order_id 2>/dev/null || true)
expect "POST /orders without a JSON content type is accepted" number "$(echo "$resp2" | jq -r '.order_id | type' 2>/dev/null || echo none)"
expect "order ids increase" true "$([[ -n "$id" && -n "$id2" && "$id2" =~ ^[0-9]+$ && "$id2" -gt "$id" ]] && echo true || echo false)"

expect "the order reaches CONFIRMED" CONFIRMED "$(wait_status "$id" CONFIRMED FAILED COMPENSATED)"
order=$(curl -sf "$ORDER_URL/orders/$id") || order="{}"
expect "order JSON: id, user_id, product_id, quantity are integers" "number number number number" \
    "$(echo "$order" | jq -r '[.id, .user_id, .product_id, .quantity] | map(type) | join(" ")')"
expect "order JSON: id is the order_id" "$id" "$(echo "$order" | jq -r .id)"
expect "order JSON: total_amount a number" number "$(echo "$order" | jq -r '.total_amount | type')"
expect "order JSON: created_at, updated_at" "string string" "$(echo "$order" | jq -r '[.created_at, .updated_at] | map(type) | join(" ")')"

payment=$(curl -sf "$PAYMENT_URL/payments/$id") || payment="{}"
expect "payment JSON: id and order_id integers" "number number" "$(echo "$payment" | jq -r '[.id, .order_id] | map(type) | join(" ")')"
expect "payment JSON: order_id is the order's" "$id" "$(echo "$payment" | jq -r .order_id)"
expect "payment JSON: status" SUCCESS "$(echo "$payment" | jq -r .status)"
expect "payment JSON: transaction_id set" true "$(echo "$payment" | jq -r '(.transaction_id | type) == "string" and (.transaction_id | length) > 0')"
expect "payment JSON: amount, created_at, updated_at" "number string string" \
    "$(echo "$payment" | jq -r '[.amount, .created_at, .updated_at] | map(type) | join(" ")')"

# 2. A product set up as the scripts do (POST, whatever it answers, then a
#    PUT that must succeed), then more orders than stock, concurrently, ids
#    read with jq -r .order_id.
product=$((20000 + RANDOM % 10000))
curl -s -o /dev/null -X POST "$INVENTORY_URL/inventory" -H 'Content-Type: application/json' \
    -d "{\"product_id\":$product,\"available_qty\":3}" || true
if curl -sf -o /dev/null -X PUT "$INVENTORY_URL/inventory/$product" -H 'Content-Type: application/json' \
    -d '{"available_qty":3}'; then ok "POST then PUT /inventory/$product without a token"; else ko "PUT /inventory/$product"; fi
inv=$(curl -sf "$INVENTORY_URL/inventory/$product") || inv="{}"
expect "inventory JSON: id, product_id, available_qty, reserved_qty integers" "number number number number" \
    "$(echo "$inv" | jq -r '[.id, .product_id, .available_qty, .reserved_qty] | map(type) | join(" ")')"
ids=$(for _ in 1 2 3 4 5 6 7 8; do
    curl -sf -X POST "$ORDER_URL/orders" -H 'Content-Type: application/json' \
        -d "{\"user_id\":45,\"product_id\":$product,\"quantity\":1,\"total_amount\":9.99}" | jq -r .order_id &
done; wait)
expect "8 concurrent orders placed, 8 integer ids" 8 "$(echo "$ids" | grep -c '^[0-9][0-9]*$' || true)"
confirmed=0 failed=0 other=0
for oid in $ids; do
    case "$(wait_status "$oid" CONFIRMED FAILED COMPENSATED)" in
        CONFIRMED) confirmed=$((confirmed + 1)) ;;
        FAILED) failed=$((failed + 1)) ;;
        *) other=$((other + 1)) ;;
    esac
done
expect "3 CONFIRMED, 5 FAILED, none other" "3 5 0" "$confirmed $failed $other"
expect "stock 0 after" 0 "$(curl -sf "$INVENTORY_URL/inventory/$product" | jq -r .available_qty)"

# 3. The Locust file's body: a random user, total_amount a float literal.
locust=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$ORDER_URL/orders" -H 'Content-Type: application/json' \
    -d "{\"user_id\":$((1 + RANDOM % 10000)),\"product_id\":1002,\"quantity\":1,\"total_amount\":10.0}")
expect "the Locust body (total_amount 10.0) answers 201" 201 "$locust"

# 4. Ids in paths: a made-up id is 404, not 400.
expect "GET /orders/999999999 answers 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$ORDER_URL/orders/999999999")"
expect "GET /payments/999999999 answers 404" 404 "$(curl -s -o /dev/null -w '%{http_code}' "$PAYMENT_URL/payments/999999999")"

echo "original-clients: $pass passed, $fail failed"
((fail == 0))
