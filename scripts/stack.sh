#!/usr/bin/env bash
# Run dop's three roles as local processes (no Docker), one process per role,
# or drive the docker compose stack when DOP_STACK=compose.
#
#   scripts/stack.sh start [order|inventory|payment|all]   (default all)
#   scripts/stack.sh stop [order|inventory|payment|all]    SIGTERM, wait, then SIGKILL
#   scripts/stack.sh kill ROLE                             SIGKILL (a crash)
#   scripts/stack.sh restart ROLE|all
#   scripts/stack.sh status
#   scripts/stack.sh logs ROLE [-f]
#   scripts/stack.sh wait-ready [ROLE|all]                 poll GET /ready until a deadline
#   scripts/stack.sh reset-db                              drop the three databases (local mode)
#
# Local mode: each role runs `$DOP_BIN serve --role R $DOP_SERVE_ARGS` from the
# repository root, inheriting this shell's environment, so
#   PAYMENT_FAILURE_RATE=1.0 scripts/stack.sh restart payment
# restarts payment with every payment failing. Logs and pid files live in
# .stack/ (R.log, R.pid).
#
# Environment:
#   DOP_BIN          binary (default target/release/dop)
#   DOP_SERVE_ARGS   extra arguments for `dop serve` (e.g. "--log-format pretty")
#   DOP_STACK        "local" (default) or "compose"
#   COMPOSE_FILE     compose file for DOP_STACK=compose (default deploy/docker-compose.yml)
#   READY_TIMEOUT    wait-ready deadline in seconds (default 60)
#   STOP_TIMEOUT     seconds to wait after SIGTERM before SIGKILL (default 30)
#   ORDER_PORT, INVENTORY_PORT, PAYMENT_PORT   as dop reads them (8081-8083)
#   DB_HOST, DB_PORT, DB_USER, DB_PASS         for reset-db (127.0.0.1, 3306, root, none)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STACK_DIR="${STACK_DIR:-$REPO_ROOT/.stack}"
DOP_BIN="${DOP_BIN:-$REPO_ROOT/target/release/dop}"
DOP_STACK="${DOP_STACK:-local}"
COMPOSE_FILE_PATH="${COMPOSE_FILE:-$REPO_ROOT/deploy/docker-compose.yml}"
READY_TIMEOUT="${READY_TIMEOUT:-60}"
STOP_TIMEOUT="${STOP_TIMEOUT:-30}"
ROLES=(order inventory payment)

die() {
    echo "stack.sh: $*" >&2
    exit 1
}

usage() {
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit "${1:-2}"
}

port_of() {
    case "$1" in
        order) echo "${ORDER_PORT:-8081}" ;;
        inventory) echo "${INVENTORY_PORT:-8082}" ;;
        payment) echo "${PAYMENT_PORT:-8083}" ;;
        *) die "unknown role '$1' (order, inventory, payment)" ;;
    esac
}

# roles_of ARG: prints the roles ARG names (all or empty = the three).
roles_of() {
    case "${1:-all}" in
        all) printf '%s\n' "${ROLES[@]}" ;;
        order | inventory | payment) echo "$1" ;;
        # The original system's (and the compose file's) service names.
        order-service | inventory-service | payment-service) echo "${1%-service}" ;;
        *) die "unknown role '$1' (order, inventory, payment, all)" ;;
    esac
}

pid_file() { echo "$STACK_DIR/$1.pid"; }
log_file() { echo "$STACK_DIR/$1.log"; }

# pid_of ROLE: prints the pid of the role's live process, or nothing. A pid
# file whose process is gone (or is no longer dop) is removed.
pid_of() {
    local file pid
    file="$(pid_file "$1")"
    [[ -f "$file" ]] || return 0
    pid="$(cat "$file" 2>/dev/null || true)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && alive "$pid" &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "serve --role $1"; then
        echo "$pid"
    else
        rm -f "$file"
    fi
}

# alive PID: the process exists and is not a zombie waiting to be reaped.
alive() {
    local state
    kill -0 "$1" 2>/dev/null || return 1
    state="$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null || true)"
    [[ "$state" != Z ]]
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

ready_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$(port_of "$1")/ready" 2>/dev/null || true
}

# ---- local mode -------------------------------------------------------------

start_role() {
    local role="$1" pid port log
    pid="$(pid_of "$role")"
    if [[ -n "$pid" ]]; then
        echo "$role: already running (pid $pid)"
        return 0
    fi
    port="$(port_of "$role")"
    if port_in_use "$port"; then
        die "$role: port $port is already in use by another process (see: ss -ltnp)"
    fi
    [[ -x "$DOP_BIN" ]] || die "no executable at $DOP_BIN (cargo build --release, or set DOP_BIN)"
    mkdir -p "$STACK_DIR"
    log="$(log_file "$role")"
    local -a extra=()
    if [[ -n "${DOP_SERVE_ARGS:-}" ]]; then
        read -r -a extra <<<"$DOP_SERVE_ARGS"
    fi
    # setsid: the role gets its own session, so a Ctrl-C aimed at the caller
    # does not reach it; it is stopped with `stack.sh stop`.
    (cd "$REPO_ROOT" && exec setsid "$DOP_BIN" serve --role "$role" "${extra[@]}" >>"$log" 2>&1 </dev/null) &
    pid=$!
    echo "$pid" >"$(pid_file "$role")"
    sleep 0.3
    if ! alive "$pid"; then
        rm -f "$(pid_file "$role")"
        echo "$role: exited at once; last lines of $log:" >&2
        tail -n 20 "$log" >&2 || true
        return 1
    fi
    echo "$role: started (pid $pid, port $port, log ${log#"$REPO_ROOT"/})"
}

stop_role() {
    local role="$1" signal="${2:-TERM}" pid deadline
    pid="$(pid_of "$role")"
    if [[ -z "$pid" ]]; then
        echo "$role: not running"
        return 0
    fi
    kill -s "$signal" "$pid" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while alive "$pid"; do
        if ((SECONDS >= deadline)); then
            echo "$role: still running ${STOP_TIMEOUT}s after SIG$signal; sending SIGKILL" >&2
            kill -s KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 5))
            signal=KILL
        fi
        sleep 0.1
    done
    rm -f "$(pid_file "$role")"
    echo "$role: stopped (pid $pid, SIG$signal)"
}

status_local() {
    local role pid port
    printf '%-10s %-8s %-6s %s\n' ROLE PID PORT READY
    for role in "${ROLES[@]}"; do
        pid="$(pid_of "$role")"
        port="$(port_of "$role")"
        printf '%-10s %-8s %-6s %s\n' "$role" "${pid:--}" "$port" "$(ready_code "$role")"
    done
}

reset_db() {
    local role client
    for role in "${ROLES[@]}"; do
        if [[ -n "$(pid_of "$role")" ]]; then
            die "reset-db: $role is running; stop the stack first (scripts/stack.sh stop all)"
        fi
    done
    client="$(command -v mariadb || command -v mysql || true)"
    [[ -n "$client" ]] || die "reset-db needs the mariadb or mysql client"
    MYSQL_PWD="${DB_PASS:-}" "$client" -h "${DB_HOST:-127.0.0.1}" -P "${DB_PORT:-3306}" \
        -u "${DB_USER:-root}" -e \
        'DROP DATABASE IF EXISTS orders_db; DROP DATABASE IF EXISTS inventory_db; DROP DATABASE IF EXISTS payments_db;'
    echo "dropped orders_db, inventory_db, payments_db (roles recreate them at start)"
}

# ---- compose mode -----------------------------------------------------------

compose() {
    if docker compose version >/dev/null 2>&1; then
        docker compose -f "$COMPOSE_FILE_PATH" "$@"
    elif command -v docker-compose >/dev/null 2>&1; then
        docker-compose -f "$COMPOSE_FILE_PATH" "$@"
    else
        die "DOP_STACK=compose needs the docker compose plugin (or docker-compose)"
    fi
}

# compose_services ARG: the compose services for a role argument; "all" is
# every service in the file (databases, broker, observability too).
compose_services() {
    if [[ "${1:-all}" == all ]]; then
        return 0
    fi
    # The compose services carry the original system's names: the order
    # role runs as order-service.
    local role
    for role in $(roles_of "$1"); do
        echo "$role-service"
    done
}

# ---- commands ---------------------------------------------------------------

wait_ready() {
    local role deadline code pid
    deadline=$((SECONDS + READY_TIMEOUT))
    for role in $(roles_of "${1:-all}"); do
        while true; do
            code="$(ready_code "$role")"
            if [[ "$code" == "200" ]]; then
                echo "$role: ready"
                break
            fi
            if [[ "$DOP_STACK" == local ]]; then
                pid="$(pid_of "$role")"
                if [[ -z "$pid" ]] && ! port_in_use "$(port_of "$role")"; then
                    echo "$role: not running; last lines of $(log_file "$role"):" >&2
                    tail -n 20 "$(log_file "$role")" >&2 2>/dev/null || true
                    return 1
                fi
            fi
            if ((SECONDS >= deadline)); then
                echo "$role: not ready after ${READY_TIMEOUT}s (GET /ready -> ${code:-no answer})" >&2
                return 1
            fi
            sleep 0.25
        done
    done
}

main() {
    local cmd="${1:-}" role rc=0
    [[ -n "$cmd" ]] || usage
    shift
    case "$DOP_STACK" in
        local | compose) ;;
        *) die "DOP_STACK must be local or compose, not '$DOP_STACK'" ;;
    esac

    if [[ "$DOP_STACK" == compose ]]; then
        local -a services=()
        case "$cmd" in
            start | stop | restart | kill | logs)
                mapfile -t services < <(compose_services "${1:-all}")
                ;;
        esac
        case "$cmd" in
            start) compose up -d "${services[@]}" ;;
            stop) compose stop "${services[@]}" ;;
            # up --force-recreate (not `restart`) so the caller's environment,
            # e.g. PAYMENT_FAILURE_RATE, is interpolated into the new container.
            restart) compose up -d --force-recreate --no-deps "${services[@]}" ;;
            kill)
                [[ -n "${1:-}" && "$1" != all ]] || die "kill needs a role"
                compose kill -s SIGKILL "${services[@]}"
                ;;
            status) compose ps ;;
            logs)
                [[ -n "${1:-}" ]] || die "logs needs a role"
                if [[ "${2:-}" == -f ]]; then
                    compose logs -f "${services[@]}"
                else
                    compose logs --tail 200 "${services[@]}"
                fi
                ;;
            wait-ready) wait_ready "${1:-all}" ;;
            reset-db) die "reset-db is for the local mode; with compose use: docker compose -f $COMPOSE_FILE_PATH down -v" ;;
            -h | --help | help) usage 0 ;;
            *) usage ;;
        esac
        return
    fi

    case "$cmd" in
        start)
            for role in $(roles_of "${1:-all}"); do
                start_role "$role" || rc=1
            done
            ;;
        stop)
            for role in $(roles_of "${1:-all}"); do
                stop_role "$role" TERM
            done
            ;;
        kill)
            [[ -n "${1:-}" ]] || die "kill needs a role"
            for role in $(roles_of "$1"); do
                stop_role "$role" KILL
            done
            ;;
        restart)
            [[ -n "${1:-}" ]] || die "restart needs a role (or all)"
            for role in $(roles_of "$1"); do
                stop_role "$role" TERM
                start_role "$role" || rc=1
            done
            ;;
        status) status_local ;;
        logs)
            [[ -n "${1:-}" ]] || die "logs needs a role"
            role="$(roles_of "$1")"
            [[ "$role" != *$'\n'* ]] || die "logs needs one role"
            [[ -f "$(log_file "$role")" ]] || die "no log for $role yet ($(log_file "$role"))"
            if [[ "${2:-}" == -f ]]; then
                tail -n 200 -f "$(log_file "$role")"
            else
                tail -n 200 "$(log_file "$role")"
            fi
            ;;
        wait-ready) wait_ready "${1:-all}" || rc=1 ;;
        reset-db) reset_db ;;
        -h | --help | help) usage 0 ;;
        *) usage ;;
    esac
    return "$rc"
}

main "$@"
