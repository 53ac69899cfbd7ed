#!/usr/bin/env python3
"""Static checks of deploy/terraform/ without the terraform binary or a network.

  check_terraform.py rules [DIR]       parse every .tf (python-hcl2, the parser
                                       checkov uses) and assert the project's
                                       rules: what issue 6 and docs/contract.md section 8
                                       ask for, plus house rules (every variable
                                       documented and defaulted, every log group
                                       with a retention, every checkov skip with
                                       a reason)
  check_terraform.py interpolation [DIR]
                                       flag "${x}" strings that are one
                                       interpolation and nothing else: terraform
                                       fmt rewrites them to x, hclwrite (the
                                       formatter check_hcl_format.js runs) does not
  check_terraform.py shim DIR OUT      copy DIR (with tests/) to OUT with the
                                       random provider replaced by terraform_data,
                                       for `terraform validate` / `terraform test`
                                       where only the AWS provider is available
                                       offline

Prints one line per problem and exits 1 when there is any.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DIR = REPO / "deploy" / "terraform"

ROLES = {"order": 8081, "inventory": 8082, "payment": 8083}
# The customer API, the only routes the ALB forwards for everyone:
# route name -> (role, methods, paths).
PUBLIC_ROUTES = {
    "create-order": ("order", ["POST"], ["/orders"]),
    "get-order": ("order", ["GET"], ["/orders/*"]),
    "get-payment": ("payment", ["GET"], ["/payments/*"]),
}
# Bearer tokens (env name) each role must get from Secrets Manager.
ROLE_TOKENS = {
    "order": {"DOP_ADMIN__TOKEN", "DOP_ADMIN__READ_TOKEN"},
    "inventory": {"DOP_ADMIN__TOKEN"},
    "payment": set(),
}
TOKEN_SECRETS = {"DOP_ADMIN__TOKEN": "admin-token", "DOP_ADMIN__READ_TOKEN": "admin-read-token"}
REQUIRED_OUTPUTS = {"alb_url", "cluster_name", "ecr_repository_url"}
SENSITIVE_OUTPUTS = {"admin_token", "admin_read_token"}
# Variables with no default on purpose: the caller must decide (documented in
# terraform.tfvars.example and docs/deploy.md).
REQUIRED_VARIABLES = {"certificate_arn"}
SKIP_RE = re.compile(r"#\s*checkov:skip=([A-Z0-9_]+)(?::(.*))?$")


def tf_files(d: Path):
    return sorted(d.glob("*.tf"))


def strip(v):
    """One attribute value as a plain Python value.

    checkov's python-hcl2 fork wraps every attribute value in a one-element
    list and every expression in "${...}"; unwrap the list and drop quotes.
    """
    if isinstance(v, list) and len(v) == 1:
        v = v[0]
    if isinstance(v, str):
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] == '"':
            v = v[1:-1]
    return v


def block(body, key):
    """The first nested block `key` of a body, as a dict ({} when absent)."""
    v = body.get(key)
    if isinstance(v, list):
        v = v[0] if v else {}
    return v if isinstance(v, dict) else {}


def blocks(doc, kind):
    """[(type, name, body)] for resource/data blocks, [(name, body)] otherwise."""
    out = []
    for entry in doc.get(kind, []):
        for k, v in entry.items():
            if kind in ("resource", "data"):
                for name, body in v.items():
                    out.append((strip(k), strip(name), body))
            else:
                out.append((strip(k), v))
    return out


def parse_all(d: Path, problems: list):
    import hcl2  # from checkov's python-hcl2 fork; imported late for the shim mode

    docs = {}
    for f in tf_files(d):
        try:
            with f.open() as fh:
                docs[f.name] = hcl2.load(fh)
        except Exception as e:  # noqa: BLE001 - any parse failure is the finding
            problems.append(f"{f.name}: does not parse as HCL: {str(e).splitlines()[0]}")
    return docs


def check_rules(d: Path) -> list:
    problems: list = []
    docs = parse_all(d, problems)
    texts = {f.name: f.read_text() for f in tf_files(d)}
    alltext = "\n".join(texts.values())

    resources, datas, variables, outputs, locals_ = [], [], [], [], {}
    terraform_blocks = []
    for doc in docs.values():
        resources += blocks(doc, "resource")
        datas += blocks(doc, "data")
        variables += blocks(doc, "variable")
        outputs += blocks(doc, "output")
        for loc in doc.get("locals", []):
            locals_.update({k: strip(v) for k, v in loc.items()})
        terraform_blocks += doc.get("terraform", [])

    def of_type(t):
        return [(n, b) for (rt, n, b) in resources if rt == t]

    # --- provider pin -------------------------------------------------------
    aws_pin = None
    for tb in terraform_blocks:
        for rp in tb.get("required_providers", []):
            if "aws" in rp:
                aws = strip(rp["aws"])
                aws_pin = strip(aws.get("version"))
                if strip(aws.get("source")) != "hashicorp/aws":
                    problems.append("versions.tf: aws provider source must be hashicorp/aws")
    if aws_pin is None:
        problems.append("versions.tf: no required_providers.aws")
    elif not re.fullmatch(r"~>\s*5(\.\d+)*", aws_pin):
        problems.append(f"versions.tf: aws provider must be pinned '~> 5...', is {aws_pin!r}")

    # --- variables and outputs ------------------------------------------------
    for name, body in variables:
        for key in ("description", "type"):
            if key not in body:
                problems.append(f"variable {name}: no {key}")
        if "default" not in body and name not in REQUIRED_VARIABLES:
            problems.append(f"variable {name}: no default (variables.tf must work with defaults alone)")
    names = {n for n, _ in outputs}
    for missing in sorted(REQUIRED_OUTPUTS - names):
        problems.append(f"outputs: missing output {missing}")
    for name, body in outputs:
        if "description" not in body:
            problems.append(f"output {name}: no description")
        if name in SENSITIVE_OUTPUTS and strip(body.get("sensitive")) not in (True, "true"):
            problems.append(f"output {name}: must be sensitive = true")
    for missing in sorted(SENSITIVE_OUTPUTS - names):
        problems.append(f"outputs: missing output {missing} (sensitive)")
    example = d / "terraform.tfvars.example"
    if not example.is_file():
        problems.append("terraform.tfvars.example is missing")
    else:
        declared = {n for n, _ in variables}
        for m in re.finditer(r"^\s*#?\s*([a-z_][a-z0-9_]*)\s*=", example.read_text(), re.M):
            if m.group(1) not in declared:
                problems.append(f"terraform.tfvars.example sets undeclared variable {m.group(1)}")

    # --- one image, one repository, three services --------------------------
    if len(of_type("aws_ecr_repository")) != 1:
        problems.append(f"want exactly ONE aws_ecr_repository, found {len(of_type('aws_ecr_repository'))}")
    roles = locals_.get("roles")
    if not isinstance(roles, dict) or set(roles) != set(ROLES):
        problems.append(f"locals.roles must list exactly {sorted(ROLES)}")
    else:
        for role, port in ROLES.items():
            if roles[role].get("port") != port:
                problems.append(f"locals.roles.{role}.port must be {port}")
            tokens = roles[role].get("tokens") or {}
            if not isinstance(tokens, dict) or set(tokens) != ROLE_TOKENS[role]:
                problems.append(f"locals.roles.{role}.tokens must be exactly {sorted(ROLE_TOKENS[role])}")
            else:
                for env, secret in tokens.items():
                    if strip(secret) != TOKEN_SECRETS[env]:
                        problems.append(f"locals.roles.{role}.tokens.{env} must name the secret {TOKEN_SECRETS[env]}")
            if "ca_env" not in roles[role]:
                problems.append(f"locals.roles.{role}: no ca_env (DOP_<ROLE>__DATABASE_CA_FILE, to verify RDS)")
    services = of_type("aws_ecs_service")
    if len(services) != 1 or strip(services[0][1].get("for_each")) != "${local.roles}":
        problems.append("want one aws_ecs_service with for_each = local.roles (three services from one definition)")
    else:
        body = services[0][1]
        if strip(body.get("launch_type")) != "FARGATE":
            problems.append("aws_ecs_service: launch_type must be FARGATE")
    tds = dict(of_type("aws_ecs_task_definition"))
    if strip(tds.get("role", {}).get("for_each")) != "${local.roles}":
        problems.append("want aws_ecs_task_definition.role with for_each = local.roles")
    if not re.search(r'command\s*=\s*\["serve",\s*"--role",\s*each\.key\]', alltext):
        problems.append('aws_ecs_task_definition.role: container command must be ["serve", "--role", each.key]')
    if "migrate" not in tds or not re.search(r'command\s*=\s*\["migrate"\]', alltext):
        problems.append('want aws_ecs_task_definition.migrate running ["migrate"] (the one-off migrate task)')
    for name, body in tds.items():
        c = str(body.get("container_definitions", ""))
        if "local.image" not in c:
            problems.append(f"aws_ecs_task_definition.{name}: image must be local.image (the one ECR image)")
        if re.search(r"environment[^\]]*(PASSWORD|DATABASE_URL|RABBITMQ_URL|TOKEN)", c):
            problems.append(f"aws_ecs_task_definition.{name}: a secret is passed in environment; use secrets")
        if "secrets" not in c:
            problems.append(f"aws_ecs_task_definition.{name}: no secrets (database URL from Secrets Manager)")

    # --- replicas, autoscaling, a clustered broker, Multi-AZ (issue 18) -------
    if services and strip(services[0][1].get("desired_count")) != "${local.desired_counts[each.key]}":
        problems.append("aws_ecs_service.role: desired_count must be local.desired_counts[each.key] (a count per role)")
    policies = dict(of_type("aws_appautoscaling_policy"))
    if "order_cpu" not in policies or "queue_backlog" not in policies:
        problems.append("want aws_appautoscaling_policy.order_cpu (CPU) and .queue_backlog (inventory and payment on queue depth)")
    elif "AWS/AmazonMQ" not in str(policies["queue_backlog"]) or "MessageCount" not in str(policies["queue_backlog"]):
        problems.append("aws_appautoscaling_policy.queue_backlog must track the Amazon MQ queue's MessageCount")
    brokers = dict(of_type("aws_mq_broker"))
    if strip(brokers.get("rabbitmq", {}).get("deployment_mode")) != "${var.mq_deployment_mode}":
        problems.append("aws_mq_broker.rabbitmq: deployment_mode must be var.mq_deployment_mode")
    if strip(dict(variables).get("mq_deployment_mode", {}).get("default")) != "SINGLE_INSTANCE":
        problems.append("variable mq_deployment_mode must default to SINGLE_INSTANCE (the cheap demo)")
    if "DOP_RABBITMQ__QUEUE_TYPE" not in alltext or "local.mq_cluster" not in alltext:
        problems.append("a CLUSTER_MULTI_AZ broker must set DOP_RABBITMQ__QUEUE_TYPE=quorum in the tasks (local.mq_cluster)")
    dbs = dict(of_type("aws_db_instance"))
    if strip(dbs.get("mysql", {}).get("multi_az")) != "${var.db_multi_az}":
        problems.append("aws_db_instance.mysql: multi_az must be var.db_multi_az")
    if example.is_file():
        ex = example.read_text()
        if not re.search(r'^mq_deployment_mode\s*=\s*"CLUSTER_MULTI_AZ"', ex, re.M) or not re.search(
            r"^db_multi_az\s*=\s*true", ex, re.M
        ):
            problems.append("terraform.tfvars.example (the production example) must set mq_deployment_mode = \"CLUSTER_MULTI_AZ\" and db_multi_az = true")

    # --- ALB ------------------------------------------------------------------
    tgs = of_type("aws_lb_target_group")
    for name, body in tgs:
        if strip(block(body, "health_check").get("path")) != "/health":
            problems.append(f"aws_lb_target_group.{name}: health_check path must be /health")
    listeners = dict(of_type("aws_lb_listener"))
    https = listeners.get("https", {})
    if strip(https.get("protocol")) != "HTTPS" or strip(https.get("port")) != 443:
        problems.append("want aws_lb_listener.https: protocol HTTPS on port 443")
    else:
        if "count" in https or "for_each" in https:
            problems.append("aws_lb_listener.https must always exist (no count/for_each)")
        if strip(https.get("certificate_arn")) != "${var.certificate_arn}":
            problems.append("aws_lb_listener.https: certificate_arn must be var.certificate_arn")
        if strip(block(https, "default_action").get("type")) != "fixed-response":
            problems.append("aws_lb_listener.https: the default action must be a fixed 404, not a forward")
    var_bodies = dict(variables)
    ssl_default = str(strip(var_bodies.get("ssl_policy", {}).get("default", "")))
    if not ssl_default.startswith("ELBSecurityPolicy-TLS13-"):
        problems.append("variable ssl_policy must default to an ELBSecurityPolicy-TLS13-* policy")
    if "certificate_arn" in var_bodies and "default" in var_bodies["certificate_arn"]:
        problems.append("variable certificate_arn must have no default (HTTPS is not optional)")
    http = listeners.get("http", {})
    action = block(http, "default_action")
    redirect = block(action, "redirect")
    if (strip(http.get("port")) != 80 or strip(action.get("type")) != "redirect"
            or strip(redirect.get("protocol")) != "HTTPS" or strip(redirect.get("status_code")) != "HTTP_301"):
        problems.append("aws_lb_listener.http: port 80 must only redirect (301) to HTTPS")
    for name, body in listeners.items():
        if name not in ("http", "https"):
            problems.append(f"aws_lb_listener.{name}: unexpected listener (want http redirect and https only)")

    rules = dict(of_type("aws_lb_listener_rule"))
    if set(rules) != {"public", "operator"}:
        problems.append(f"want aws_lb_listener_rule.public and .operator, found {sorted(rules)}")
    for name, body in rules.items():
        if strip(body.get("listener_arn")) != "${aws_lb_listener.https.arn}":
            problems.append(f"aws_lb_listener_rule.{name}: must be on the HTTPS listener")
    public = locals_.get("public_routes")
    if not isinstance(public, dict):
        problems.append("want locals.public_routes (the customer API)")
    else:
        got = {k: (strip(v.get("role")), [strip(m) for m in v.get("methods", [])],
                   [strip(p) for p in v.get("paths", [])]) for k, v in public.items()}
        if got != PUBLIC_ROUTES:
            problems.append(f"locals.public_routes must be exactly {PUBLIC_ROUTES}, is {got}")
        for k, (_, methods, paths) in got.items():
            if not methods:
                problems.append(f"locals.public_routes.{k}: a public route must name its methods")
            for p in paths:
                if p.startswith("/admin") or p.startswith("/inventory"):
                    problems.append(f"locals.public_routes.{k}: {p} must not be public")
    pub_conds = [next(iter(c)) for c in rules.get("public", {}).get("condition", [])]
    if sorted(pub_conds) != ["http_request_method", "path_pattern"]:
        problems.append("aws_lb_listener_rule.public: must match on http_request_method and path_pattern")
    op = rules.get("operator", {})
    op_conds = [next(iter(c)) for c in op.get("condition", [])]
    if "source_ip" not in op_conds:
        problems.append("aws_lb_listener_rule.operator: must be limited by a source_ip condition")
    if strip(op.get("for_each")) != "${local.operator_rules}":
        problems.append("aws_lb_listener_rule.operator: for_each must be local.operator_rules (built from var.operator_cidrs)")
    if "operator_cidrs" in var_bodies and strip(var_bodies["operator_cidrs"].get("default")) != []:
        problems.append("variable operator_cidrs must default to [] (the operator API not exposed)")
    if re.search(r'"/(admin|inventory)[^"]*"', texts.get("alb.tf", "")):
        problems.append("alb.tf: an /admin or /inventory path written into alb.tf; route it through locals.operator_routes")

    # --- tokens and database TLS ------------------------------------------------
    randoms = {n for n, _ in of_type("random_password")}
    for want in ("admin_token", "admin_read_token"):
        if want not in randoms:
            problems.append(f"want random_password.{want} (always generated)")
    for secret in TOKEN_SECRETS.values():
        if f'"{secret}"' not in texts.get("secrets.tf", ""):
            problems.append(f"secrets.tf: the {secret} secret is missing from Secrets Manager")
    role_td = str(tds.get("role", {}).get("container_definitions", ""))
    if "each.value.tokens" not in role_td or "aws_secretsmanager_secret.dop[secret].arn" not in role_td:
        problems.append("aws_ecs_task_definition.role: the tokens must be ECS secrets from Secrets Manager (each.value.tokens)")
    for name, body in tds.items():
        if "ca_env" not in str(body.get("container_definitions", "")) or "var.db_ca_file" not in str(body.get("container_definitions", "")):
            problems.append(f"aws_ecs_task_definition.{name}: must pass var.db_ca_file as DOP_<ROLE>__DATABASE_CA_FILE")
    url_params = str(strip(var_bodies.get("db_url_params", {}).get("default", "")))
    if "require_ssl=true" not in url_params or "verify_ca=true" not in url_params:
        problems.append(f"variable db_url_params must default to require_ssl=true&verify_ca=true, is {url_params!r}")
    if not str(strip(var_bodies.get("db_ca_file", {}).get("default", ""))).endswith(".pem"):
        problems.append("variable db_ca_file must default to the RDS CA bundle's path in the image")

    # --- data stores and secrets ----------------------------------------------
    dbs = of_type("aws_db_instance")
    if len(dbs) != 1:
        problems.append(f"want exactly one aws_db_instance, found {len(dbs)}")
    else:
        body = dbs[0][1]
        if strip(body.get("engine")) != "mysql":
            problems.append("aws_db_instance: engine must be mysql")
        if strip(body.get("publicly_accessible")) not in (False, "false"):
            problems.append("aws_db_instance: publicly_accessible must be false")
        if strip(body.get("storage_encrypted")) not in (True, "true"):
            problems.append("aws_db_instance: storage_encrypted must be true")
    var_defaults = {n: strip(b.get("default")) for n, b in variables}
    if not str(var_defaults.get("db_engine_version", "")).startswith("8"):
        problems.append("variable db_engine_version must default to a MySQL 8 version")
    mqs = of_type("aws_mq_broker")
    if len(mqs) != 1 or strip(mqs[0][1].get("engine_type")) != "RabbitMQ":
        problems.append("want one aws_mq_broker with engine_type RabbitMQ")
    elif strip(mqs[0][1].get("publicly_accessible")) not in (False, "false"):
        problems.append("aws_mq_broker: publicly_accessible must be false")
    if "amqps://" not in alltext or ":5671" not in alltext:
        problems.append("the RabbitMQ URL must be amqps:// on 5671")
    if len(of_type("random_password")) < 2:
        problems.append("want random_password resources for the database and broker passwords")
    if not of_type("aws_secretsmanager_secret_version"):
        problems.append("want the generated URLs stored as aws_secretsmanager_secret_version")
    for name, body in of_type("aws_cloudwatch_log_group"):
        if "retention_in_days" not in body:
            problems.append(f"aws_cloudwatch_log_group.{name}: no retention_in_days")

    # --- network ----------------------------------------------------------------
    if len(of_type("aws_nat_gateway")) != 1:
        problems.append("want exactly one aws_nat_gateway")
    subnets = dict(of_type("aws_subnet"))
    for kind in ("public", "private"):
        if str(strip(subnets.get(kind, {}).get("count"))) != "2":
            problems.append(f"want aws_subnet.{kind} with count = 2 (two AZs)")

    # --- IAM: the execution role is least privilege -----------------------------
    if "AmazonECSTaskExecutionRolePolicy" in alltext:
        problems.append("the execution role must not use the broad AmazonECSTaskExecutionRolePolicy")

    # --- checkov skips carry a reason --------------------------------------------
    for fname, text in texts.items():
        for lineno, line in enumerate(text.splitlines(), 1):
            m = SKIP_RE.search(line.strip())
            if m and len((m.group(2) or "").strip()) < 20:
                problems.append(f"{fname}:{lineno}: checkov skip {m.group(1)} needs a real reason after the colon")
    return problems


def single_interpolations(text: str):
    """Yield (line, snippet) for string literals that are exactly one ${...}."""
    i = 0
    n = len(text)
    while True:
        i = text.find('"${', i)
        if i < 0:
            return
        j = i + 3
        depth = 1
        in_str = False
        while j < n and depth:
            c = text[j]
            if in_str:
                if c == "\\":
                    j += 1
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            j += 1
        if depth == 0 and j < n and text[j] == '"':
            line = text.count("\n", 0, i) + 1
            yield line, text[i:j + 1]
        i += 3


def check_interpolation(d: Path) -> list:
    problems = []
    for f in tf_files(d) + sorted((d / "tests").glob("*.tftest.hcl")):
        text = f.read_text()
        # comments can hold anything
        text = "\n".join(re.sub(r"^\s*#.*$", "", ln) for ln in text.splitlines())
        for line, snippet in single_interpolations(text):
            problems.append(f"{f.name}:{line}: {snippet} is one interpolation and nothing else; "
                            f"write the expression without quotes (terraform fmt would)")
    return problems


def shim(src: Path, out: Path) -> None:
    """The configuration with random_password replaced by terraform_data."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    # 32 letters and digits: what random_password(special = false) produces.
    fake = "Shim0123456789Shim0123456789Shim"
    for f in tf_files(src):
        s = f.read_text()
        s = re.sub(r'resource "random_password" "(\w+)" \{[^}]*\}',
                   lambda m: f'resource "terraform_data" "random_password_{m.group(1)}" {{\n  input = "{fake}"\n}}', s)
        s = re.sub(r"random_password\.(\w+)\.result", r"terraform_data.random_password_\1.output", s)
        s = re.sub(r"\n\s*random = \{[^}]*\}", "", s)
        (out / f.name).write_text(s)
    if (src / "tests").is_dir():
        shutil.copytree(src / "tests", out / "tests")


def main(argv) -> int:
    if len(argv) < 2 or argv[1] not in ("rules", "interpolation", "shim"):
        print(__doc__)
        return 2
    mode = argv[1]
    if mode == "shim":
        if len(argv) != 4:
            print("usage: check_terraform.py shim DIR OUT")
            return 2
        shim(Path(argv[2]), Path(argv[3]))
        return 0
    d = Path(argv[2]) if len(argv) > 2 else DEFAULT_DIR
    problems = check_rules(d) if mode == "rules" else check_interpolation(d)
    for p in problems:
        print(f"  {p}")
    print(f"{d}: {len(tf_files(d))} files, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
