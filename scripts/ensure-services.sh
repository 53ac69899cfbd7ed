#!/usr/bin/env bash
# Makes sure MariaDB and RabbitMQ (with its management API, which the tests
# use to make a vhost per test) answer on localhost; starts them if not.
# Fails loudly, saying what to do, when it can't.
#
#   scripts/ensure-services.sh
set -euo pipefail

say() { printf 'ensure-services: %s\n' "$*"; }

mariadb_up() { mysqladmin --protocol=tcp -h127.0.0.1 -uroot status >/dev/null 2>&1; }
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
mgmt_up() { curl -sf -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1; }

wait_for() { # name seconds check
  local name=$1 secs=$2 check=$3 i
  for ((i = 0; i < secs * 2; i++)); do
    if "$check"; then return 0; fi
    sleep 0.5
  done
  say "FAIL: $name did not come up within ${secs}s"
  return 1
}

if ! mariadb_up; then
  say "MariaDB is not answering on 127.0.0.1:3306; starting it"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql \
    || { say "FAIL: could not start MariaDB (is the mariadb-server package installed?)"; exit 1; }
  wait_for MariaDB 60 mariadb_up || exit 1
fi
say "MariaDB answers"
# Tests run in parallel, each with three roles' pools: the default of 151
# connections is too few. Not persistent: a restart of MariaDB resets it.
mysql -h127.0.0.1 -uroot -e "SET GLOBAL max_connections = GREATEST(@@max_connections, 2000)"

if ! rabbit_up; then
  say "RabbitMQ is not answering on 127.0.0.1:5672; starting it"
  rabbitmq-server -detached || { say "FAIL: could not start RabbitMQ (is rabbitmq-server installed?)"; exit 1; }
  wait_for RabbitMQ 90 rabbit_up || exit 1
fi
say "RabbitMQ answers"

if ! mgmt_up; then
  say "enabling the RabbitMQ management API (tests create a vhost per test through it)"
  rabbitmq-plugins enable rabbitmq_management >/dev/null \
    || { say "FAIL: rabbitmq-plugins enable rabbitmq_management failed"; exit 1; }
  wait_for "RabbitMQ management API" 60 mgmt_up || exit 1
fi
say "RabbitMQ management API answers"
