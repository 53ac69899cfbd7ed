# shellcheck shell=bash
# Shared by scripts/chaos.sh and scripts/cluster.sh: after a load run in the
# background (pid in $bench_pid, its JSON in $STACK_DIR/bench.json), wait for
# it and for every role, then count what the run must not have: sagas lost
# (accepted, not terminal), double reserves or charges, audit violations.
# Needs the caller's `say`, `sql`, $STACK_DIR and $DOP_BIN; $1 is the
# databases' prefix (<prefix>_orders, _inventory, _payments). Sets accepted,
# terminal, terminal_n, lost, duplicates, audit_status and violations.
# shellcheck disable=SC2034 # the results are for the caller
settle_and_audit() {
  local db="$1" bench_status=0 double_reserve double_charge
  say "waiting for the load to end and every saga to finish"
  wait "$bench_pid" || bench_status=$?
  bench_pid=
  scripts/stack.sh wait-ready all >/dev/null

  accepted=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ok"])' "$STACK_DIR/bench.json" 2>/dev/null || echo "?")
  if [[ $accepted == "?" ]]; then
    say "the load generator failed (status $bench_status):"; cat "$STACK_DIR/bench.err"; exit 1
  fi
  terminal=$(sql "SELECT GROUP_CONCAT(CONCAT(status,'=',n) ORDER BY status SEPARATOR ' ') FROM (SELECT status, COUNT(*) n FROM ${db}_orders.saga_states WHERE status IN ('COMPLETED','COMPENSATED','FAILED') GROUP BY status) t")
  terminal_n=$(sql "SELECT COUNT(*) FROM ${db}_orders.saga_states WHERE status IN ('COMPLETED','COMPENSATED','FAILED')")
  lost=$((accepted - terminal_n))
  ((lost < 0)) && lost=0
  double_reserve=$(sql "SELECT COUNT(*) FROM (SELECT order_id FROM ${db}_inventory.inventory_logs WHERE action='RESERVE' AND success GROUP BY order_id HAVING COUNT(*) > 1) d")
  double_charge=$(sql "SELECT COUNT(*) FROM (SELECT order_id FROM ${db}_payments.payments GROUP BY order_id HAVING COUNT(*) > 1) d")
  duplicates=$((double_reserve + double_charge))
  audit_status=0
  "$DOP_BIN" admin audit --json >"$STACK_DIR/audit.json" 2>"$STACK_DIR/audit.err" || audit_status=$?
  violations=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["violations"]))' "$STACK_DIR/audit.json" 2>/dev/null || echo "?")
  [[ $violations == "?" ]] && { say "audit failed to run:"; cat "$STACK_DIR/audit.err"; exit 1; }
  return 0
}
