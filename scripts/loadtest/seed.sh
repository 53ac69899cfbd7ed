#!/usr/bin/env bash
# Seeds the load test's products: 8001-8010 with 100,000 units each.
# Creates them with POST /inventory, or resets the stock with PUT when they
# exist already (409). INVENTORY_URL defaults to http://127.0.0.1:8082;
# SEED_QTY changes the units. DOP_ADMIN__TOKEN, when set, is sent as the
# bearer token (inventory writes need the operator token once tokens are
# configured).
set -euo pipefail

INVENTORY_URL="${INVENTORY_URL:-http://127.0.0.1:${INVENTORY_PORT:-8082}}"
SEED_QTY="${SEED_QTY:-100000}"

command -v curl >/dev/null || {
    echo "seed.sh needs curl" >&2
    exit 2
}

auth=()
if [[ -n "${DOP_ADMIN__TOKEN:-}" ]]; then
    auth=(-H "Authorization: Bearer $DOP_ADMIN__TOKEN")
fi

request() { # METHOD PATH BODY -> prints the status code
    curl -sS -o /dev/null -w '%{http_code}' --max-time 10 -X "$1" "${auth[@]}" \
        -H 'Content-Type: application/json' --data "$3" "$INVENTORY_URL$2" || echo 000
}

failed=0
for product in $(seq 8001 8010); do
    code="$(request POST /inventory "{\"product_id\":$product,\"available_qty\":$SEED_QTY}")"
    case "$code" in
        201) echo "product $product: created with $SEED_QTY units" ;;
        409)
            code="$(request PUT "/inventory/$product" "{\"available_qty\":$SEED_QTY}")"
            if [[ "$code" == 200 ]]; then
                echo "product $product: existed; available_qty set to $SEED_QTY"
            else
                echo "product $product: PUT /inventory/$product answered $code" >&2
                failed=1
            fi
            ;;
        *)
            echo "product $product: POST /inventory answered $code" >&2
            failed=1
            ;;
    esac
done
exit "$failed"
