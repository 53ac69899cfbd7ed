#!/usr/bin/env bash
# Build the one dop image (the repository's Dockerfile) and push it to the
# project's ECR repository. Every role runs this same image.
set -euo pipefail

script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$script_dir/../.." && pwd)
tf_dir="$repo_root/deploy/terraform"

usage() {
    cat <<USAGE
Usage: deploy/scripts/build-and-push.sh [-t TAG] [-r REPOSITORY_URL] [-R REGION] [-p PLATFORM] [-c CA_BUNDLE]

Builds the dop image from the repository's Dockerfile and pushes it to ECR.
The image carries Amazon RDS's CA bundle (deploy/certs/rds-global-bundle.pem,
committed; what the tasks verify RDS with). It is checked before the build
(deploy/scripts/rds_ca_bundle.py --verify).

  -t TAG             image tag (default: the git commit, short, plus
                     -dirty-<time> when the work tree has changes; the
                     repository's tags are immutable)
  -r REPOSITORY_URL  ECR repository URL (default: terraform output
                     ecr_repository_url, else the repository named "dop")
  -R REGION          AWS region (default: \$AWS_REGION, \$AWS_DEFAULT_REGION, us-east-1)
  -p PLATFORM        docker build platform (default: linux/amd64, what the
                     task definitions run)
  -h                 this help

Needs docker (with a running engine), the aws CLI v2 with credentials, git,
python3 and openssl.
Prints "image: REPOSITORY_URL:TAG" last. A tag that is already in the
repository is not rebuilt.
USAGE
}

die() {
    echo "build-and-push: $*" >&2
    exit 1
}

default_tag() {
    local tag
    tag=$(git -C "$repo_root" rev-parse --short=12 HEAD 2>/dev/null) || die "not a git checkout: pass -t TAG"
    if [[ -n "$(git -C "$repo_root" status --porcelain --untracked-files=no 2>/dev/null)" ]]; then
        tag="$tag-dirty-$(date -u +%Y%m%d%H%M%S)"
    fi
    echo "$tag"
}

tag=""
repo_url=""
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}"
platform="linux/amd64"
while getopts ":t:r:R:p:h" opt; do
    case "$opt" in
        t) tag="$OPTARG" ;;
        r) repo_url="$OPTARG" ;;
        R) region="$OPTARG" ;;
        p) platform="$OPTARG" ;;
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

for cmd in docker aws git python3 openssl; do
    command -v "$cmd" >/dev/null 2>&1 || die "$cmd is not installed"
done

[[ -n "$tag" ]] || tag=$(default_tag)
if [[ -z "$repo_url" ]] && command -v terraform >/dev/null 2>&1; then
    repo_url=$(terraform -chdir="$tf_dir" output -raw ecr_repository_url 2>/dev/null || true)
fi
if [[ -z "$repo_url" ]]; then
    repo_url=$(aws ecr describe-repositories --region "$region" --repository-names dop \
        --query 'repositories[0].repositoryUri' --output text 2>/dev/null) ||
        die "no ECR repository found: run deploy/scripts/deploy.sh (it creates it) or pass -r"
fi
registry="${repo_url%%/*}"
repo_name="${repo_url#*/}"
image="$repo_url:$tag"

if aws ecr describe-images --region "$region" --repository-name "$repo_name" \
    --image-ids imageTag="$tag" >/dev/null 2>&1; then
    echo "build-and-push: $image is already in ECR; not rebuilding" >&2
    echo "image: $image"
    exit 0
fi

python3 "$script_dir/rds_ca_bundle.py" --verify ||
    die "the RDS CA bundle is not fit to ship (deploy/certs/README.md); not building"

echo "build-and-push: building $image for $platform" >&2
docker build --platform "$platform" --tag "$image" --file "$repo_root/Dockerfile" "$repo_root"

echo "build-and-push: logging in to $registry" >&2
aws ecr get-login-password --region "$region" |
    docker login --username AWS --password-stdin "$registry" >/dev/null

echo "build-and-push: pushing $image" >&2
docker push "$image"
echo "image: $image"
