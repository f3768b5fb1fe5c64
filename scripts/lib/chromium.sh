# Sourced by scripts/test.sh: Debian's chromium and chromedriver for the dashboard's browser
# test (crates/dashboard/tests/browser.rs), installed with apt when absent.

ensure_chromium() {
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  fi
  echo "chromium: $(chromium --version 2>/dev/null | head -n 1)"
}
