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
#   scripts/chaos.sh --deadline      the payment role stopped for longer than
#                                    saga.step_timeout under load (~1.5 minutes)
#   scripts/chaos.sh --deadline --short   its short form (~40 s; the test suite)
#
# --deadline restarts neither RabbitMQ nor MariaDB. The sagas whose payment
# waited past the deadline compensate (timeline row saga.timed_out) and, when
# the payment role returns, none of them is charged (timed_out_charged=0).
#
# Uses its own databases (chaos_orders, chaos_inventory, chaos_payments), its
# own RabbitMQ vhost (dop_chaos) and ports 18081-18083, so a dev stack on the
# default ports is left alone; CHAOS_NAME (chaos) and CHAOS_PORT_BASE (18080)
# change them. Needs target/release/dop (or DOP_BIN).
# The last line is the verdict; exit status 1 unless lost=0 duplicates=0
# violations=0 (and, with --deadline, timed_out>0 timed_out_charged=0).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3 rate=40 settle=4 mode=kills short=0
for arg in "$@"; do
  case $arg in
    --short) short=1 ;;
    --deadline) mode=deadline ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "chaos: unknown argument $arg (see --help)"; exit 2 ;;
  esac
done
if ((short)); then rounds=1 rate=30 settle=3; fi
# --deadline: the payment role stays down this long, past the step timeout.
step_timeout=3 outage=12
if ((short)); then outage=8; fi

export DOP_BIN="${DOP_BIN:-$PWD/target/release/dop}"
[[ -x $DOP_BIN ]] || { echo "chaos: no binary at $DOP_BIN (cargo build --release)"; exit 1; }
name="${CHAOS_NAME:-chaos}" base="${CHAOS_PORT_BASE:-18080}"
export STACK_DIR="$PWD/.stack/$name"
export ORDER_PORT=$((base + 1)) INVENTORY_PORT=$((base + 2)) PAYMENT_PORT=$((base + 3))
export DOP_ORDER__DATABASE_URL=mysql://root@127.0.0.1:3306/${name}_orders
export DOP_INVENTORY__DATABASE_URL=mysql://root@127.0.0.1:3306/${name}_inventory
export DOP_PAYMENT__DATABASE_URL=mysql://root@127.0.0.1:3306/${name}_payments
export RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/dop_$name
export PAYMENT_FAILURE_RATE=0.3
if [[ $mode == deadline ]]; then
  # Every saga would complete but for the outage: what compensates, did so
  # because of the deadline.
  export PAYMENT_FAILURE_RATE=0
  export DOP_SAGA__STEP_TIMEOUT=${step_timeout}s DOP_SAGA__DEADLINE=60s DOP_SAGA__CHECK_INTERVAL=1s
fi
export DOP_RECOVERY__INTERVAL=3s DOP_RECOVERY__STUCK_AFTER=5s DOP_RETRY__DELAY=500ms DOP_RETRY__MAX_ATTEMPTS=20
export DOP_ADMIN__TOKEN=chaos DOP_LOG_FORMAT=json
export READY_TIMEOUT=90

say() { printf 'chaos: %s\n' "$*"; }
sql() { mysql -h127.0.0.1 -uroot -N -e "$1"; }
# shellcheck source=scripts/lib/settle.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/settle.sh"
kills=0 broker_restarts=0 db_restarts=0

cleanup() {
  scripts/stack.sh stop all >/dev/null 2>&1 || true
  if [[ -n ${bench_pid:-} ]]; then kill "$bench_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

say "fresh databases and vhost"
for db in "${name}_orders" "${name}_inventory" "${name}_payments"; do sql "DROP DATABASE IF EXISTS $db"; done
rabbitmqctl -q delete_vhost "dop_$name" >/dev/null 2>&1 || true
rabbitmqctl -q add_vhost "dop_$name" >/dev/null
rabbitmqctl -q set_permissions -p "dop_$name" guest '.*' '.*' '.*' >/dev/null
"$DOP_BIN" migrate >/dev/null
rm -rf "$STACK_DIR"
scripts/stack.sh start all >/dev/null
scripts/stack.sh wait-ready all >/dev/null

duration=$((rounds * 3 * (settle + 2) + 2 * settle + 20))
if [[ $mode == deadline ]]; then
  duration=$((2 * settle + outage + 10))
  say "load: $rate orders/s for ${duration}s over 10 products; the payment role down ${outage}s (saga.step_timeout ${step_timeout}s)"
else
  say "load: $rate orders/s for ${duration}s over 10 products; $rounds kill round(s) of each role, one broker and one database restart"
fi
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

deadline_outage() {
  say "stopping the payment role for ${outage}s"
  scripts/stack.sh stop payment >/dev/null
  sleep "$outage"
  say "starting the payment role again"
  scripts/stack.sh start payment >/dev/null
}

disrupt() {
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
}

if [[ $mode == deadline ]]; then deadline_outage; else disrupt; fi

settle_and_audit "$name"
orders=$(sql "SELECT COUNT(*) FROM ${name}_orders.orders")

say "accepted=$accepted orders_in_db=$orders terminal: ${terminal:-none}"
if [[ $mode == deadline ]]; then
  # Sagas the deadline interrupted, and how many of their orders were
  # charged anyway (the barrier says none: the payment role was down for
  # longer than the step timeout, so their payment.process had expired).
  timed_out=$(sql "SELECT COUNT(DISTINCT saga_id) FROM ${name}_orders.saga_events WHERE event='saga.timed_out'")
  timed_out_charged=$(sql "SELECT COUNT(*) FROM ${name}_orders.saga_events e JOIN ${name}_orders.saga_states s ON s.saga_id = e.saga_id JOIN ${name}_payments.payments p ON p.order_id = s.order_id WHERE e.event='saga.timed_out' AND p.status='SUCCESS'")
  cancelled=$(sql "SELECT COUNT(*) FROM ${name}_payments.payments WHERE status='CANCELLED'")
  say "timed out: $timed_out sagas; payments CANCELLED: $cancelled (logs in $STACK_DIR)"
  echo "chaos: lost=$lost duplicates=$duplicates violations=$violations timed_out=$timed_out timed_out_charged=$timed_out_charged"
  [[ $lost -eq 0 && $duplicates -eq 0 && $violations -eq 0 && $audit_status -eq 0 && $timed_out -gt 0 && $timed_out_charged -eq 0 ]]
  exit
fi
say "kills=$kills broker_restarts=$broker_restarts db_restarts=$db_restarts (logs in $STACK_DIR)"
echo "chaos: lost=$lost duplicates=$duplicates violations=$violations"
[[ $lost -eq 0 && $duplicates -eq 0 && $violations -eq 0 && $audit_status -eq 0 ]]
