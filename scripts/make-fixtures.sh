#!/usr/bin/env bash
# Makes the input fixtures the tests read, with real producers rather than hand-written
# bytes: spreadsheets by XlsxWriter, xlwt and odfpy (PyPI, in .venv-fixtures). Usage:
# scripts/make-fixtures.sh OUT_DIR. Safe to run from several test processes at once.
set -euo pipefail
out=${1:?usage: make-fixtures.sh OUT_DIR}
cd "$(dirname "$0")/.."
mkdir -p target
exec 9>target/.fixtures.lock
flock 9
venv=.venv-fixtures
if ! "$venv/bin/python" -c 'import xlsxwriter, xlwt, odf' 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check \
    'XlsxWriter==3.2.*' 'xlwt==1.3.0' 'odfpy==1.4.1'
fi
# Made again when the script that makes them changes.
stamp=$(sha256sum scripts/fixtures/spreadsheets.py | cut -c1-16)
if [ "$(cat "$out/.done" 2>/dev/null)" != "$stamp" ]; then
  tmp="$out.tmp.$$"
  rm -rf "$tmp"
  "$venv/bin/python" scripts/fixtures/spreadsheets.py "$tmp"
  rm -rf "$out"
  mv "$tmp" "$out"
  echo "$stamp" >"$out/.done"
fi
