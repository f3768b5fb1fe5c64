# Sourced by scripts/test.sh: what it takes to run sluice-core's tests for aarch64 (the
# Lambdas' default architecture) on an x86-64 machine: Rust's aarch64 standard library, Debian's
# cross linker and qemu-user to run the test binary. The sanitizer has NEON code of its own
# (crates/core/src/sanitize/plain.rs) that x86 tests never compile.

ARM64_TARGET=aarch64-unknown-linux-gnu

ensure_arm64_cross() {
  if ! rustup target list --installed | grep -qx "$ARM64_TARGET"; then
    rustup target add "$ARM64_TARGET"
  fi
  if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || ! command -v qemu-aarch64-static >/dev/null 2>&1; then
    echo "installing gcc-aarch64-linux-gnu and qemu-user-static"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu \
      libc6-dev-arm64-cross qemu-user-static >/dev/null
  fi
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
  export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64-static -L /usr/aarch64-linux-gnu"
}
