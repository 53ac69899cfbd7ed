#!/usr/bin/env python3
"""Static checks of deploy/docker-compose.yml, without a Docker engine.

1. The file validates against the Compose Specification JSON schema vendored
   in deploy/schema/compose-spec.json (YAML anchors and merge keys resolved).
2. It has the services, images, ports, healthchecks, start order and
   `serve --role X` commands that the design (section 8) and issue 6 ask for.
3. It exposes nothing beyond the machine and bakes in no secret: every
   published port is bound to 127.0.0.1; the bearer tokens and Grafana's
   admin password come only from deploy/dop.env (env_file, git-ignored,
   template deploy/dop.env.example), never from a value or a ${VAR:-default}
   in the file; Grafana has no anonymous access.

Usage: scripts/check_compose.py [COMPOSE_FILE] [--schema FILE]
Prints one line per problem and exits 1 when there is any; needs PyYAML and
jsonschema.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent
DEFAULT_COMPOSE = REPO / "deploy" / "docker-compose.yml"
DEFAULT_SCHEMA = REPO / "deploy" / "schema" / "compose-spec.json"

# role -> (port, database service, database name, DOP_* variable). The
# service names are the original system's (its scripts `docker compose
# stop/up` order-service, inventory-service, payment-service; its MySQLs are
# mysql-order, mysql-inventory, mysql-payment).
ROLES = {
    "order": (8081, "mysql-order", "orders_db", "DOP_ORDER__DATABASE_URL"),
    "inventory": (8082, "mysql-inventory", "inventory_db", "DOP_INVENTORY__DATABASE_URL"),
    "payment": (8083, "mysql-payment", "payments_db", "DOP_PAYMENT__DATABASE_URL"),
}
# database service -> host port it is published on (three MySQLs cannot share 3306)
DB_HOST_PORTS = {"mysql-order": 3307, "mysql-inventory": 3308, "mysql-payment": 3309}


def service_of(role: str) -> str:
    """The compose service that runs a role: `order` runs as order-service."""
    return f"{role}-service"


IMAGE = "dop:local"
PASSTHROUGH = {
    "PAYMENT_FAILURE_RATE": "${PAYMENT_FAILURE_RATE:-0.0}",
    "INVENTORY_RESERVE_MAX_RETRIES": "${INVENTORY_RESERVE_MAX_RETRIES:-50}",
}
# Published ports listen here and nowhere else.
BIND_ADDRESS = "127.0.0.1"
ENV_FILE = "dop.env"
# Secrets that only deploy/dop.env may provide: service -> keys.
ENV_FILE_SECRETS = {
    "order-service": {"DOP_ADMIN__TOKEN", "DOP_ADMIN__READ_TOKEN"},
    "inventory-service": {"DOP_ADMIN__TOKEN"},
    "payment-service": set(),
    "grafana": {"GF_SECURITY_ADMIN_PASSWORD"},
}
# Environment keys that hold a guarding secret: never written in the file.
SECRET_KEY = re.compile(r"TOKEN|GF_SECURITY_ADMIN_PASSWORD|SECRET_KEY")
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, $VAR, or $$
INTERPOLATION = re.compile(r"\$(\$|\{[A-Za-z_][A-Za-z0-9_]*(?:(?::?[-?+])[^}]*)?\}|[A-Za-z_][A-Za-z0-9_]*)")


class Problems(list):
    def add(self, where: str, msg: str) -> None:
        self.append(f"{where}: {msg}")


def as_mapping(value, key_sep="="):
    """environment / labels may be a list of KEY=VALUE or a mapping."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(k): ("" if v is None else str(v)) for k, v in value.items()}
    out = {}
    for item in value:
        k, _, v = str(item).partition(key_sep)
        out[k] = v
    return out


def command_argv(cmd):
    if cmd is None:
        return None
    if isinstance(cmd, str):
        return cmd.split()
    return [str(c) for c in cmd]


def healthcheck_text(svc) -> str:
    test = (svc.get("healthcheck") or {}).get("test")
    if test is None:
        return ""
    if isinstance(test, str):
        return test
    return " ".join(str(t) for t in test)


def published_ports(svc):
    """(host_ip, published, target) for every published port."""
    out = []
    for p in svc.get("ports") or []:
        if isinstance(p, dict):
            out.append((p.get("host_ip", ""), str(p.get("published", "")), str(p.get("target", ""))))
            continue
        s = str(p).split("/")[0]
        parts = s.rsplit(":", 2)
        if len(parts) == 3:
            out.append((parts[0], parts[1], parts[2]))
        elif len(parts) == 2:
            out.append(("", parts[0], parts[1]))
        else:
            out.append(("", "", parts[0]))
    return out


def volume_pairs(svc):
    """(source, target) for every volume, trailing slashes dropped."""
    out = []
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            src, dst = str(v.get("source", "")), str(v.get("target", ""))
        else:
            parts = str(v).split(":")
            src, dst = (parts[0], parts[1]) if len(parts) >= 2 else ("", parts[0])
        out.append((src.rstrip("/") or src, dst.rstrip("/") or dst))
    return out


def depends_on(svc):
    d = svc.get("depends_on") or {}
    if isinstance(d, list):
        return {name: "service_started" for name in d}
    return {name: (cfg or {}).get("condition", "service_started") for name, cfg in d.items()}


def check_interpolation(text: str, problems: Problems) -> None:
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        i = 0
        while True:
            i = line.find("$", i)
            if i < 0:
                break
            m = INTERPOLATION.match(line, i)
            if not m:
                problems.add(f"line {lineno}", f"malformed interpolation near {line[i:i + 20]!r} (write $$ for a literal $)")
                break
            i = m.end()


def check_schema(doc, schema_path: Path, problems: Problems) -> None:
    schema = json.loads(schema_path.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema)
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        path = "/".join(str(p) for p in err.absolute_path) or "(top)"
        problems.add(f"schema {path}", err.message)


def check_database(name, svc, db_name, host_port, problems: Problems) -> None:
    if svc.get("image") != "mysql:8.0":
        problems.add(name, f"image is {svc.get('image')!r}, want mysql:8.0")
    env = as_mapping(svc.get("environment"))
    if env.get("MYSQL_DATABASE") != db_name:
        problems.add(name, f"MYSQL_DATABASE is {env.get('MYSQL_DATABASE')!r}, want {db_name}")
    if env.get("MYSQL_USER") != "dop":
        problems.add(name, "MYSQL_USER must be dop")
    for var in ("MYSQL_PASSWORD", "MYSQL_ROOT_PASSWORD"):
        if not re.fullmatch(r"\$\{[A-Z_]+:-[^}]+\}", env.get(var, "")):
            problems.add(name, f"{var} must come from the environment with a default, e.g. ${{{var}:-...}}")
    hc = healthcheck_text(svc)
    if "mysqladmin" not in hc or "ping" not in hc:
        problems.add(name, f"healthcheck must run mysqladmin ping, is {hc!r}")
    ports = published_ports(svc)
    if not any(pub == str(host_port) and tgt == "3306" for _, pub, tgt in ports):
        problems.add(name, f"must publish 3306 on host port {host_port}, publishes {ports}")


def check_rabbitmq(svc, problems: Problems) -> None:
    if svc.get("image") != "rabbitmq:3-management":
        problems.add("rabbitmq", f"image is {svc.get('image')!r}, want rabbitmq:3-management")
    test = (svc.get("healthcheck") or {}).get("test")
    argv = command_argv(test[1:] if isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL") else test)
    if argv != ["rabbitmq-diagnostics", "-q", "ping"]:
        problems.add("rabbitmq", f"healthcheck must be `rabbitmq-diagnostics -q ping`, is {test!r}")
    pubs = {(pub, tgt) for _, pub, tgt in published_ports(svc)}
    for port in ("5672", "15672"):
        if (port, port) not in pubs:
            problems.add("rabbitmq", f"must publish {port}:{port}")


def check_role(role, svc, compose_dir: Path, problems: Problems) -> None:
    port, db_service, db_name, db_var = ROLES[role]
    role = service_of(role)
    if svc.get("image") != IMAGE:
        problems.add(role, f"image is {svc.get('image')!r}, want {IMAGE} (one image for every role)")
    build = svc.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    if context is None:
        problems.add(role, "has no build: (context ..)")
    else:
        ctx = (compose_dir / context).resolve()
        dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        if ctx != REPO:
            problems.add(role, f"build context resolves to {ctx}, want the repository root {REPO}")
        elif not (ctx / dockerfile).is_file():
            problems.add(role, f"build dockerfile {dockerfile} not found in {ctx}")
    argv = command_argv(svc.get("command"))
    want_argv = ["serve", "--role", role.removesuffix("-service")]
    if argv != want_argv:
        problems.add(role, f"command is {svc.get('command')!r}, want {' '.join(want_argv)}")
    deps = depends_on(svc)
    for dep in (db_service, "rabbitmq"):
        if deps.get(dep) != "service_healthy":
            problems.add(role, f"depends_on {dep} must have condition service_healthy, has {deps.get(dep)!r}")
    pubs = {(pub, tgt) for _, pub, tgt in published_ports(svc)}
    if (str(port), str(port)) not in pubs:
        problems.add(role, f"must publish {port}:{port}")
    env = as_mapping(svc.get("environment"))
    url = env.get(db_var, "")
    m = re.fullmatch(r"mysql://([^:@/]+)(?::[^@]*)?@([^:/]+):(\d+)/([A-Za-z0-9_]+)(\?.*)?", url)
    if not m:
        problems.add(role, f"{db_var} must be a mysql:// URL, is {url!r}")
    elif (m.group(2), m.group(3), m.group(4)) != (db_service, "3306", db_name):
        problems.add(role, f"{db_var} must point at {db_service}:3306/{db_name}, is {url!r}")
    for other_role, (_, _, _, other_var) in ROLES.items():
        if service_of(other_role) != role and other_var in env:
            problems.add(role, f"sets {other_var}: a role gets only its own database")
    rabbit = env.get("RABBITMQ_URL", "")
    if not re.match(r"amqps?://[^@]+@rabbitmq:5672/", rabbit):
        problems.add(role, f"RABBITMQ_URL must point at rabbitmq:5672, is {rabbit!r}")
    for var, want in PASSTHROUGH.items():
        if env.get(var) != want:
            problems.add(role, f"{var} must be passed through as {want}, is {env.get(var)!r}")
    hc = healthcheck_text(svc)
    if f"127.0.0.1:{port}/health" not in hc and f"localhost:{port}/health" not in hc:
        problems.add(role, f"healthcheck must probe http://127.0.0.1:{port}/health, is {hc!r}")
    if env.get("HEALTHCHECK_PORT") != str(port):
        problems.add(role, f"HEALTHCHECK_PORT (the image's own HEALTHCHECK) must be {port}")


def check_observability(services, compose_dir: Path, problems: Problems) -> None:
    prom = services.get("prometheus", {})
    if not str(prom.get("image", "")).startswith("prom/prometheus"):
        problems.add("prometheus", f"image is {prom.get('image')!r}, want prom/prometheus")
    if ("./observability/prometheus.yml", "/etc/prometheus/prometheus.yml") not in volume_pairs(prom):
        problems.add("prometheus", "must mount ./observability/prometheus.yml at /etc/prometheus/prometheus.yml")
    if ("9090", "9090") not in {(p, t) for _, p, t in published_ports(prom)}:
        problems.add("prometheus", "must publish 9090:9090")
    graf = services.get("grafana", {})
    if not str(graf.get("image", "")).startswith("grafana/grafana"):
        problems.add("grafana", f"image is {graf.get('image')!r}, want grafana/grafana")
    vols = volume_pairs(graf)
    for src, dst in (
        ("./observability/grafana/provisioning", "/etc/grafana/provisioning"),
        ("./observability/grafana/dashboards", "/var/lib/grafana/dashboards"),
    ):
        if (src, dst) not in vols:
            problems.add("grafana", f"must mount {src}/ at {dst}")
    if ("3000", "3000") not in {(p, t) for _, p, t in published_ports(graf)}:
        problems.add("grafana", "must publish 3000:3000")
    scrape = compose_dir / "observability" / "prometheus.yml"
    if scrape.is_file():
        targets = {
            t
            for job in (yaml.safe_load(scrape.read_text()) or {}).get("scrape_configs") or []
            for sc in job.get("static_configs") or []
            for t in sc.get("targets") or []
        }
        for role, (port, *_rest) in ROLES.items():
            if f"{service_of(role)}:{port}" not in targets:
                problems.add("prometheus", f"{scrape.name} must scrape {service_of(role)}:{port}, scrapes {sorted(targets)}")


def env_files(svc):
    """(path, required) for every env_file entry."""
    v = svc.get("env_file")
    if v is None:
        return []
    items = [v] if isinstance(v, (str, dict)) else v
    out = []
    for it in items:
        if isinstance(it, dict):
            out.append((str(it.get("path", "")), bool(it.get("required", True))))
        else:
            out.append((str(it), True))
    return out


def check_exposure_and_secrets(services, compose_dir: Path, problems: Problems) -> None:
    for name, svc in services.items():
        for host_ip, pub, tgt in published_ports(svc):
            if host_ip != BIND_ADDRESS:
                problems.add(name, f"port {pub or tgt} is published on {host_ip or 'every address'}; "
                                   f"bind it to {BIND_ADDRESS} ({BIND_ADDRESS}:{pub}:{tgt})")
        env = as_mapping(svc.get("environment"))
        for key, value in env.items():
            if SECRET_KEY.search(key):
                problems.add(name, f"{key} is set in the compose file ({value!r}); it must come from {ENV_FILE} only")
    example = compose_dir / f"{ENV_FILE}.example"
    example_keys = {}
    if not example.is_file():
        problems.add(ENV_FILE, f"{example} is missing (the template of {ENV_FILE})")
    else:
        for line in example.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                k, _, v = line.partition("=")
                example_keys[k.strip()] = v.strip()
        for k, v in example_keys.items():
            if SECRET_KEY.search(k) and v:
                problems.add(example.name, f"{k} has a value; the template must not ship a secret")
    gitignore = REPO / ".gitignore"
    if compose_dir == REPO / "deploy" and (
            not gitignore.is_file() or "/deploy/dop.env" not in gitignore.read_text().split()):
        problems.add(".gitignore", "must ignore /deploy/dop.env (the real tokens)")
    for name, keys in ENV_FILE_SECRETS.items():
        svc = services.get(name)
        if svc is None:
            continue
        files = env_files(svc)
        if (f"./{ENV_FILE}", True) not in files and (ENV_FILE, True) not in files:
            problems.add(name, f"must read ./{ENV_FILE} with env_file (required: true), reads {files}")
        for k in sorted(keys - set(example_keys)):
            problems.add(example.name, f"{k} (needed by {name}) is not in the template")
    graf = as_mapping(services.get("grafana", {}).get("environment"))
    if graf.get("GF_AUTH_ANONYMOUS_ENABLED", "").lower() != "false":
        problems.add("grafana", "GF_AUTH_ANONYMOUS_ENABLED must be \"false\" (no anonymous viewing)")
    if "GF_AUTH_ANONYMOUS_ORG_ROLE" in graf:
        problems.add("grafana", "GF_AUTH_ANONYMOUS_ORG_ROLE must not be set (no anonymous access)")
    if graf.get("GF_USERS_ALLOW_SIGN_UP", "").lower() != "false":
        problems.add("grafana", "GF_USERS_ALLOW_SIGN_UP must be \"false\"")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("compose", nargs="?", default=str(DEFAULT_COMPOSE))
    ap.add_argument("--schema", default=str(DEFAULT_SCHEMA))
    args = ap.parse_args()
    path = Path(args.compose)
    text = path.read_text()
    doc = yaml.safe_load(text)
    problems = Problems()

    check_interpolation(text, problems)
    check_schema(doc, Path(args.schema), problems)

    services = doc.get("services") or {}
    want = {*DB_HOST_PORTS, "rabbitmq", *map(service_of, ROLES), "prometheus", "grafana"}
    for missing in sorted(want - set(services)):
        problems.add("services", f"missing service {missing}")

    compose_dir = path.resolve().parent
    for db_service, host_port in DB_HOST_PORTS.items():
        if db_service in services:
            db_name = next(v[2] for v in ROLES.values() if v[1] == db_service)
            check_database(db_service, services[db_service], db_name, host_port, problems)
    if "rabbitmq" in services:
        check_rabbitmq(services["rabbitmq"], problems)
    for role in ROLES:
        if service_of(role) in services:
            check_role(role, services[service_of(role)], compose_dir, problems)
    check_observability(services, compose_dir, problems)
    check_exposure_and_secrets(services, compose_dir, problems)

    seen = {}
    for name, svc in services.items():
        if not healthcheck_text(svc):
            problems.add(name, "has no healthcheck")
        for dep in depends_on(svc):
            if dep not in services:
                problems.add(name, f"depends_on unknown service {dep}")
        for host_ip, pub, _ in published_ports(svc):
            if pub:
                key = (host_ip or "0.0.0.0", pub)
                if key in seen:
                    problems.add(name, f"host port {pub} is also published by {seen[key]}")
                seen[key] = name

    for p in problems:
        print(f"  {p}")
    print(f"{path}: {len(services)} services, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
