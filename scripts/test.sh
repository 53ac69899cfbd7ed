#!/usr/bin/env bash
# Every test dop has, in the order a failure is cheapest to find:
# formatting and lints, unit + integration + end-to-end tests (real MariaDB
# and RabbitMQ), the static checks of the deployment files, then the
# original system's scenario scripts against a release build.
#
#   scripts/test.sh            everything
#   scripts/test.sh --quick    lints and cargo tests only
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ ${1:-} == --quick ]] && quick=1

step() { printf '\n==> %s\n' "$*"; }

step "services"
scripts/ensure-services.sh

step "leftovers of earlier test runs"
mysql -h127.0.0.1 -uroot -N -e "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE 'dop\\_t\\_%'" |
  while read -r db; do mysql -h127.0.0.1 -uroot -e "DROP DATABASE \`$db\`"; done
curl -sf -u guest:guest http://127.0.0.1:15672/api/vhosts |
  python3 -c 'import json,sys; [print(v["name"]) for v in json.load(sys.stdin) if v["name"].startswith("dop_t_")]' |
  while read -r vh; do curl -sf -u guest:guest -X DELETE "http://127.0.0.1:15672/api/vhosts/$vh" >/dev/null || true; done

step "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

step "unit, integration and end-to-end tests"
cargo nextest run --locked --no-fail-fast

step "the saga tests again, every write a prepared statement (database.write_mode)"
DOP_DATABASE__WRITE_MODE=prepared cargo nextest run --locked --no-fail-fast -E 'test(/saga::/)'

step "the saga tests again, every queue a quorum queue (rabbitmq.queue_type)"
DOP_RABBITMQ__QUEUE_TYPE=quorum cargo nextest run --locked --no-fail-fast -E 'test(/saga::/)'

if ((quick)); then exit 0; fi

step "release build (the same command as the Dockerfile)"
cargo build --release --locked

step "static checks of the deployment files"
scripts/check-static.sh

step "the original scenario scripts against a release build"
DOP_BIN=target/release/dop scripts/run-all-tests.sh

step "observability: promtool on every /metrics, a real Prometheus, every dashboard query"
export DOP_BIN=target/release/dop
scripts/stack.sh start all
trap 'scripts/stack.sh stop all >/dev/null 2>&1 || true' EXIT
scripts/stack.sh wait-ready all
scripts/check-observability.sh

step "the original system's clients: their requests, id parsing and JSON fields (docs/compatibility.md)"
scripts/check-original-clients.sh
scripts/stack.sh stop all
trap - EXIT

step "the operator console in a real browser (headless Chromium + Selenium, own ports, databases and vhost)"
scripts/check-console.sh

step "TLS to MySQL and RabbitMQ (what RDS and Amazon MQ need)"
scripts/check-tls.sh

step "the short chaos run (kills every role, restarts RabbitMQ and MariaDB; must lose nothing)"
scripts/chaos.sh --short

step "the short replica run (two replicas of every role, crashed and scaled in under load; must lose nothing)"
scripts/replicas.sh --short

step "the short deadline chaos run (payment down past saga.step_timeout under load: those sagas compensate, none is charged)"
scripts/chaos.sh --deadline --short

step "a clustered broker: three RabbitMQ nodes, quorum queues, a node stopped mid-load (--long: each node in turn)"
scripts/cluster.sh
