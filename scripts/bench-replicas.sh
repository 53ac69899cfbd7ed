#!/usr/bin/env bash
# What a saga costs, per role and per replica count: runs N replicas of every
# role (separate processes on their own ports, sharing one set of databases
# and one vhost), drives `dop bench` at a fixed rate over every order
# replica, and reports per saga:
#   - CPU time of each role (all its replicas), of mariadbd and of RabbitMQ,
#     from /proc/PID/stat (utime + stime) before and after the run: CPU
#     seconds are what a task or instance must supply, and unlike latency
#     they hold on a shared machine;
#   - the database's work: statements, commits, rows written and read, redo
#     bytes and fsyncs, from SHOW GLOBAL STATUS deltas, minus what the server
#     did in an idle window just before (other users of a shared server, and
#     the idle roles' own polling); and the rows read and changed in this
#     run's own schemas, from MariaDB's user statistics (switched on for the
#     run and back off after), which other users cannot disturb.
#
#   scripts/bench-replicas.sh [--replicas N] [--rate R] [--duration S] [--idle S]
#
#   defaults: 1 replica, 250 orders/s, 30 s of load, 15 s idle baseline
#   The 1,000/s comparison (docs/scaling.md, "One and two replicas"):
#     scripts/bench-replicas.sh --replicas 1 --rate 1000
#     scripts/bench-replicas.sh --replicas 2 --rate 1000
#
# Uses its own databases (replicas_bench_orders, _inventory, _payments), reset
# at each run, its own vhost (dop_replicas_bench) and ports from 18281 (three
# per replica). Needs a release build (target/release/dop, or DOP_BIN). The
# result is printed and saved as JSON in .stack/bench-replicas-results/.
set -euo pipefail
cd "$(dirname "$0")/.."

replicas=1 rate=250 duration=30 idle=15
while (($#)); do
  case "$1" in
    --replicas) replicas="$2"; shift 2 ;;
    --rate) rate="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --idle) idle="$2"; shift 2 ;;
    -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-replicas: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $replicas =~ ^[1-9]$ ]] || { echo "bench-replicas: --replicas takes 1 to 9" >&2; exit 2; }

export DOP_BIN="${DOP_BIN:-$PWD/target/release/dop}"
[[ -x $DOP_BIN ]] || { echo "bench-replicas: no binary at $DOP_BIN (cargo build --release)"; exit 1; }
base="$PWD/.stack/bench-replicas"
export DOP_ORDER__DATABASE_URL=mysql://root@127.0.0.1:3306/replicas_bench_orders
export DOP_INVENTORY__DATABASE_URL=mysql://root@127.0.0.1:3306/replicas_bench_inventory
export DOP_PAYMENT__DATABASE_URL=mysql://root@127.0.0.1:3306/replicas_bench_payments
export RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/dop_replicas_bench
export DOP_ADMIN__TOKEN=bench DOP_LOG_FORMAT=json READY_TIMEOUT=90

say() { printf 'bench-replicas: %s\n' "$*" >&2; }
sql() { mysql -h127.0.0.1 -uroot -N -e "$1"; }

# on REPLICA CMD [ROLE]: scripts/stack.sh for replica number REPLICA (0-based).
on() {
  local r="$1" first
  shift
  first=$((18281 + 3 * r))
  STACK_DIR="$base/r$r" ORDER_PORT=$first INVENTORY_PORT=$((first + 1)) PAYMENT_PORT=$((first + 2)) \
    scripts/stack.sh "$@"
}

userstat_was=""
cleanup() {
  local r
  for ((r = 0; r < replicas; r++)); do on "$r" stop all >/dev/null 2>&1 || true; done
  if [[ -n $userstat_was ]]; then sql "SET GLOBAL userstat = $userstat_was" || true; fi
}
trap cleanup EXIT

# The pids whose CPU is counted, one "name pid" a line.
pids() {
  local r role
  for ((r = 0; r < replicas; r++)); do
    for role in order inventory payment; do
      echo "$role $(cat "$base/r$r/$role.pid")"
    done
  done
  echo "mariadbd $(pgrep -x mariadbd | head -n 1)"
  echo "rabbitmq $rabbit_pid"
}

# cpu_ticks: "name ticks" for every counted process (utime + stime).
cpu_ticks() {
  local name pid
  while read -r name pid; do
    [[ -n $pid ]] || continue
    # Fields 14 and 15 of /proc/PID/stat; the command name (field 2) may
    # hold spaces, so count from the closing parenthesis.
    echo "$name $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')"
  done < <(pids)
}

# db_status: "name value" lines. The server-wide counters (SHOW GLOBAL
# STATUS) count everybody's work; the rows of this run's own schemas come
# from MariaDB's user statistics (TABLE_STATISTICS, userstat on for the run),
# which no other user of the server can disturb.
db_status() {
  sql "SHOW GLOBAL STATUS WHERE Variable_name IN ('Questions','Com_commit','Com_begin','Com_insert','Com_update','Com_delete','Com_delete_multi','Com_select','Innodb_os_log_written','Innodb_data_fsyncs','Handler_commit','Handler_write','Handler_update','Handler_delete','Handler_read_key','Handler_read_next')"
  sql "SELECT 'schema_rows_read', COALESCE(SUM(ROWS_READ), 0) FROM information_schema.TABLE_STATISTICS WHERE TABLE_SCHEMA LIKE 'replicas\\_bench\\_%'
       UNION ALL SELECT 'schema_rows_changed', COALESCE(SUM(ROWS_CHANGED), 0) FROM information_schema.TABLE_STATISTICS WHERE TABLE_SCHEMA LIKE 'replicas\\_bench\\_%'
       UNION ALL SELECT 'schema_index_entries_changed', COALESCE(SUM(ROWS_CHANGED_X_INDEXES), 0) FROM information_schema.TABLE_STATISTICS WHERE TABLE_SCHEMA LIKE 'replicas\\_bench\\_%'"
}

# The main RabbitMQ node's own answer, not a guess among beam.smp processes
# (other nodes may run beside it).
rabbit_pid=$(rabbitmqctl -q eval 'os:getpid().' | tr -dc '0-9')

userstat_was=$(sql "SELECT @@userstat")
sql "SET GLOBAL userstat = ON"

say "fresh databases and vhost; $replicas replica(s) of every role"
for db in replicas_bench_orders replicas_bench_inventory replicas_bench_payments; do sql "DROP DATABASE IF EXISTS $db"; done
rabbitmqctl -q delete_vhost dop_replicas_bench >/dev/null 2>&1 || true
rabbitmqctl -q add_vhost dop_replicas_bench >/dev/null
rabbitmqctl -q set_permissions -p dop_replicas_bench guest '.*' '.*' '.*' >/dev/null
"$DOP_BIN" migrate >/dev/null
rm -rf "$base"
mkdir -p "$base"
urls=()
for ((r = 0; r < replicas; r++)); do
  on "$r" start all >/dev/null
  urls+=("http://127.0.0.1:$((18281 + 3 * r))")
done
for ((r = 0; r < replicas; r++)); do on "$r" wait-ready all >/dev/null; done
order_urls=$(IFS=,; echo "${urls[*]}")

say "idle baseline: ${idle}s"
db_status >"$base/db.0"
cpu_ticks >"$base/cpu.0"
sleep "$idle"
db_status >"$base/db.1"
cpu_ticks >"$base/cpu.1"

say "load: $rate orders/s for ${duration}s over $replicas order replica(s)"
start=$(date +%s.%N)
"$DOP_BIN" bench --rate "$rate" --duration "${duration}s" --products 100 --stock 10000000 \
  --order-url "$order_urls" --inventory-url "http://127.0.0.1:18282" \
  --drain-timeout 120s --json >"$base/bench.json" 2>"$base/bench.err" || true
end=$(date +%s.%N)
db_status >"$base/db.2"
cpu_ticks >"$base/cpu.2"

results="$PWD/.stack/bench-replicas-results"
mkdir -p "$results"
python3 - "$base" "$replicas" "$rate" "$idle" "$start" "$end" "$(getconf CLK_TCK)" "$results" <<'EOF'
import json, sys, time
base, replicas, rate, idle, start, end, hz, results = sys.argv[1:]
replicas, rate, idle, hz = int(replicas), float(rate), float(idle), float(hz)
elapsed = float(end) - float(start)

def table(path):
    out = {}
    for line in open(path):
        parts = line.split()
        if len(parts) == 2:
            out[parts[0]] = out.get(parts[0], 0) + float(parts[1])
    return out

bench = json.load(open(f"{base}/bench.json"))
sagas = bench["sagas"]["created"]
if sagas == 0:
    sys.exit("bench-replicas: no saga was created; see " + base + "/bench.err")
db0, db1, db2 = (table(f"{base}/db.{i}") for i in range(3))
c0, c1, c2 = (table(f"{base}/cpu.{i}") for i in range(3))
# The run's own work: its delta minus the idle window's rate over the run.
def net(a0, a1, a2, k):
    idle_rate = (a1.get(k, 0) - a0.get(k, 0)) / idle
    return (a2.get(k, 0) - a1.get(k, 0)) - idle_rate * elapsed

cpu = {k: net(c0, c1, c2, k) / hz for k in c2}
db = {k: net(db0, db1, db2, k) for k in db2}
result = {
    "replicas": replicas, "rate": rate, "sagas": sagas, "elapsed_s": round(elapsed, 1),
    "accepted": bench["ok"], "errors": bench["errors"],
    "post_p99_ms": bench["latency"].get("p99_ms"), "saga_p99_ms": bench["sagas"]["duration"].get("p99_ms"),
    "drained": bench["sagas"]["drained"], "audit_clean": bench["audit"]["clean"],
    "cpu_ms_per_saga": {k: round(1000 * v / sagas, 3) for k, v in cpu.items()},
    "db_per_saga": {k: round(v / sagas, 2) for k, v in db.items()},
}
print(f"{replicas} replica(s) per role, {rate:g} orders/s: {sagas} sagas in {elapsed:.1f} s "
      f"(accepted {bench['ok']}, errors {bench['errors']}, drained {bench['sagas']['drained']}, "
      f"audit clean {bench['audit']['clean']})")
print(f"POST p99 {result['post_p99_ms']} ms, saga p99 {result['saga_p99_ms']} ms")
print("CPU ms per saga: " + ", ".join(f"{k} {v:.3f}" for k, v in result["cpu_ms_per_saga"].items()))
print("database per saga (idle window subtracted): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(result["db_per_saga"].items())))
noise = {k: round((db1.get(k, 0) - db0.get(k, 0)) / idle, 1) for k in ("Questions", "Com_commit", "Innodb_os_log_written")}
result["idle_window_per_s"] = noise
out = f"{results}/{time.strftime('%Y%m%dT%H%M%S')}-{replicas}x-{int(rate)}.json"
json.dump(result, open(out, "w"), indent=1)
print(f"saved {out}")
print("server-wide in the idle window, per second (others' work shows here): " + ", ".join(f"{k} {v}" for k, v in noise.items()))
EOF
