#!/usr/bin/env bash
# The replica run: two replicas (a and b) of every role as separate dop
# processes on their own ports, sharing one set of databases and one RabbitMQ
# vhost, under a steady stream of orders spread over both order replicas
# (PAYMENT_FAILURE_RATE 0.3). During the load replicas are SIGKILLed (a crash)
# and restarted, and SIGTERMed (what ECS sends on scale-in) and left down.
# Then it waits for every saga to end and checks: no saga left in flight, no
# order without a saga, no double reserve or double charge, the invariant
# audit clean, every outbox empty, no dead letters, and every SIGTERMed
# replica stopped by itself (no SIGKILL after the grace period) with its
# outbox flushed.
#
#   scripts/replicas.sh              the full run (about 2 minutes)
#   scripts/replicas.sh --short      the short run the test suite uses (~1 minute)
#
# Uses its own databases (replicas_orders, replicas_inventory,
# replicas_payments), its own vhost (dop_replicas) and ports 18181-18183
# (replica a) and 18184-18186 (replica b). Needs target/release/dop (or
# DOP_BIN). The last line is the verdict; exit status 1 unless it is clean.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 rate=60 settle=4
if [[ ${1:-} == --short ]]; then rounds=1 rate=40 settle=3; fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi

export DOP_BIN="${DOP_BIN:-$PWD/target/release/dop}"
[[ -x $DOP_BIN ]] || { echo "replicas: no binary at $DOP_BIN (cargo build --release)"; exit 1; }
base="$PWD/.stack/replicas"
export DOP_ORDER__DATABASE_URL=mysql://root@127.0.0.1:3306/replicas_orders
export DOP_INVENTORY__DATABASE_URL=mysql://root@127.0.0.1:3306/replicas_inventory
export DOP_PAYMENT__DATABASE_URL=mysql://root@127.0.0.1:3306/replicas_payments
export RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/dop_replicas
export PAYMENT_FAILURE_RATE=0.3
export DOP_RECOVERY__INTERVAL=3s DOP_RECOVERY__STUCK_AFTER=5s DOP_RETRY__DELAY=500ms DOP_RETRY__MAX_ATTEMPTS=20
export DOP_SHUTDOWN__GRACE=10s STOP_TIMEOUT=20
export DOP_ADMIN__TOKEN=replicas DOP_LOG_FORMAT=json
export READY_TIMEOUT=90

say() { printf 'replicas: %s\n' "$*"; }
sql() { mysql -h127.0.0.1 -uroot -N -e "$1"; }

# on REPLICA CMD [ROLE]: scripts/stack.sh for one replica (its own ports,
# pid files and logs; the same databases and vhost as the other).
on() {
  local r="$1" first
  shift
  case "$r" in
    a) first=18181 ;;
    b) first=18184 ;;
    *) echo "replicas: unknown replica $r" >&2; return 1 ;;
  esac
  STACK_DIR="$base/$r" ORDER_PORT=$first INVENTORY_PORT=$((first + 1)) PAYMENT_PORT=$((first + 2)) \
    scripts/stack.sh "$@"
}

kills=0 terms=0 unclean=0
cleanup() {
  on a stop all >/dev/null 2>&1 || true
  on b stop all >/dev/null 2>&1 || true
  if [[ -n ${bench_pid:-} ]]; then kill "$bench_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

crash() { # replica role: SIGKILL, then start it again a second later
  say "SIGKILL $2 replica $1, restart it"
  on "$1" kill "$2" >/dev/null
  kills=$((kills + 1))
  sleep 1
  on "$1" start "$2" >/dev/null
  on "$1" wait-ready "$2" >/dev/null
}

# scale_in replica role: SIGTERM and wait, as ECS does. The replica must stop
# by itself within the grace period and flush its outbox; its log is kept
# under its own name for the checks.
scale_in() {
  local out log
  say "SIGTERM $2 replica $1 (scale-in)"
  log="$base/$1/$2.log"
  out="$(on "$1" stop "$2")"
  terms=$((terms + 1))
  if [[ $out != *"SIGTERM"* ]]; then
    say "$2 replica $1 did not stop by itself: $out"
    unclean=$((unclean + 1))
  elif ! grep -q '"role stopped"' "$log"; then
    say "$2 replica $1 exited without finishing its shutdown (see $log)"
    unclean=$((unclean + 1))
  elif grep -q 'outbox not fully flushed' "$log"; then
    say "$2 replica $1 left messages in its outbox at shutdown (see $log)"
    unclean=$((unclean + 1))
  fi
  mv "$log" "$log.term$terms"
}

say "fresh databases and vhost"
for db in replicas_orders replicas_inventory replicas_payments; do sql "DROP DATABASE IF EXISTS $db"; done
rabbitmqctl -q delete_vhost dop_replicas >/dev/null 2>&1 || true
rabbitmqctl -q add_vhost dop_replicas >/dev/null
rabbitmqctl -q set_permissions -p dop_replicas guest '.*' '.*' '.*' >/dev/null
"$DOP_BIN" migrate >/dev/null
rm -rf "$base"
on a start all >/dev/null
on b start all >/dev/null
on a wait-ready all >/dev/null
on b wait-ready all >/dev/null

duration=$((rounds * 4 * (settle + 2) + 2 * settle + 10))
say "load: $rate orders/s for ${duration}s over both order replicas; $rounds round(s) of crashes and scale-ins"
"$DOP_BIN" bench --rate "$rate" --duration "${duration}s" --products 10 --stock 1000000 \
  --order-url "http://127.0.0.1:18181,http://127.0.0.1:18184" --inventory-url "http://127.0.0.1:18182" \
  --drain-timeout 240s --timeout 5s --warmup 0s --json >"$base/bench.json" 2>"$base/bench.err" &
bench_pid=$!
sleep "$settle"

for ((r = 1; r <= rounds; r++)); do
  # One replica of each role crashes while the other carries on.
  for role in inventory payment order; do
    crash a "$role"
    sleep "$settle"
  done
  # The other replica of each role is scaled in; all but the last round
  # scale out again, as an autoscaler going back and forth would.
  for role in payment inventory order; do
    scale_in b "$role"
    if ((r < rounds)); then on b start "$role" >/dev/null; fi
  done
  sleep "$settle"
done

say "waiting for the load to end and every saga to finish"
bench_status=0
wait "$bench_pid" || bench_status=$?
bench_pid=
on a wait-ready all >/dev/null

read -r accepted errors pending < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
print(r["ok"], r["errors"], r["sagas"]["pending"])' "$base/bench.json" 2>/dev/null || echo "? ? ?")
if [[ $accepted == "?" ]]; then
  say "the load generator failed (status $bench_status):"; cat "$base/bench.err"; exit 1
fi
outbox_rows() {
  sql "SELECT (SELECT COUNT(*) FROM replicas_orders.outbox) + (SELECT COUNT(*) FROM replicas_inventory.outbox) + (SELECT COUNT(*) FROM replicas_payments.outbox)"
}
# The relay deletes confirmed rows a moment after the confirm: give the
# last ones (and any the sweeper must republish) a bounded while.
for _ in $(seq 1 30); do
  outbox=$(outbox_rows)
  ((outbox == 0)) && break
  sleep 0.5
done
orders=$(sql "SELECT COUNT(*) FROM replicas_orders.orders")
sagas=$(sql "SELECT COUNT(*) FROM replicas_orders.saga_states")
terminal=$(sql "SELECT GROUP_CONCAT(CONCAT(status,'=',n) ORDER BY status SEPARATOR ' ') FROM (SELECT status, COUNT(*) n FROM replicas_orders.saga_states GROUP BY status) t")
in_flight=$(sql "SELECT COUNT(*) FROM replicas_orders.saga_states WHERE status NOT IN ('COMPLETED','COMPENSATED','FAILED')")
# Accepted orders that never got a saga, or a saga never ended: lost.
lost=$((in_flight + orders - sagas))
if ((accepted > orders)); then lost=$((lost + accepted - orders)); fi
double_reserve=$(sql "SELECT COUNT(*) FROM (SELECT order_id FROM replicas_inventory.inventory_logs WHERE action='RESERVE' AND success GROUP BY order_id HAVING COUNT(*) > 1) d")
double_charge=$(sql "SELECT COUNT(*) FROM (SELECT order_id FROM replicas_payments.payments GROUP BY order_id HAVING COUNT(*) > 1) d")
duplicates=$((double_reserve + double_charge))
dead=$(rabbitmqctl -q list_queues -p dop_replicas name messages | awk '$1 ~ /\.dlq$/ { n += $2 } END { print n + 0 }')
audit_status=0
"$DOP_BIN" admin audit --json >"$base/audit.json" 2>"$base/audit.err" || audit_status=$?
violations=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["violations"]))' "$base/audit.json" 2>/dev/null || echo "?")
[[ $violations == "?" ]] && { say "audit failed to run:"; cat "$base/audit.err"; exit 1; }

say "accepted=$accepted refused_or_failed=$errors orders_in_db=$orders sagas: ${terminal:-none} (bench saw $pending pending)"
say "kills=$kills scale_ins=$terms outbox_rows_left=$outbox dead_letters=$dead (logs in $base)"
echo "replicas: lost=$lost duplicates=$duplicates violations=$violations unclean_stops=$unclean"
[[ $lost -eq 0 && $duplicates -eq 0 && $violations -eq 0 && $unclean -eq 0 &&
  $outbox -eq 0 && $dead -eq 0 && $audit_status -eq 0 ]]
