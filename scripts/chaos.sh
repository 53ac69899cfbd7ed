#!/usr/bin/env bash
# The chaos run: three dop role processes under a steady stream of orders
# (PAYMENT_FAILURE_RATE 0.3, several products) while each role is SIGKILLed
# and restarted several times, RabbitMQ is restarted (stop_app/start_app) and
# MariaDB is restarted once. Then it waits for every saga to end and checks:
# orders accepted, terminal by status, lost (accepted, never terminal),
# duplicates (double reserve, double charge) and invariant violations.
# Loopback only, bounded in time; it stops by itself.
#
#   scripts/chaos.sh                 the full run (about 3 minutes)
#   scripts/chaos.sh --short         the short run the test suite uses (~1 minute)
#
# Uses its own databases (chaos_orders, chaos_inventory, chaos_payments), its
# own RabbitMQ vhost (dop_chaos) and ports 18081-18083, so a dev stack on the
# default ports is left alone. Needs target/release/dop (or DOP_BIN).
# The last line is the verdict; exit status 1 unless lost=0 duplicates=0
# violations=0.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 rate=40 settle=4
if [[ ${1:-} == --short ]]; then rounds=1 rate=30 settle=3; fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi

export DOP_BIN="${DOP_BIN:-$PWD/target/release/dop}"
[[ -x $DOP_BIN ]] || { echo "chaos: no binary at $DOP_BIN (cargo build --release)"; exit 1; }
export STACK_DIR="$PWD/.stack/chaos"
export ORDER_PORT=18081 INVENTORY_PORT=18082 PAYMENT_PORT=18083
export DOP_ORDER__DATABASE_URL=mysql://root@127.0.0.1:3306/chaos_orders
export DOP_INVENTORY__DATABASE_URL=mysql://root@127.0.0.1:3306/chaos_inventory
export DOP_PAYMENT__DATABASE_URL=mysql://root@127.0.0.1:3306/chaos_payments
export RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/dop_chaos
export PAYMENT_FAILURE_RATE=0.3
export DOP_RECOVERY__INTERVAL=3s DOP_RECOVERY__STUCK_AFTER=5s DOP_RETRY__DELAY=500ms DOP_RETRY__MAX_ATTEMPTS=20
export DOP_ADMIN__TOKEN=chaos DOP_LOG_FORMAT=json
export READY_TIMEOUT=90

say() { printf 'chaos: %s\n' "$*"; }
sql() { mysql -h127.0.0.1 -uroot -N -e "$1"; }
kills=0 broker_restarts=0 db_restarts=0

cleanup() {
  scripts/stack.sh stop all >/dev/null 2>&1 || true
  if [[ -n ${bench_pid:-} ]]; then kill "$bench_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

say "fresh databases and vhost"
for db in chaos_orders chaos_inventory chaos_payments; do sql "DROP DATABASE IF EXISTS $db"; done
rabbitmqctl -q delete_vhost dop_chaos >/dev/null 2>&1 || true
rabbitmqctl -q add_vhost dop_chaos >/dev/null
rabbitmqctl -q set_permissions -p dop_chaos guest '.*' '.*' '.*' >/dev/null
"$DOP_BIN" migrate >/dev/null
rm -rf "$STACK_DIR"
scripts/stack.sh start all >/dev/null
scripts/stack.sh wait-ready all >/dev/null

duration=$((rounds * 3 * (settle + 2) + 2 * settle + 20))
say "load: $rate orders/s for ${duration}s over 10 products; $rounds kill round(s) of each role, one broker and one database restart"
"$DOP_BIN" bench --rate "$rate" --duration "${duration}s" --products 10 --stock 1000000 \
  --order-url "http://127.0.0.1:$ORDER_PORT" --inventory-url "http://127.0.0.1:$INVENTORY_PORT" \
  --drain-timeout 240s --timeout 5s --warmup 0s --json >"$STACK_DIR/bench.json" 2>"$STACK_DIR/bench.err" &
bench_pid=$!
sleep "$settle"

restart_role() { # role
  scripts/stack.sh kill "$1" >/dev/null
  kills=$((kills + 1))
  sleep 1
  scripts/stack.sh start "$1" >/dev/null
}

for ((r = 1; r <= rounds; r++)); do
  for role in inventory payment order; do
    say "round $r: SIGKILL $role"
    restart_role "$role"
    sleep "$settle"
  done
done
say "restarting RabbitMQ (stop_app / start_app)"
rabbitmqctl -q stop_app
sleep 3
rabbitmqctl -q start_app
broker_restarts=1
sleep "$settle"
say "restarting MariaDB"
mysqladmin -h127.0.0.1 -uroot shutdown
for _ in $(seq 1 120); do pgrep -x mariadbd >/dev/null || break; sleep 0.5; done
start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
for _ in $(seq 1 120); do mysqladmin -h127.0.0.1 -uroot ping >/dev/null 2>&1 && break; sleep 0.5; done
sql "SET GLOBAL max_connections = GREATEST(@@max_connections, 2000)"
db_restarts=1
scripts/stack.sh start all >/dev/null # any role that gave up comes back

say "waiting for the load to end and every saga to finish"
bench_status=0
wait "$bench_pid" || bench_status=$?
bench_pid=
scripts/stack.sh wait-ready all >/dev/null

accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$STACK_DIR/bench.json" 2>/dev/null || echo "?")
if [[ $accepted == "?" ]]; then
  say "the load generator failed (status $bench_status):"; cat "$STACK_DIR/bench.err"; exit 1
fi
orders=$(sql "SELECT COUNT(*) FROM chaos_orders.orders")
terminal=$(sql "SELECT GROUP_CONCAT(CONCAT(status,'=',n) ORDER BY status SEPARATOR ' ') FROM (SELECT status, COUNT(*) n FROM chaos_orders.saga_states WHERE status IN ('COMPLETED','COMPENSATED','FAILED') GROUP BY status) t")
terminal_n=$(sql "SELECT COUNT(*) FROM chaos_orders.saga_states WHERE status IN ('COMPLETED','COMPENSATED','FAILED')")
lost=$((accepted - terminal_n))
((lost < 0)) && lost=0
double_reserve=$(sql "SELECT COUNT(*) FROM (SELECT order_id FROM chaos_inventory.inventory_logs WHERE action='RESERVE' AND success GROUP BY order_id HAVING COUNT(*) > 1) d")
double_charge=$(sql "SELECT COUNT(*) FROM (SELECT order_id FROM chaos_payments.payments GROUP BY order_id HAVING COUNT(*) > 1) d")
duplicates=$((double_reserve + double_charge))
audit_status=0
"$DOP_BIN" admin audit --json >"$STACK_DIR/audit.json" 2>"$STACK_DIR/audit.err" || audit_status=$?
violations=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["violations"]))' "$STACK_DIR/audit.json" 2>/dev/null || echo "?")
[[ $violations == "?" ]] && { say "audit failed to run:"; cat "$STACK_DIR/audit.err"; exit 1; }

say "accepted=$accepted orders_in_db=$orders terminal: ${terminal:-none}"
say "kills=$kills broker_restarts=$broker_restarts db_restarts=$db_restarts (logs in $STACK_DIR)"
echo "chaos: lost=$lost duplicates=$duplicates violations=$violations"
[[ $lost -eq 0 && $duplicates -eq 0 && $violations -eq 0 && $audit_status -eq 0 ]]
