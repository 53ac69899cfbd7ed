#!/usr/bin/env bash
# Runs the five scenario scripts against a local stack and prints a summary.
#
#   scripts/run-all-tests.sh                  starts the roles that are not running
#                                             (scripts/stack.sh), runs the scenarios,
#                                             stops what it started
#   STACK_RUNNING=1 scripts/run-all-tests.sh  uses the stack as it is (e.g. compose,
#                                             or `dop serve --role all`); combine with
#                                             SKIP_RESTART=1 / SKIP_CRASH=1 when
#                                             scripts/stack.sh cannot restart roles
#   DOP_STACK=compose                         `docker compose up -d` the whole stack
#                                             instead, and leave it running
#   RESET_DB=1                                drop the three databases before starting
#                                             (only when this script starts every role)
#   ONLY="happy-path concurrent-orders"       run a subset
#
# Exits non-zero when any scenario failed. The last line reads
# "N passed, N failed" (scenarios).
set -euo pipefail

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STACK="$SCRIPTS_DIR/stack.sh"
SCENARIOS=(happy-path insufficient-stock payment-failure crash-recovery concurrent-orders)
if [[ -n "${ONLY:-}" ]]; then
    read -r -a SCENARIOS <<<"$ONLY"
fi
if [[ "${SKIP_CRASH:-0}" == 1 ]]; then
    kept=()
    for s in "${SCENARIOS[@]}"; do
        [[ "$s" == crash-recovery ]] || kept+=("$s")
    done
    SCENARIOS=("${kept[@]}")
fi

STARTED=()

# shellcheck disable=SC2317  # run by the EXIT trap
stop_started() {
    local role
    for role in "${STARTED[@]}"; do
        "$STACK" stop "$role" || true
    done
    STARTED=()
}
trap stop_started EXIT
trap 'exit 130' INT TERM

if [[ "${STACK_RUNNING:-0}" != 1 && "${DOP_STACK:-local}" == compose ]]; then
    # compose: bring the whole stack up (idempotent) and leave it running.
    "$STACK" start all
    "$STACK" wait-ready all
elif [[ "${STACK_RUNNING:-0}" != 1 ]]; then
    running="$("$STACK" status | awk 'NR > 1 && $2 != "-" { print $1 }')"
    for role in order inventory payment; do
        if ! grep -qx "$role" <<<"$running"; then
            STARTED+=("$role")
        fi
    done
    if [[ "${RESET_DB:-0}" == 1 ]]; then
        if ((${#STARTED[@]} == 3)); then
            "$STACK" reset-db
        else
            echo "RESET_DB=1 ignored: some roles are already running" >&2
        fi
    fi
    # Scenarios need every payment to succeed unless they change it themselves.
    export PAYMENT_FAILURE_RATE=0.0
    for role in "${STARTED[@]}"; do
        "$STACK" start "$role"
    done
    "$STACK" wait-ready all
fi

results=()
passed=0
failed=0
for name in "${SCENARIOS[@]}"; do
    script="$SCRIPTS_DIR/test-$name.sh"
    if [[ ! -x "$script" ]]; then
        echo "no such scenario: $name ($script)" >&2
        results+=("FAIL  $name (missing)")
        failed=$((failed + 1))
        continue
    fi
    echo
    start=$SECONDS
    if "$script"; then
        results+=("PASS  $name ($((SECONDS - start))s)")
        passed=$((passed + 1))
    else
        results+=("FAIL  $name ($((SECONDS - start))s)")
        failed=$((failed + 1))
    fi
done

echo
echo "== summary =="
printf '%s\n' "${results[@]}"
echo "scenarios: $passed passed, $failed failed"
((failed == 0))
