#!/usr/bin/env bash
# Deploy dop to AWS in stages: the ECR repository first, then the image, then
# everything else, then `dop migrate` as a one-off ECS task.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
tf_dir="$repo_root/deploy/terraform"

usage() {
    cat <<USAGE
Usage: deploy/scripts/deploy.sh [-R REGION] [-t TAG] [-y] [-s] [-m]

  1. terraform init
  2. terraform apply -target the ECR repository (and its KMS key)
  3. deploy/scripts/build-and-push.sh: build the image, push it as TAG
  4. terraform apply everything else with image_tag=TAG (VPC, ALB, RDS,
     Amazon MQ, secrets, ECS services); a new TAG rolls the three services
  5. aws ecs run-task: \`dop migrate\` once, waits for it, fails on a
     non-zero exit (the roles also migrate their own database at start;
     a MySQL lock keeps the two from colliding)
  6. waits until the three services are stable, prints the ALB URL

  -R REGION  AWS region (default: \$AWS_REGION, \$AWS_DEFAULT_REGION, us-east-1);
             passed to Terraform as aws_region
  -t TAG     image tag (default: the git commit, see build-and-push.sh -h)
  -y         do not ask before each terraform apply (-auto-approve)
  -s         skip the build: TAG must already be in ECR
  -m         skip the migrate task
  -h         this help

Other Terraform variables come from deploy/terraform/terraform.tfvars
(see terraform.tfvars.example); certificate_arn has no default and must be
set there (or as TF_VAR_certificate_arn). Needs terraform >= 1.5, the aws CLI v2 with
credentials, docker, git. Undo everything with deploy/scripts/destroy.sh.
USAGE
}

die() {
    echo "deploy: $*" >&2
    exit 1
}

step() {
    printf '\n==> %s\n' "$*" >&2
}

region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
tag=""
auto_approve=()
skip_build=0
skip_migrate=0
while getopts ":R:t:ysmh" opt; do
    case "$opt" in
        R) region="$OPTARG" ;;
        t) tag="$OPTARG" ;;
        y) auto_approve=(-auto-approve) ;;
        s) skip_build=1 ;;
        m) skip_migrate=1 ;;
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

if [[ -z "${TF_VAR_certificate_arn:-}" ]] &&
    ! grep -Eqs '^[[:space:]]*certificate_arn[[:space:]]*=' "$tf_dir/terraform.tfvars"; then
    die "set certificate_arn in $tf_dir/terraform.tfvars (an ACM certificate; docs/deploy.md, HTTPS)"
fi

for cmd in terraform aws docker git; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd is not installed"
done
export AWS_REGION="$region"

tf() {
    terraform -chdir="$tf_dir" "$@"
}

if [[ -z "$tag" ]]; then
    tag=$(git -C "$repo_root" rev-parse --short=12 HEAD) || die "not a git checkout: pass -t TAG"
    if [[ -n "$(git -C "$repo_root" status --porcelain --untracked-files=no)" ]]; then
        tag="$tag-dirty-$(date -u +%Y%m%d%H%M%S)"
    fi
fi
tf_vars=(-var "aws_region=$region" -var "image_tag=$tag")

step "1/6 terraform init"
tf init -input=false

step "2/6 ECR repository"
tf apply -input=false "${auto_approve[@]}" "${tf_vars[@]}" \
    -target=aws_ecr_repository.dop -target=aws_ecr_lifecycle_policy.dop
repo_url=$(tf output -raw ecr_repository_url)
[[ -n "$repo_url" ]] || die "terraform output ecr_repository_url is empty"
repo_name="${repo_url#*/}"

step "3/6 image $repo_url:$tag"
if [[ "$skip_build" == 1 ]]; then
    aws ecr describe-images --repository-name "$repo_name" --image-ids imageTag="$tag" >/dev/null ||
        die "-s given but $repo_url:$tag is not in ECR (pass -t with a tag that build-and-push.sh pushed)"
else
    "$script_dir/build-and-push.sh" -t "$tag" -r "$repo_url" -R "$region"
fi

step "4/6 everything else (VPC, ALB, RDS, Amazon MQ, secrets, ECS) with image_tag=$tag"
echo "deploy: expect a first apply to take 20-30 minutes, most of it waiting for RDS and Amazon MQ" >&2
tf apply -input=false "${auto_approve[@]}" "${tf_vars[@]}"

cluster=$(tf output -raw cluster_name)
alb_url=$(tf output -raw alb_url)

if [[ "$skip_migrate" == 0 ]]; then
    step "5/6 dop migrate (one-off ECS task)"
    task_arn=$(aws ecs run-task \
        --cluster "$cluster" \
        --task-definition "$(tf output -raw migrate_task_definition)" \
        --launch-type FARGATE \
        --platform-version LATEST \
        --started-by deploy.sh \
        --network-configuration "$(tf output -raw migrate_network_configuration)" \
        --query 'tasks[0].taskArn' --output text)
    [[ -n "$task_arn" && "$task_arn" != None ]] || die "run-task started no task"
    echo "deploy: migrate task $task_arn; waiting for it to stop" >&2
    aws ecs wait tasks-stopped --cluster "$cluster" --tasks "$task_arn"
    exit_code=$(aws ecs describe-tasks --cluster "$cluster" --tasks "$task_arn" \
        --query 'tasks[0].containers[0].exitCode' --output text)
    if [[ "$exit_code" != 0 ]]; then
        reason=$(aws ecs describe-tasks --cluster "$cluster" --tasks "$task_arn" \
            --query 'tasks[0].stoppedReason' --output text)
        die "dop migrate exited with '$exit_code' ($reason); its log: aws logs tail $(tf output -raw migrate_log_group) --since 30m"
    fi
    echo "deploy: migrations applied" >&2
else
    step "5/6 dop migrate skipped (-m)"
fi

step "6/6 waiting for the three services to be stable"
mapfile -t services < <(tf output -json service_names | tr -d '{}" ' | tr ',' '\n' | cut -d: -f2 | sed '/^$/d')
aws ecs wait services-stable --cluster "$cluster" --services "${services[@]}"

cat <<DONE

dop is up at $alb_url (point your certificate's DNS name at it)

Public: POST /orders, GET /orders/<order_id>, GET /payments/<order_id>.
Stock (POST /inventory) and /admin/* are routed only for operator_cidrs and
need the operator token (terraform output -raw admin_token):

  curl -s -X POST $alb_url/inventory -H "Authorization: Bearer \$TOKEN" \\
       -H 'Content-Type: application/json' -d '{"product_id":1001,"available_qty":100}'
  curl -s -X POST $alb_url/orders -H 'Content-Type: application/json' \\
       -d '{"user_id":42,"product_id":1001,"quantity":2,"total_amount":199.98}'
  curl -s $alb_url/orders/<order_id>

Logs: aws logs tail $(tf output -raw migrate_log_group | sed 's|/migrate$|/order|') --follow   (inventory, payment alike)
Tear down: deploy/scripts/destroy.sh
DONE
