# Sourced by scripts/test.sh: the template's scanners from PyPI, each in its own virtualenv
# (they pin versions of their own that would clash with SAM CLI's and each other's): checkov,
# the IaC security scan, and parliament, the IAM policy linter.

CHECKOV_VENV=.venv-checkov
CHECKOV_VERSION=3.3.30
PARLIAMENT_VENV=.venv-parliament
PARLIAMENT_VERSION=1.6.4

ensure_checkov() {
  if [ ! -x "$CHECKOV_VENV/bin/checkov" ]; then
    echo "installing checkov $CHECKOV_VERSION into $CHECKOV_VENV"
    python3 -m venv "$CHECKOV_VENV"
    "$CHECKOV_VENV/bin/pip" install -q --disable-pip-version-check "checkov==$CHECKOV_VERSION"
  fi
}

ensure_parliament() {
  if [ ! -x "$PARLIAMENT_VENV/bin/parliament" ]; then
    echo "installing parliament $PARLIAMENT_VERSION into $PARLIAMENT_VENV"
    python3 -m venv "$PARLIAMENT_VENV"
    "$PARLIAMENT_VENV/bin/pip" install -q --disable-pip-version-check "parliament==$PARLIAMENT_VERSION"
  fi
}
