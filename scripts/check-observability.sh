#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Checks dop's observability assets against a running local stack (ports
# 8081-8083, e.g. scripts/stack.sh start all):
#   1. the Grafana dashboard is valid JSON, has uid dop-saga-overview, and its
#      queries use only metric names that dop exports;
#   2. `promtool check metrics` accepts each role's /metrics;
#   3. a real Prometheus (127.0.0.1:9091, temporary data dir, killed on exit)
#      scrapes the three roles with deploy/observability/prometheus.local.yml;
#   4. after a few orders placed by this script, every dashboard query returns
#      data from that Prometheus.
# Installs the Debian `prometheus` package (prometheus + promtool) if missing.
#
# Environment: PROM_PORT (9091), PROM_LIFETIME (seconds Prometheus may live,
# 300), QUERY_TIMEOUT (seconds for every query to return data, 120),
# ORDER_URL/INVENTORY_URL/PAYMENT_URL as for the scenario scripts.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

OBS_DIR="$REPO_ROOT/deploy/observability"
DASHBOARD="$OBS_DIR/grafana/dashboards/dop-saga-overview.json"
PROM_CONFIG="$OBS_DIR/prometheus.local.yml"
PROM_PORT="${PROM_PORT:-9091}"
PROM_URL="http://127.0.0.1:$PROM_PORT"
PROM_LIFETIME="${PROM_LIFETIME:-300}"
QUERY_TIMEOUT="${QUERY_TIMEOUT:-120}"
PROM_PID=""
PROM_DIR=""

# shellcheck disable=SC2317  # run by the EXIT trap
on_exit() {
    local rc=$?
    if [[ -n "$PROM_PID" ]]; then
        kill "$PROM_PID" 2>/dev/null || true
        wait "$PROM_PID" 2>/dev/null || true
    fi
    [[ -z "$PROM_DIR" ]] || rm -rf "$PROM_DIR"
    cleanup_common
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

echo "== observability =="

# ---- 0. tools -----------------------------------------------------------------
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
    log "installing the Debian prometheus package (prometheus, promtool)"
    if ! { apt-get install -y -qq prometheus >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq prometheus >/dev/null 2>&1; }; }; then
        fail "install prometheus (apt-get install prometheus)"
        finish observability
    fi
fi

# ---- 1. static checks of the dashboard and scrape configs ------------------------
if python3 - "$DASHBOARD" <<'PY'
import json, re, sys

ALLOWED = {
    "http_requests_total", "http_request_duration_seconds", "saga_total", "saga_duration_seconds",
    "messages_published_total", "messages_consumed_total", "outbox_backlog",
    "outbox_relay_latency_seconds", "dlq_depth", "dlq_messages", "inventory_reserve_rejections_total",
    "db_pool_connections", "db_pool_max", "batch_failures_total",
    "saga_timeouts_total", "saga_cancellations_total",
}
KEYWORDS = {"by", "without", "or", "and", "unless", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
d = json.load(open(sys.argv[1]))
assert d["uid"] == "dop-saga-overview", d["uid"]
problems = []
for p in d["panels"]:
    for t in p.get("targets", []):
        if t.get("datasource", {}).get("uid") != "prometheus":
            problems.append(f"{p['title']}: datasource uid is not prometheus")
        e = re.sub(r'"(?:[^"\\]|\\.)*"', "", t["expr"])          # string literals
        e = re.sub(r"\{[^}]*\}", "", e)                            # label matchers
        e = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", "", e)  # grouping labels
        e = re.sub(r"\[[^\]]*\]", "", e)                           # ranges
        for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
            name = m.group(0)
            if name in KEYWORDS or e[m.end():].lstrip().startswith("("):
                continue
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            if name not in ALLOWED and base not in ALLOWED:
                problems.append(f"{p['title']}: unknown metric {name}")
for problem in problems:
    print(problem)
sys.exit(1 if problems else 0)
PY
then
    pass "dashboard JSON valid, uid dop-saga-overview, only known metric names"
else
    fail "dashboard static check"
fi
for config in "$OBS_DIR/prometheus.yml" "$PROM_CONFIG"; do
    if promtool check config "$config" >/dev/null 2>&1; then
        pass "promtool check config ${config#"$REPO_ROOT"/}"
    else
        fail "promtool check config ${config#"$REPO_ROOT"/}: $(promtool check config "$config" 2>&1 | tail -n 3)"
    fi
done

# ---- 2. the roles' /metrics ----------------------------------------------------
wait_ready_urls || finish observability

# Some traffic first, so that every metric family has series: a product, a
# few orders that succeed and one that is rejected for lack of stock.
# place_traffic TAG: prints nothing; records order ids in $_COMMON_TMP/orders.
place_traffic() {
    local product i
    if ! product="$(create_product 20)"; then
        fail "create a product for the traffic"
        return 1
    fi
    for i in 1 2 3 4 5; do
        place_order "$product" 1 9.99 "$((9000 + i))"
        [[ -z "$ORDER_ID" ]] || echo "$ORDER_ID" >>"$_COMMON_TMP/orders"
    done
    place_order "$product" 1000 99.00 9100
    [[ -z "$ORDER_ID" ]] || echo "$ORDER_ID" >>"$_COMMON_TMP/orders"
    local id
    while read -r id; do
        wait_order_status "$id" "$ORDER_TIMEOUT" CONFIRMED FAILED COMPENSATED || true
    done <"$_COMMON_TMP/orders"
    : >"$_COMMON_TMP/orders"
}
place_traffic || finish observability

for url in "$ORDER_URL" "$INVENTORY_URL" "$PAYMENT_URL"; do
    metrics="$_COMMON_TMP/metrics"
    if ! curl -sS --max-time 10 -o "$metrics" "$url/metrics"; then
        fail "GET $url/metrics"
        continue
    fi
    if out="$(promtool check metrics <"$metrics" 2>&1)"; then
        pass "promtool check metrics $url/metrics ($(grep -c '^# TYPE' "$metrics") families)"
    else
        fail "promtool check metrics $url/metrics: $(head -n 6 <<<"$out" | paste -sd ';' -)"
    fi
done

# ---- 3. a real Prometheus --------------------------------------------------------
if (exec 3<>"/dev/tcp/127.0.0.1/$PROM_PORT") 2>/dev/null; then
    fail "port $PROM_PORT is in use; set PROM_PORT to a free port"
    finish observability
fi
PROM_DIR="$(mktemp -d "${TMPDIR:-/tmp}/dop-prometheus.XXXXXX")"
timeout "$PROM_LIFETIME" prometheus \
    --config.file="$PROM_CONFIG" \
    --storage.tsdb.path="$PROM_DIR/data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" \
    --log.level=warn >"$PROM_DIR/prometheus.log" 2>&1 &
PROM_PID=$!
log "prometheus started on $PROM_URL (pid $PROM_PID, at most ${PROM_LIFETIME}s)"

deadline=$((SECONDS + 60))
while true; do
    http GET "$PROM_URL/api/v1/targets?state=active"
    up="$(python3 -c '
import json, sys
try:
    t = json.loads(sys.argv[1])["data"]["activeTargets"]
except Exception:
    sys.exit(0)
print(" ".join(sorted(x["labels"]["job"] for x in t if x["health"] == "up")))
' "$HTTP_BODY")"
    if [[ "$up" == "dop-inventory dop-order dop-payment" ]]; then
        pass "prometheus scrapes dop-order, dop-inventory, dop-payment (all up)"
        break
    fi
    if ! kill -0 "$PROM_PID" 2>/dev/null || ((SECONDS >= deadline)); then
        fail "prometheus targets not all up (up: '${up}'); log: $(tail -n 5 "$PROM_DIR/prometheus.log" 2>/dev/null)"
        finish observability
    fi
    sleep 1
done

# ---- 4. every dashboard query returns data ------------------------------------------
# rate() needs samples before and after the traffic: let one scrape pass,
# place orders, then poll the queries until they all return data.
sleep 6
place_traffic || finish observability

results="$(python3 - "$DASHBOARD" "$PROM_URL" "$QUERY_TIMEOUT" <<'PY'
import json, math, sys, time, urllib.parse, urllib.request

dash, base, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
queries = []
for p in json.load(open(dash))["panels"]:
    for t in p.get("targets", []):
        e = t["expr"]
        for var in ("$__rate_interval", "$__interval", "$__range"):
            e = e.replace(var, "1m")
        queries.append((p["title"], t.get("legendFormat", ""), e))

def has_data(expr):
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
    except Exception as exc:
        return False, f"error {exc}"
    if body.get("status") != "success":
        return False, body.get("error", "query failed")
    res = body["data"]["result"]
    vals = [float(s["value"][1]) for s in res]
    finite = [v for v in vals if not math.isnan(v)]
    if not finite:
        return False, f"{len(res)} series, no value" if res else "no series"
    return True, f"{len(res)} series"

pending = {q: "not run" for q in queries}
done = {}
deadline = time.monotonic() + timeout
while pending and time.monotonic() < deadline:
    for q in list(pending):
        ok, why = has_data(q[2])
        if ok:
            done[q] = why
            del pending[q]
        else:
            pending[q] = why
    if pending:
        time.sleep(3)
for (title, legend, expr), why in done.items():
    print(f"PASS\t{title} [{legend}]: {why}")
for (title, legend, expr), why in pending.items():
    print(f"FAIL\t{title} [{legend}]: {why}: {expr}")
PY
)"
while IFS=$'\t' read -r verdict text; do
    case "$verdict" in
        PASS) pass "query returns data: $text" ;;
        FAIL) fail "query returns no data: $text" ;;
    esac
done <<<"$results"

# honor_labels keeps each role's own `service` label and the target label
# fills it in where a series has none: both must agree, so the dop jobs show
# exactly three service values.
http GET "$PROM_URL/api/v1/query?query=count+by+(service)+(%7Bjob%3D~%22dop-.%2A%22%7D)"
services="$(python3 -c '
import json, sys
try:
    r = json.loads(sys.argv[1])["data"]["result"]
except Exception:
    sys.exit(0)
print(" ".join(sorted(x["metric"].get("service", "(none)") for x in r)))
' "$HTTP_BODY")"
if [[ "$(wc -w <<<"$services")" == 3 ]]; then
    pass "one service label value per role: $services"
else
    fail "service label values across the dop jobs: '$services' (expected one per role; do prometheus*.yml labels match what the roles export?)"
fi

finish observability
