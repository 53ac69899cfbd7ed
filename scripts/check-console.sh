#!/usr/bin/env bash
# The operator console in a real browser: headless Chromium (Debian's
# chromium + chromium-driver) driven by Selenium (PyPI) against a real dop
# stack (real MariaDB and RabbitMQ) started here on its own ports,
# databases and vhost, so it never touches a stack someone else runs.
# scripts/console_browser_test.py places orders (one confirmed, one refused
# for stock, one declined, one whose compensation fails, one whose reserve
# is dead-lettered), finds them in the list, opens a timeline, retries the
# failed compensation (refused without the operator token, accepted with
# it), redrives the dead letter, and checks keyboard use and phone width.
# Every wait has a deadline; the whole run is bounded by CONSOLE_TIMEOUT.
#
#   scripts/check-console.sh                 run it (screenshots in a temp dir)
#   scripts/check-console.sh --screenshots   also refresh docs/console/*.png
#
# Environment:
#   DOP_BIN            the dop binary (default target/release/dop)
#   CONSOLE_PORT       the order role's port; inventory and payment take the
#                      next two (default 18481)
#   CONSOLE_TIMEOUT    seconds for the browser run (default 300)
# Needs: chromium, chromium-driver, python3 with selenium, mysql, curl
# (scripts/ensure-services.sh installs them), MariaDB on 127.0.0.1:3306 and
# RabbitMQ with its management API on 127.0.0.1:5672/15672.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

shots_to_docs=0
case "${1:-}" in
  --screenshots) shots_to_docs=1 ;;
  "") ;;
  *) echo "check-console: unknown argument $1 (--screenshots)" >&2; exit 2 ;;
esac

DOP_BIN="${DOP_BIN:-$REPO/target/release/dop}"
[[ $DOP_BIN == /* ]] || DOP_BIN="$REPO/$DOP_BIN"
[[ -x $DOP_BIN ]] || { echo "check-console: no binary at $DOP_BIN (cargo build --release, or set DOP_BIN)" >&2; exit 1; }
for tool in chromium chromedriver python3 mysql curl; do
  command -v "$tool" >/dev/null || { echo "check-console: $tool is missing (scripts/ensure-services.sh installs it)" >&2; exit 1; }
done
python3 -c 'import selenium' 2>/dev/null ||
  { echo "check-console: python3 lacks selenium (pip install selenium; scripts/ensure-services.sh does it)" >&2; exit 1; }

# Only this script's settings reach the roles: the original system's
# variables and any DOP_* of the caller's shell would point them elsewhere.
for v in $(compgen -e); do
  case "$v" in
    DOP_BIN) ;;
    DOP_* | RABBITMQ_URL | DB_HOST | DB_PORT | DB_USER | DB_PASS | DB_NAME | DB_MAX_OPEN_CONNS | \
      DB_MAX_IDLE_CONNS | DB_CONN_MAX_LIFETIME_MIN | PAYMENT_FAILURE_RATE | RETRY_MAX_ATTEMPTS | \
      INVENTORY_RESERVE_MAX_RETRIES | ORDER_URL | INVENTORY_URL | PAYMENT_URL) unset "$v" ;;
  esac
done

base="${CONSOLE_PORT:-18481}"
export ORDER_PORT=$base INVENTORY_PORT=$((base + 1)) PAYMENT_PORT=$((base + 2))
prefix="dop_console_$base"
vhost="$prefix"
work=$(mktemp -d /tmp/dop-console.XXXXXX)
export STACK_DIR="$work/stack" DOP_BIN
export DOP_ORDER__DATABASE_URL="mysql://root@127.0.0.1:3306/${prefix}_orders"
export DOP_INVENTORY__DATABASE_URL="mysql://root@127.0.0.1:3306/${prefix}_inventory"
export DOP_PAYMENT__DATABASE_URL="mysql://root@127.0.0.1:3306/${prefix}_payments"
export DOP_RABBITMQ__URL="amqp://guest:guest@127.0.0.1:5672/$vhost"
export DOP_ADMIN__TOKEN="console-operator-$RANDOM$RANDOM"
export DOP_ADMIN__READ_TOKEN="console-reader-$RANDOM$RANDOM"
# Recovery does not re-send during the run (a dead-lettered reserve stays
# put until the redrive); a saga still counts as stuck after 10 s.
export DOP_RECOVERY__INTERVAL=1h DOP_RECOVERY__STUCK_AFTER=10s
mgmt="http://127.0.0.1:15672"

drop_all() {
  local db
  for db in orders inventory payments; do
    mysql -h127.0.0.1 -uroot -e "DROP DATABASE IF EXISTS \`${prefix}_$db\`" 2>/dev/null || true
  done
  curl -s -o /dev/null -u guest:guest -X DELETE "$mgmt/api/vhosts/$vhost" || true
}
# shellcheck disable=SC2317  # run by the EXIT trap
cleanup() {
  scripts/stack.sh stop all >/dev/null 2>&1 || true
  drop_all
  rm -rf "$work"
}
trap cleanup EXIT

for p in "$ORDER_PORT" "$INVENTORY_PORT" "$PAYMENT_PORT"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "check-console: port $p is in use; set CONSOLE_PORT to a free range" >&2
    exit 1
  fi
done
drop_all
curl -sf -o /dev/null -u guest:guest -X PUT "$mgmt/api/vhosts/$vhost" ||
  { echo "check-console: cannot create vhost $vhost through $mgmt (is RabbitMQ's management plugin on?)" >&2; exit 1; }
curl -sf -o /dev/null -u guest:guest -X PUT -H 'content-type: application/json' \
  -d '{"configure":".*","write":".*","read":".*"}' "$mgmt/api/permissions/$vhost/guest"

echo "check-console: starting dop on ports $ORDER_PORT-$PAYMENT_PORT (databases ${prefix}_*, vhost $vhost)"
scripts/stack.sh start all >/dev/null
READY_TIMEOUT=90 scripts/stack.sh wait-ready all >/dev/null

shots="$work/shots"
rc=0
CONSOLE_URL="http://127.0.0.1:$ORDER_PORT" \
  INVENTORY_URL="http://127.0.0.1:$INVENTORY_PORT" \
  OPERATOR_TOKEN="$DOP_ADMIN__TOKEN" READ_TOKEN="$DOP_ADMIN__READ_TOKEN" \
  INVENTORY_DB="${prefix}_inventory" MGMT_URL="$mgmt" VHOST="$vhost" \
  STACK="$REPO/scripts/stack.sh" SHOTS="$shots" \
  timeout "${CONSOLE_TIMEOUT:-300}" python3 scripts/console_browser_test.py || rc=$?
if ((rc == 124)); then echo "FAIL the browser run took longer than ${CONSOLE_TIMEOUT:-300}s"; fi
if ((rc != 0)); then
  for role in order inventory payment; do
    echo "--- last lines of the $role log"
    tail -n 15 "$STACK_DIR/$role.log" 2>/dev/null || true
  done
  if cp "$shots/failure.png" /tmp/dop-console-failure.png 2>/dev/null; then
    echo "check-console: the page at the failure: /tmp/dop-console-failure.png"
  fi
elif ((shots_to_docs)); then
  mkdir -p docs/console
  cp "$shots"/*.png docs/console/
  echo "check-console: screenshots copied to docs/console/"
fi
exit "$rc"
