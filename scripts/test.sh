#!/usr/bin/env bash
# The project's test command (README: "Run the tests"); CI runs exactly this.
# Checks formatting and lints, then runs every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings

step "cargo test"
cargo test --workspace --all-features --locked
