#!/usr/bin/env bash
# The project's test command (README: "Run the tests"); CI runs exactly this.
# Checks formatting and lints (Rust, and the SAM template), starts what the tests need
# (PostgreSQL, moto server for S3 and SQS, Docker with a stand-in Lambda base image for
# `sam local invoke`), runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "template: cfn-lint and sam validate --lint"
# shellcheck source=lib/sam_local.sh
. scripts/lib/sam_local.sh
ensure_sam
cfn-lint template.yaml
AWS_DEFAULT_REGION=us-east-1 AWS_ACCESS_KEY_ID=lint AWS_SECRET_ACCESS_KEY=lint \
  sam validate --lint --template template.yaml
# The bucket policies, put to an evaluator (moto enforces no bucket policy); and each
# function's own policies written out for the linter below.
rm -rf target/policies
"$SAM_VENV/bin/python" scripts/check_policies.py template.yaml --write-identity-policies target/policies

step "template: checkov (zero failed checks; each skip carries its reason inline), parliament"
# shellcheck source=lib/checkov.sh
. scripts/lib/checkov.sh
ensure_checkov
"$CHECKOV_VENV/bin/checkov" -f template.yaml --framework cloudformation --compact --quiet --skip-download
ensure_parliament
"$PARLIAMENT_VENV/bin/parliament" --directory target/policies --minimum_severity LOW

step "services"
# shellcheck source=lib/postgres.sh
. scripts/lib/postgres.sh
# shellcheck source=lib/postgres_tls.sh
. scripts/lib/postgres_tls.sh
# shellcheck source=lib/moto.sh
. scripts/lib/moto.sh
log=$(mktemp)
trap 'stop_moto; stop_postgres_tls; rm -f "$log"' EXIT
ensure_postgres
ensure_postgres_tls
ensure_moto
# `sam local invoke` of every function (tests/sam_local.rs): the debug bootstraps in a
# stand-in provided.al2023 image (no registry here), reached through docker0.
ensure_docker
cargo build --locked -p sluice-sanitizer -p sluice-transformer -p sluice-forwarder -p sluice-listener \
  -p sluice-dashboard-lambda
build_base_image target/debug/sluice-sanitizer
export SLUICE_SAM_LOCAL=1 SLUICE_SAM_HOST_IP
SLUICE_SAM_HOST_IP=$(docker_host_ip)

# The dashboard in a real browser (crates/dashboard/tests/browser.rs).
# shellcheck source=lib/chromium.sh
. scripts/lib/chromium.sh
ensure_chromium
export SLUICE_BROWSER=1

step "cargo test"
cargo test --workspace --all-features --locked 2>&1 | tee "$log"

# The sanitizer's NEON code, and its differential test against the csv-core path, on aarch64
# under qemu (the rest of the workspace has no code that differs by architecture).
step "cargo test: sluice-core's sanitizer for aarch64, under qemu"
# shellcheck source=lib/arm64.sh
. scripts/lib/arm64.sh
ensure_arm64_cross
cargo clippy -p sluice-core --all-targets --all-features --locked --target "$ARM64_TARGET" -- -D warnings
cargo test -p sluice-core --lib --locked --target "$ARM64_TARGET" -- sanitize::plain sanitize::rows \
  2>&1 | tee -a "$log"

# The book (docs/): it builds, and no link between its pages is broken.
step "the book: mdbook build docs, and its links"
# shellcheck source=lib/mdbook.sh
. scripts/lib/mdbook.sh
build_book

# The book's operator walkthrough, command by command, on the local stack.
step "the walkthrough (docs/src/walkthrough.md, by scripts/test-walkthrough.sh)"
bash scripts/test-walkthrough.sh

# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed/) p += $(i-1); if ($i ~ /^failed/) f += $(i-1) } }
     END { printf "\ntests: %d passed, %d failed\n", p, f }' "$log"
