#!/usr/bin/env bash
# The clustered-broker run: three RabbitMQ nodes of their own on this
# machine (dopc1..3@localhost, AMQP 19672-19674, data under a temp dir, no
# management plugin), joined into one cluster; dop's three roles with
# rabbitmq.queue_type = quorum and rabbitmq.urls naming the three nodes,
# under a steady stream of orders (PAYMENT_FAILURE_RATE 0.3). Mid-load a
# node is stopped (`rabbitmqctl stop`: the whole node, not just the app)
# and started again; sagas must keep ending while it is down. Then it waits
# for every saga to end and checks: lost (accepted, never terminal),
# duplicates (double reserve, double charge), audit violations, and that
# every queue is a quorum queue.
#
#   scripts/cluster.sh           the short run the test suite uses (~3 minutes):
#                                the node the roles are connected to, once
#   scripts/cluster.sh --long    each of the three nodes in turn (~5 minutes)
#   CLUSTER_QUEUE_TYPE=classic scripts/cluster.sh    the same with classic
#                                queues, to see what quorum buys (it fails)
#
# Uses its own databases (cluster_orders, cluster_inventory,
# cluster_payments), ports 19381-19383 for the roles, 19672-19674 (AMQP) and
# 19772-19774 (Erlang distribution) for the nodes; the shared broker
# (rabbit@localhost, 5672) is left alone. Needs target/release/dop (or
# DOP_BIN). Bounded in time; stops its nodes and roles when it ends. The
# last line is the verdict; exit status 1 unless lost=0 duplicates=0
# violations=0, every queue is quorum and no node stop stalled the sagas.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=1 rate=30 settle=8
if [[ ${1:-} == --long ]]; then rounds=3 rate=40 settle=12; fi
if [[ ${1:-} == -h || ${1:-} == --help ]]; then sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0; fi

export DOP_BIN="${DOP_BIN:-$PWD/target/release/dop}"
[[ -x $DOP_BIN ]] || { echo "cluster: no binary at $DOP_BIN (cargo build --release)"; exit 1; }
export STACK_DIR="$PWD/.stack/cluster"
export ORDER_PORT=19381 INVENTORY_PORT=19382 PAYMENT_PORT=19383
export DOP_ORDER__DATABASE_URL=mysql://root@127.0.0.1:3306/cluster_orders
export DOP_INVENTORY__DATABASE_URL=mysql://root@127.0.0.1:3306/cluster_inventory
export DOP_PAYMENT__DATABASE_URL=mysql://root@127.0.0.1:3306/cluster_payments
vhost=dop_cluster
amqp_ports=(19672 19673 19674)
urls=""
for p in "${amqp_ports[@]}"; do urls+="${urls:+,}amqp://guest:guest@127.0.0.1:$p/$vhost"; done
# CLUSTER_QUEUE_TYPE=classic shows what quorum queues buy: the run fails.
queue_type=${CLUSTER_QUEUE_TYPE:-quorum}
export DOP_RABBITMQ__URLS="$urls" DOP_RABBITMQ__QUEUE_TYPE="$queue_type"
unset RABBITMQ_URL DOP_RABBITMQ__URL
export PAYMENT_FAILURE_RATE=0.3
export DOP_RECOVERY__INTERVAL=3s DOP_RECOVERY__STUCK_AFTER=5s DOP_RETRY__DELAY=500ms DOP_RETRY__MAX_ATTEMPTS=20
export DOP_ADMIN__TOKEN=cluster DOP_LOG_FORMAT=json
export READY_TIMEOUT=120

say() { printf 'cluster: %s\n' "$*"; }
sql() { mysql -h127.0.0.1 -uroot -N -e "$1"; }
# shellcheck source=scripts/lib/settle.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/settle.sh"
node() { echo "dopc$1@localhost"; }
ctl() { # node-number rabbitmqctl-args...
  local n=$1
  shift
  rabbitmqctl -q -n "$(node "$n")" "$@"
}

work=$(mktemp -d /tmp/dop-cluster.XXXXXX)
chmod 755 "$work"
cleanup() {
  scripts/stack.sh stop all >/dev/null 2>&1 || true
  if [[ -n ${bench_pid:-} ]]; then kill "$bench_pid" 2>/dev/null || true; fi
  for n in 1 2 3; do ctl "$n" stop >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# start_node N: its own name, ports, config, data and log dirs, no plugins.
# The nodes run as the rabbitmq user (rabbitmq-server switches to it), so
# they and rabbitmqctl share that user's Erlang cookie.
start_node() {
  local n=$1 dir="$work/n$1"
  mkdir -p "$dir"
  printf 'listeners.tcp.local = 127.0.0.1:%s\n' "${amqp_ports[n - 1]}" >"$dir/rabbitmq.conf"
  echo '[].' >"$dir/enabled_plugins"
  chown -R rabbitmq:rabbitmq "$dir"
  RABBITMQ_NODENAME="$(node "$n")" RABBITMQ_NODE_PORT="${amqp_ports[n - 1]}" \
    RABBITMQ_DIST_PORT=$((19771 + n)) RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
    RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
    rabbitmq-server -detached >/dev/null 2>&1
}

# await_node N: until the node runs (bounded).
await_node() {
  for _ in $(seq 1 60); do
    if ctl "$1" await_startup --timeout 5 >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  say "node $(node "$1") did not start; its log:"
  tail -n 30 "$work/n$1/log/"*.log 2>/dev/null || true
  return 1
}

# Nodes of these names left by a run that was killed are stopped; a port
# held by anything else stops the run.
for n in 1 2 3; do ctl "$n" stop >/dev/null 2>&1 || true; done
for p in "${amqp_ports[@]}" 19772 19773 19774; do
  if ss -ltn "sport = :$p" | grep -q LISTEN; then say "port $p is in use (see: ss -ltnp)"; exit 1; fi
done
say "three RabbitMQ nodes in $work"
for n in 1 2 3; do start_node "$n"; done
for n in 1 2 3; do await_node "$n"; done
for n in 2 3; do
  # join_cluster prints harmless errors about tables of a stopped app; its
  # output is shown only when it fails.
  for step in stop_app "join_cluster $(node 1)" start_app; do
    # shellcheck disable=SC2086 # the step's words are separate arguments
    ctl "$n" $step >"$work/join.out" 2>&1 || { say "rabbitmqctl $step on $(node "$n") failed:"; cat "$work/join.out"; exit 1; }
  done
done
members=$(ctl 1 cluster_status --formatter json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))')
[[ $members == 3 ]] || { say "the cluster has $members running nodes, not 3"; exit 1; }
ctl 1 add_vhost "$vhost" >/dev/null
ctl 1 set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null

say "fresh databases; roles on ports $ORDER_PORT-$PAYMENT_PORT with $queue_type queues and three broker addresses"
for db in cluster_orders cluster_inventory cluster_payments; do sql "DROP DATABASE IF EXISTS $db"; done
"$DOP_BIN" migrate >/dev/null
rm -rf "$STACK_DIR"
scripts/stack.sh start all >/dev/null
scripts/stack.sh wait-ready all >/dev/null

duration=$((rounds * (2 * settle + 15) + 2 * settle))
say "load: $rate orders/s for ${duration}s over 10 products; $rounds node stop(s)"
"$DOP_BIN" bench --rate "$rate" --duration "${duration}s" --products 10 --stock 1000000 \
  --order-url "http://127.0.0.1:$ORDER_PORT" --inventory-url "http://127.0.0.1:$INVENTORY_PORT" \
  --drain-timeout 240s --timeout 5s --warmup 0s --json >"$STACK_DIR/bench.json" 2>"$STACK_DIR/bench.err" &
bench_pid=$!
sleep "$settle"

terminal_now() { sql "SELECT COUNT(*) FROM cluster_orders.saga_states WHERE status IN ('COMPLETED','COMPENSATED','FAILED')"; }
stops=0 stalled=0
for ((r = 1; r <= rounds; r++)); do
  # Round 1 stops the node every role is connected to (the first address);
  # the next rounds the node they moved on to.
  n=$(((r - 1) % 3 + 1))
  say "round $r: stopping $(node "$n")"
  ctl "$n" stop
  stops=$((stops + 1))
  # With quorum queues the other two nodes keep serving: sagas must end
  # while the node is down (classic queues on it would stall them).
  sleep 3
  before=$(terminal_now)
  sleep "$((settle - 3))"
  after=$(terminal_now)
  say "round $r: $((after - before)) sagas ended while $(node "$n") was down"
  ((after > before)) || stalled=$((stalled + 1))
  say "round $r: starting $(node "$n") again"
  start_node "$n"
  await_node "$n"
  sleep "$settle"
done

settle_and_audit cluster
not_quorum=$(ctl 1 list_queues -p "$vhost" name type --formatter json |
  python3 -c 'import json,sys; q=json.load(sys.stdin); print(max(0, 9 - len(q)) + sum(1 for x in q if x["type"] != "quorum"))')

say "accepted=$accepted terminal: ${terminal:-none}"
say "node stops=$stops, of which with no saga ending meanwhile=$stalled; queues not quorum (or missing)=$not_quorum (role logs in $STACK_DIR)"
echo "cluster: lost=$lost duplicates=$duplicates violations=$violations"
[[ $lost -eq 0 && $duplicates -eq 0 && $violations -eq 0 && $audit_status -eq 0 && $not_quorum -eq 0 && $stalled -eq 0 ]]
