#!/usr/bin/env bash
# The aging benchmark (docs/benchmarks.md, "Aged databases"): fill empty
# databases with history, then measure dop at a fixed rate on them, and
# optionally soak: one-minute windows back to back, each with its latency,
# and the resident memory of every role after it.
#
#   scripts/bench-aged.sh [--days 2] [--age-rate 58] [--rate 1000]
#                         [--duration 30s] [--soak-minutes 0] [--skip-age]
#                         [--out DIR]
#
# --days × --age-rate × 86,400 sagas of history (the defaults: ten
# million). --skip-age measures on the databases as they are. The roles run
# as local processes (scripts/stack.sh, DOP_BIN, default the release build);
# the databases are the default ones and are dropped first unless
# --skip-age. The invariant audit is skipped: it reads every row into
# memory. The roles log at DOP_LOG=warn unless set. Results: DIR/age.json, DIR/rate.json, DIR/soak.jsonl (default
# DIR .stack/bench-aged).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"
export DOP_BIN="${DOP_BIN:-$REPO_ROOT/target/release/dop}"
# As every benchmark of docs/benchmarks.md: warnings only (at INFO each saga
# writes five JSON lines, about 1.5 MB/s at 1,000 orders/s).
export DOP_LOG="${DOP_LOG:-warn}"
days=2
age_rate=58
rate=1000
duration=30s
soak=0
skip_age=0
out="$REPO_ROOT/.stack/bench-aged"

while [ $# -gt 0 ]; do
    case "$1" in
        --days) days="$2"; shift 2 ;;
        --age-rate) age_rate="$2"; shift 2 ;;
        --rate) rate="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --soak-minutes) soak="$2"; shift 2 ;;
        --skip-age) skip_age=1; shift ;;
        --out) out="$2"; shift 2 ;;
        *) echo "bench-aged: unknown argument $1" >&2; exit 2 ;;
    esac
done
case "$soak" in ''|*[!0-9]*) echo "bench-aged: --soak-minutes takes a whole number" >&2; exit 2 ;; esac
[ -x "$DOP_BIN" ] || { echo "bench-aged: no binary at $DOP_BIN (cargo build --release)" >&2; exit 1; }
mkdir -p "$out"

mysql_show() {
    mysql -h "${DB_HOST:-127.0.0.1}" -P "${DB_PORT:-3306}" -u "${DB_USER:-root}" \
        ${DB_PASS:+-p"$DB_PASS"} -N -e "SHOW GLOBAL $1 LIKE '$2'" | awk '{print $2}'
}
mysql_status() { mysql_show STATUS "$1"; }

rss_json() {
    local first=1 role pid kb
    printf '{'
    for role in order inventory payment; do
        pid="$(cat ".stack/$role.pid" 2>/dev/null || true)"
        kb="$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)"
        [ "$first" = 1 ] || printf ','
        first=0
        printf '"%s_rss_kb":%s' "$role" "${kb:-0}"
    done
    printf '}'
}

scripts/stack.sh stop all >/dev/null 2>&1 || true
if [ "$skip_age" = 0 ]; then
    scripts/stack.sh reset-db
    echo "bench-aged: ageing: $days days at $age_rate orders/s" >&2
    "$DOP_BIN" bench --mode age --days "$days" --rate "$age_rate" --json >"$out/age.json"
    jq -r '.tables[] | "\(.database).\(.table): ~\(.rows) rows, \(.data_bytes / 1048576 | floor) MiB data, \(.index_bytes / 1048576 | floor) MiB indexes"' "$out/age.json" >&2
fi
# The two InnoDB settings the results depend on most, recorded with them.
jq -nc --argjson pool "$(mysql_show VARIABLES innodb_buffer_pool_size)" \
    --argjson redo "$(mysql_show VARIABLES innodb_log_file_size)" \
    '{innodb_buffer_pool_mib: ($pool / 1048576), innodb_redo_log_mib: ($redo / 1048576)}' | tee "$out/settings.json"
scripts/stack.sh start all
scripts/stack.sh wait-ready all

reads_before="$(mysql_status Innodb_buffer_pool_reads)"
"$DOP_BIN" bench --rate "$rate" --duration "$duration" --no-audit --json >"$out/rate.json" || true
reads_after="$(mysql_status Innodb_buffer_pool_reads)"
jq -c --argjson reads "$((reads_after - reads_before))" \
    '{sent, ok, errors, accepted_per_s, completed_per_s: .sagas.completed_per_s, max_backlog: .sagas.max_backlog, post_p99_ms: .latency.p99_ms, saga_p99_ms: .sagas.duration.p99_ms, drained: .sagas.drained, innodb_disk_reads: $reads}' \
    "$out/rate.json"

: >"$out/soak.jsonl"
for i in $(seq 1 "$soak"); do
    reads_before="$(mysql_status Innodb_buffer_pool_reads)"
    "$DOP_BIN" bench --rate "$rate" --duration 60s --no-audit --json >"$out/soak-$i.json" || true
    reads_after="$(mysql_status Innodb_buffer_pool_reads)"
    # Checkpoint age near its maximum means InnoDB is flushing to make room in
    # the redo log, which stalls writers: sampled at the end of each window.
    ckpt="$(mysql_status Innodb_checkpoint_age)"
    jq -c --argjson i "$i" --argjson reads "$((reads_after - reads_before))" --argjson rss "$(rss_json)" \
        --argjson ckpt "${ckpt:-0}" \
        '{minute: $i, sent, ok, errors, completed_per_s: .sagas.completed_per_s, max_backlog: .sagas.max_backlog, post_p50_ms: .latency.p50_ms, post_p99_ms: .latency.p99_ms, post_max_ms: .latency.max_ms, saga_p99_ms: .sagas.duration.p99_ms, drained: .sagas.drained, innodb_disk_reads: $reads, checkpoint_age_mib: (($ckpt / 1048576) * 10 | floor / 10)} + $rss' \
        "$out/soak-$i.json" | tee -a "$out/soak.jsonl"
done
scripts/stack.sh stop all
