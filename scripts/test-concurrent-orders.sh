#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Concurrent orders: stock 10, 50 concurrent orders of 1 unit -> exactly 10
# CONFIRMED and 40 FAILED; inventory ends at available 0 / reserved 10; while
# the orders run, inventory is sampled and never goes negative nor changes
# available + reserved. Needs payment at PAYMENT_FAILURE_RATE=0.0.
# ORDERS (default 50) and STOCK (default 10) change the sizes.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

ORDERS="${ORDERS:-50}"
STOCK="${STOCK:-10}"
SAMPLER_PID=""

# shellcheck disable=SC2317  # run by the EXIT trap
on_exit() {
    local rc=$?
    if [[ -n "$SAMPLER_PID" ]]; then
        kill "$SAMPLER_PID" 2>/dev/null || true
        wait "$SAMPLER_PID" 2>/dev/null || true
    fi
    cleanup_common
    exit "$rc"
}
trap on_exit EXIT

echo "== concurrent orders ($ORDERS orders of 1 unit against $STOCK units) =="
wait_ready_urls || finish concurrent-orders

if ! product="$(create_product "$STOCK")"; then
    fail "create product with $STOCK units"
    finish concurrent-orders
fi
pass "created product $product with $STOCK units"

work="$_COMMON_TMP/concurrent"
mkdir -p "$work"

# Samples GET /inventory/:id until killed (bounded by ORDER_TIMEOUT + 30 s anyway).
sample_inventory() {
    local end=$((SECONDS + ORDER_TIMEOUT + 30))
    while ((SECONDS < end)); do
        curl -s --max-time 2 "$INVENTORY_URL/inventory/$product" >>"$work/samples" 2>/dev/null || true
        echo >>"$work/samples"
        sleep 0.1
    done
}
sample_inventory &
SAMPLER_PID=$!

log "firing $ORDERS concurrent POST /orders"
pids=()
for i in $(seq 1 "$ORDERS"); do
    curl -s --max-time 30 -o "$work/$i.body" -w '%{http_code}\n' -X POST \
        -H 'Content-Type: application/json' \
        --data "{\"user_id\":$((7000 + i)),\"product_id\":$product,\"quantity\":1,\"total_amount\":9.99}" \
        "$ORDER_URL/orders" >"$work/$i.code" 2>/dev/null &
    pids+=("$!")
done
for pid in "${pids[@]}"; do
    wait "$pid" || true
done

created="$(cat "$work"/*.code | grep -c '^201$' || true)"
check "all POST /orders answered 201" "$ORDERS" "$created"

# Poll every order until it is terminal or the deadline passes; prints
# "CONFIRMED=n FAILED=n ..." counts of the final statuses.
counts="$(python3 - "$work" "$ORDER_URL" "$ORDER_TIMEOUT" <<'PY'
import collections, glob, json, sys, time, urllib.request, urllib.error

work, base, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
ids = []
for path in glob.glob(f"{work}/*.body"):
    try:
        ids.append(json.load(open(path))["order_id"])
    except Exception:
        pass
terminal = {"CONFIRMED", "FAILED", "COMPENSATED"}
status = {i: "" for i in ids}
deadline = time.monotonic() + timeout
while True:
    for i in [i for i, s in status.items() if s not in terminal]:
        try:
            with urllib.request.urlopen(f"{base}/orders/{i}", timeout=5) as r:
                status[i] = json.load(r).get("status", "")
        except (urllib.error.URLError, OSError, ValueError):
            pass
    if all(s in terminal for s in status.values()) or time.monotonic() > deadline:
        break
    time.sleep(0.5)
c = collections.Counter(s or "UNKNOWN" for s in status.values())
print(" ".join(f"{k}={v}" for k, v in sorted(c.items())))
PY
)"
log "final statuses: $counts"

count_of() {
    local word
    for word in $counts; do
        if [[ "${word%%=*}" == "$1" ]]; then
            echo "${word#*=}"
            return
        fi
    done
    echo 0
}
check "CONFIRMED orders" "$STOCK" "$(count_of CONFIRMED)"
check "FAILED orders" "$((ORDERS - STOCK))" "$(count_of FAILED)"
check "orders still PENDING" 0 "$(count_of PENDING)"
check "COMPENSATED orders" 0 "$(count_of COMPENSATED)"

kill "$SAMPLER_PID" 2>/dev/null || true
wait "$SAMPLER_PID" 2>/dev/null || true
SAMPLER_PID=""

inventory_of "$product"
check "inventory available_qty" 0 "$AVAILABLE"
check "inventory reserved_qty" "$STOCK" "$RESERVED"

# Every sample: available >= 0, reserved >= 0, available + reserved == STOCK.
if verdict="$(python3 - "$work/samples" "$STOCK" <<'PY'
import json, sys
bad, n = [], 0
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    try:
        d = json.loads(line)
        a, r = int(d["available_qty"]), int(d["reserved_qty"])
    except Exception:
        continue
    n += 1
    if a < 0 or r < 0 or a + r != int(sys.argv[2]):
        bad.append(f"available={a} reserved={r}")
if n == 0:
    print("no inventory samples taken")
    sys.exit(1)
if bad:
    print(f"{len(bad)} of {n} samples broke it, e.g. {bad[0]}")
    sys.exit(1)
print(f"{n} samples")
PY
)"; then
    pass "inventory never negative and available+reserved stayed $STOCK ($verdict)"
else
    fail "inventory invariant: $verdict"
fi

finish concurrent-orders
