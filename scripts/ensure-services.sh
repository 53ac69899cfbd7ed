#!/usr/bin/env bash
# Makes sure what the tests need is here and running: MariaDB and RabbitMQ
# (with its management API, which the tests use to make a vhost per test) on
# localhost, the mysql client, curl, python3, jq (scripts/check-original-clients.sh),
# chromium, chromium-driver and Python's selenium (scripts/check-console.sh)
# and cargo-nextest. Installs what is missing (apt-get as root on
# Debian/Ubuntu; `python3 -m pip install selenium`; `cargo install --locked
# cargo-nextest`), starts what is stopped, and otherwise stops saying
# exactly what to run.
#
#   scripts/ensure-services.sh            check, install, start
#   scripts/ensure-services.sh --dry-run  print what it would do, change nothing
#
# Environment (for the dry-run test, tests/it/ensure_services.rs):
#   DOP_MARIADBD   the MariaDB server binary (default: mariadbd on PATH, else /usr/sbin/mariadbd)
#   DOP_UID        the user id to decide as (default: id -u)
#   DOP_SELENIUM   "1" or "0": whether python3 has selenium (default: ask python3)
set -euo pipefail

dry=0
case "${1:-}" in
  --dry-run) dry=1 ;;
  "") ;;
  *) echo "ensure-services: unknown argument $1 (--dry-run)" >&2; exit 2 ;;
esac

say() { printf 'ensure-services: %s\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

# ---- what is missing -------------------------------------------------------
mariadbd="${DOP_MARIADBD:-$(command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd)}"
uid="${DOP_UID:-$(id -u)}"
packages=()
[[ -x "$mariadbd" ]] || packages+=(mariadb-server)
{ have mysql && have mysqladmin; } || packages+=(mariadb-client)
{ have rabbitmq-server && have rabbitmq-plugins; } || packages+=(rabbitmq-server)
have curl || packages+=(curl)
have python3 || packages+=(python3)
have jq || packages+=(jq)
have chromium || packages+=(chromium)
have chromedriver || packages+=(chromium-driver)

if ((${#packages[@]})); then
  if [[ "$uid" == 0 ]] && have apt-get; then
    say "missing: ${packages[*]}; installing with apt-get"
    if ((dry)); then
      say "would run: apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${packages[*]}"
    else
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"
      mariadbd="$(command -v mariadbd 2>/dev/null || echo /usr/sbin/mariadbd)"
    fi
  else
    say "FAIL: missing ${packages[*]}. Run, then try again:"
    if have apt-get; then
      say "  sudo apt-get update && sudo apt-get install -y ${packages[*]}"
    else
      say "  install ${packages[*]} with your system's package manager (this script knows apt-get only)"
    fi
    exit 1
  fi
fi

# Selenium drives Debian's chromium-driver; it comes from PyPI (no
# browser download: the driver is the distribution's).
selenium="${DOP_SELENIUM:-}"
if [[ -z "$selenium" ]]; then
  selenium=0
  if have python3 && python3 -c 'import selenium' >/dev/null 2>&1; then selenium=1; fi
fi
if [[ "$selenium" != 1 ]]; then
  say "python3 lacks selenium (scripts/check-console.sh); installing it"
  if ((dry)); then
    say "would run: python3 -m pip install selenium"
  elif ! python3 -m pip install --quiet selenium 2>/dev/null &&
    ! python3 -m pip install --quiet --break-system-packages selenium; then
    say "FAIL: could not install selenium; run: python3 -m pip install selenium"
    exit 1
  fi
fi

if ! have cargo-nextest; then
  if have cargo; then
    say "cargo-nextest is missing; installing it"
    if ((dry)); then
      say "would run: cargo install --locked cargo-nextest"
    else
      cargo install --locked cargo-nextest
    fi
  else
    say "FAIL: cargo is missing. Install Rust stable (https://rustup.rs), then run:"
    say "  cargo install --locked cargo-nextest"
    exit 1
  fi
fi

if ((dry)); then
  say "would then start MariaDB and RabbitMQ if they are not answering"
  exit 0
fi

# ---- running ------------------------------------------------------------------
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
  # A fresh package install may have no data directory yet.
  if [[ ! -d /var/lib/mysql/mysql ]] && have mariadb-install-db; then
    mariadb-install-db --user=mysql >/dev/null
  fi
  if mkdir -p /run/mysqld 2>/dev/null; then chown mysql: /run/mysqld 2>/dev/null || true; fi
  start-stop-daemon --start --oknodo --background --exec "$mariadbd" -- --user=mysql \
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
