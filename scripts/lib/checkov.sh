# Sourced by scripts/test.sh: checkov, the IaC security scanner (from PyPI), in its own
# virtualenv (it pins versions of its own that would clash with SAM CLI's).

CHECKOV_VENV=.venv-checkov
CHECKOV_VERSION=3.3.30

ensure_checkov() {
  if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
    echo "installing checkov $CHECKOV_VERSION into $CHECKOV_VENV"
    python3 -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  fi
}
