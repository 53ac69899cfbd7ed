#!/usr/bin/env bash
# Proves dop talks TLS to MySQL and to RabbitMQ (what RDS and Amazon MQ
# need), on loopback, without touching the machine's own servers:
#   1. a private CA and a server certificate for localhost (openssl);
#   2. a throwaway MariaDB on 127.0.0.1:3310 with TLS: `dop migrate` with
#      `?require_ssl=true` must succeed and be counted by the server as a TLS
#      handshake (Ssl_accepts); with certificate verification on, it must
#      succeed trusting the CA (order.database_ca_file) and fail without it;
#   3. a TLS listener on 127.0.0.1:15671 in front of the local RabbitMQ
#      (socat): `dop admin dlq list` over amqps:// must succeed trusting the
#      CA (rabbitmq.ca_file) and fail without it.
# Bounded in time; everything it starts is stopped on exit.
#
#   scripts/check-tls.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DOP_BIN="${DOP_BIN:-$PWD/target/release/dop}"
[[ -x $DOP_BIN ]] || { echo "check-tls: no binary at $DOP_BIN"; exit 1; }
command -v socat >/dev/null || apt-get install -y -qq socat >/dev/null 2>&1 || true
for tool in openssl socat mariadb-install-db mariadbd mariadb; do
  command -v "$tool" >/dev/null || { echo "check-tls: $tool is missing"; exit 1; }
done
work=$(mktemp -d /tmp/dop-tls.XXXXXX)
db_pid="" socat_pid=""
cleanup() {
  [[ -n $socat_pid ]] && kill "$socat_pid" 2>/dev/null
  if [[ -n $db_pid ]]; then kill "$db_pid" 2>/dev/null; wait "$db_pid" 2>/dev/null; fi
  rm -rf "$work"
}
trap cleanup EXIT
pass=0 fail=0
check() { # name expected(ok|fail) command...
  local name=$1 want=$2; shift 2
  local got=fail
  if "$@" >"$work/out" 2>&1; then got=ok; fi
  if [[ $got == "$want" ]]; then echo "PASS $name"; pass=$((pass + 1)); else
    echo "FAIL $name (wanted $want, got $got)"; sed 's/^/    /' "$work/out"; fail=$((fail + 1)); fi
}

# 1. certificates
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/ca.key" -out "$work/ca.pem" -days 2 -subj /CN=dop-test-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$work/srv.key" -out "$work/srv.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$work/ext"
openssl x509 -req -in "$work/srv.csr" -CA "$work/ca.pem" -CAkey "$work/ca.key" -CAcreateserial \
  -out "$work/srv.pem" -days 2 -extfile "$work/ext" 2>/dev/null
chmod 644 "$work"/*.pem "$work"/*.key
chmod 755 "$work"

# 2. MySQL over TLS
mkdir -p "$work/data" && chown mysql: "$work/data"
mariadb-install-db --no-defaults --user=mysql --datadir="$work/data" --skip-test-db >/dev/null 2>&1
mariadbd --no-defaults --user=mysql --datadir="$work/data" --port=3310 --bind-address=127.0.0.1 \
  --socket="$work/data/mysqld.sock" --pid-file="$work/data/mysqld.pid" --skip-grant-tables \
  --ssl-ca="$work/ca.pem" --ssl-cert="$work/srv.pem" --ssl-key="$work/srv.key" \
  >"$work/mysqld.log" 2>&1 &
db_pid=$!
for _ in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/3310) 2>/dev/null && break; sleep 0.5; done
base="mysql://root@127.0.0.1:3310/orders_db"
tls_handshakes() {
  mariadb --no-defaults -S "$work/data/mysqld.sock" -N -e "SHOW GLOBAL STATUS LIKE 'Ssl_accepts'" | awk '{print $2}'
}
handshakes_grew() { # command...: runs it, then checks the server saw a new TLS handshake
  local before after
  before=$(tls_handshakes)
  "$@" || return 1
  after=$(tls_handshakes)
  echo "Ssl_accepts $before -> $after"
  ((after > before))
}
check "mysql: migrate over TLS (?require_ssl=true), seen by the server as TLS" ok \
  handshakes_grew env DOP_ORDER__DATABASE_URL="$base?require_ssl=true&verify_ca=false&prefer_socket=false" "$DOP_BIN" migrate --role order
check "mysql: the server certificate is verified against order.database_ca_file" ok \
  handshakes_grew env DOP_ORDER__DATABASE_URL="mysql://root@localhost:3310/orders_db?require_ssl=true&prefer_socket=false" \
  DOP_ORDER__DATABASE_CA_FILE="$work/ca.pem" "$DOP_BIN" migrate --role order
check "mysql: a certificate from an unknown CA is refused" fail \
  env DOP_ORDER__DATABASE_URL="mysql://root@localhost:3310/orders_db?require_ssl=true&prefer_socket=false" "$DOP_BIN" migrate --role order
# The RDS bundle the image ships (deploy/certs/, the Terraform default): it
# loads, and a server whose certificate no RDS CA signed is refused for that
# reason (not for an unreadable bundle).
refused_as_unknown_issuer() {
  if "$@"; then echo "connected: the local server was trusted"; return 1; fi
  grep -qiE 'UnknownIssuer|unknown ?issuer|certificate verify failed|invalid peer certificate' "$work/out.inner"
}
rds_bundle_refuses() {
  refused_as_unknown_issuer env DOP_ORDER__DATABASE_URL="mysql://root@localhost:3310/orders_db?require_ssl=true&prefer_socket=false" \
    DOP_ORDER__DATABASE_CA_FILE="$PWD/deploy/certs/rds-global-bundle.pem" "$DOP_BIN" migrate --role order >"$work/out.inner" 2>&1
  local rc=$?; cat "$work/out.inner"; return $rc
}
check "mysql: the shipped RDS CA bundle loads and refuses a certificate RDS did not sign" ok rds_bundle_refuses

# 3. AMQP over TLS
socat "OPENSSL-LISTEN:15671,reuseaddr,fork,bind=127.0.0.1,cert=$work/srv.pem,key=$work/srv.key,verify=0" \
  TCP:127.0.0.1:5672 2>"$work/socat.log" &
socat_pid=$!
for _ in $(seq 1 20); do (exec 3<>/dev/tcp/127.0.0.1/15671) 2>/dev/null && break; sleep 0.25; done
amqps="amqps://guest:guest@localhost:15671/%2f"
check "amqps: connects trusting the CA (rabbitmq.ca_file)" ok \
  env RABBITMQ_URL="$amqps" DOP_RABBITMQ__CA_FILE="$work/ca.pem" timeout 30 "$DOP_BIN" admin dlq list
check "amqps: an unknown CA is refused" fail \
  env RABBITMQ_URL="$amqps" timeout 30 "$DOP_BIN" admin dlq list

echo "check-tls: $pass passed, $fail failed"
((fail == 0))
