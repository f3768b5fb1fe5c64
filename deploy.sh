#!/usr/bin/env bash
# Builds Sluice's functions and deploys the stack with AWS SAM; then applies the database
# migrations and prints the stack's outputs. docs/src/deploying.md has the details.
set -euo pipefail
cd "$(dirname "$0")"

usage() {
  cat <<'USAGE'
usage: ./deploy.sh [--stack NAME] [--region REGION] [--config PIPELINES_TOML] [--guided]
                   [--param KEY=VALUE]... [--no-confirm]

Builds every function for its architecture (cargo-lambda with zig, through `sam build`),
deploys template.yaml with `sam deploy`, runs the listener once so the migrations apply (it
migrates at cold start, alone: reserved concurrency 1 and an advisory lock), and prints the
outputs (buckets, queues, functions).

  --stack NAME        stack name (default: sluice, from samconfig.toml)
  --region REGION     AWS region (default: your AWS configuration's)
  --config FILE       pipelines.toml packaged into the functions' layer (default: pipelines.toml)
  --guided            sam deploy --guided: asks for every parameter and saves the answers
  --param KEY=VALUE   a template parameter (repeatable), e.g. --param SubnetIds=subnet-1,subnet-2
  --no-confirm        deploy the change set without asking
  -h, --help          this help

Needs: sam (pip install aws-sam-cli), cargo-lambda and ziglang (pip install cargo-lambda
ziglang), cargo, and AWS credentials for the target account.

Examples:
  ./deploy.sh --guided
  ./deploy.sh --param VpcId=vpc-0abc --param SubnetIds=subnet-1,subnet-2 \
              --param RouteTableIds=rtb-1 --no-confirm
USAGE
}

stack=sluice region= config=pipelines.toml guided= confirm=--confirm-changeset
params=()
while [ $# -gt 0 ]; do
  case "$1" in
    --stack) stack=$2; shift 2 ;;
    --region) region=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --guided) guided=--guided; shift ;;
    --param) params+=("$2"); shift 2 ;;
    --no-confirm) confirm=--no-confirm-changeset; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "deploy.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

fail() { echo "deploy.sh: $*" >&2; exit 1; }
step() { echo "==> $*" >&2; }

step "pre-flight checks"
command -v sam >/dev/null || fail "sam not found: pip install aws-sam-cli"
command -v cargo >/dev/null || fail "cargo not found: install Rust (https://rustup.rs)"
command -v cargo-lambda >/dev/null || fail "cargo-lambda not found: pip install cargo-lambda"
python3 -m ziglang version >/dev/null 2>&1 || command -v zig >/dev/null ||
  fail "zig not found (cargo-lambda cross-compiles with it): pip install ziglang"
[ -f "$config" ] || fail "pipeline config $config not found"
# sam's own Python has boto3: ask it who we are, before building for minutes.
sam_python=$(head -1 "$(command -v sam)" | sed 's/^#!//')
export AWS_REGION=${region:-${AWS_REGION:-${AWS_DEFAULT_REGION:-}}}
[ -n "$AWS_REGION" ] || AWS_REGION=$("$sam_python" -c 'import boto3; print(boto3.session.Session().region_name or "")')
[ -n "$AWS_REGION" ] || fail "no AWS region: pass --region or set AWS_REGION"
account=$("$sam_python" -c 'import boto3; print(boto3.client("sts").get_caller_identity()["Account"])' 2>/dev/null) ||
  fail "no usable AWS credentials (aws configure, AWS_PROFILE, or SSO login)"
echo "account $account, region $AWS_REGION, stack $stack" >&2
SAM_CLI_TELEMETRY=0 sam validate --lint --region "$AWS_REGION" >/dev/null ||
  fail "template.yaml does not validate: run sam validate --lint"

step "functions' layer (pipeline config, RDS CA bundle)"
deploy/prepare-layer.sh "$config"

step "sam build"
SAM_CLI_TELEMETRY=0 sam build --region "$AWS_REGION"

step "sam deploy"
overrides=()
[ ${#params[@]} -gt 0 ] && overrides=(--parameter-overrides "${params[@]}")
SAM_CLI_TELEMETRY=0 sam deploy --stack-name "$stack" --region "$AWS_REGION" $guided $confirm \
  "${overrides[@]}"

step "migrations (the listener migrates at cold start)"
"$sam_python" - "$stack" <<'PY'
import boto3, sys
stack = sys.argv[1]
outputs = {o["OutputKey"]: o["OutputValue"] for o in
           boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]["Outputs"]}
answer = boto3.client("lambda").invoke(
    FunctionName=outputs["ListenerFunctionName"],
    Payload=open("events/listener-schedule.json").read())
body = answer["Payload"].read().decode()
if answer.get("FunctionError"):
    sys.exit(f"deploy.sh: the listener failed, so the migrations may not have applied: {body}")
print(f"listener ran: {body}", file=sys.stderr)
PY

step "outputs"
SAM_CLI_TELEMETRY=0 sam list stack-outputs --stack-name "$stack" --region "$AWS_REGION" --output table
