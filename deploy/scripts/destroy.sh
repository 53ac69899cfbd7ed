#!/usr/bin/env bash
# Destroy everything deploy.sh created, after the operator types "destroy".
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
tf_dir="$repo_root/deploy/terraform"

usage() {
    cat <<USAGE
Usage: deploy/scripts/destroy.sh [-R REGION]

Destroys the whole dop stack: ECS services and cluster, ALB, RDS (no final
snapshot: the data is gone), Amazon MQ, secrets (no recovery window), the
ECR repository with its images, log groups, VPC. Then removes the log groups
that AWS services created outside Terraform (Amazon MQ's, Container
Insights'). The KMS key is scheduled for deletion after a 7-day waiting
period.

Asks you to type the word destroy; nothing happens otherwise. For a script:
echo destroy | deploy/scripts/destroy.sh

  -R REGION  AWS region (default: \$AWS_REGION, \$AWS_DEFAULT_REGION, us-east-1);
             must be the region deploy.sh used
  -h         this help

Needs terraform and the aws CLI v2 with credentials, and the Terraform state
that deploy.sh left in deploy/terraform.
USAGE
}

die() {
    echo "destroy: $*" >&2
    exit 1
}

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
while getopts ":R:h" opt; do
    case "$opt" in
        R) region="$OPTARG" ;;
        h)
            usage
            exit 0
            ;;
        :) die "-$OPTARG needs a value (see -h)" ;;
        *) die "unknown option -$OPTARG (see -h)" ;;
    esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || die "unexpected argument: $1 (see -h)"

for cmd in terraform aws; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd is not installed"
done
export AWS_REGION="$region"

tf() {
    terraform -chdir="$tf_dir" "$@"
}

tf init -input=false >/dev/null
resources=$(tf state list 2>/dev/null | wc -l)
[[ "$resources" -gt 0 ]] || die "the Terraform state in $tf_dir is empty: nothing to destroy (or the state lives elsewhere)"

# What AWS creates outside Terraform, to clean up after the destroy.
broker_id=$(tf output -raw mq_broker_id 2>/dev/null || true)
cluster=$(tf output -raw cluster_name 2>/dev/null || true)
alb_url=$(tf output -raw alb_url 2>/dev/null || true)

cat >&2 <<WARN

  This DESTROYS the dop stack in $region ($resources resources in the state):
  ${alb_url:-the load balancer}, ECS cluster ${cluster:-?}, the RDS database
  and all its data (no final snapshot), the Amazon MQ broker and its queued
  messages, the secrets, the ECR repository and every image in it.
  There is no undo.

WARN
read -r -p "Type destroy to continue: " answer || true
[[ "$answer" == destroy ]] || die "you typed '${answer:-}', not destroy: nothing was changed"

# image_tag only matters when creating task definitions; any value will do.
# certificate_arn has no default: terraform.tfvars (or TF_VAR_) provides it,
# else any well-formed ARN will do for a destroy.
cert_var=()
if [[ -z "${TF_VAR_certificate_arn:-}" ]] &&
    ! grep -Eqs '^[[:space:]]*certificate_arn[[:space:]]*=' "$tf_dir/terraform.tfvars"; then
    cert_var=(-var "certificate_arn=arn:aws:acm:$region:000000000000:certificate/destroy")
fi
tf destroy -input=false -auto-approve -var "aws_region=$region" -var "image_tag=destroy" "${cert_var[@]}"

delete_log_groups() {
    local group
    for group in $(aws logs describe-log-groups --log-group-name-prefix "$1" \
        --query 'logGroups[].logGroupName' --output text 2>/dev/null || true); do
        [[ "$group" != None ]] || continue
        echo "destroy: deleting log group $group" >&2
        aws logs delete-log-group --log-group-name "$group" || true
    done
}
[[ -z "$broker_id" ]] || delete_log_groups "/aws/amazonmq/broker/$broker_id/"
[[ -z "$cluster" ]] || delete_log_groups "/aws/ecs/containerinsights/$cluster/"

cat >&2 <<DONE

destroy: done. Left behind on purpose:
  - the KMS key, deleted by AWS after its 7-day waiting period
  - the Terraform state in $tf_dir (empty now; delete terraform.tfstate* if you like)
  - the local docker images tagged for ECR (docker image ls | grep dkr.ecr)
Check Billing > Cost Explorer over the next day: the daily cost should fall to zero.
DONE
