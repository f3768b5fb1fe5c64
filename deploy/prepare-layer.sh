#!/usr/bin/env bash
# Fills deploy/layer/sluice/ (the FilesLayer in template.yaml, mounted at /opt/sluice/ beside
# every bootstrap): the pipeline config, and the RDS CA bundle that verifies the database's
# TLS certificate (SLUICE_DB_CA_FILE). The bundle is downloaded once from AWS's trust store;
# set RDS_CA_BUNDLE=FILE to use a copy you have (a machine without internet).
#
#   deploy/prepare-layer.sh [PIPELINES_TOML]      (default: pipelines.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-pipelines.toml}
layer=deploy/layer/sluice
mkdir -p "$layer"
cp "$config" "$layer/pipelines.toml"
bundle=$layer/rds-global-bundle.pem
if [ -n "${RDS_CA_BUNDLE:-}" ]; then
  cp "$RDS_CA_BUNDLE" "$bundle"
elif [ ! -s "$bundle" ]; then
  url=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
  echo "downloading the RDS CA bundle from $url" >&2
  curl -fsS --retry 3 -o "$bundle.tmp" "$url" && mv "$bundle.tmp" "$bundle" || {
    rm -f "$bundle.tmp"
    echo "deploy/prepare-layer.sh: could not download the RDS CA bundle; set RDS_CA_BUNDLE=FILE" >&2
    exit 1
  }
fi
grep -q 'BEGIN CERTIFICATE' "$bundle" || { echo "$bundle is not a PEM bundle" >&2; exit 1; }
echo "layer ready: $(ls "$layer" | tr '\n' ' ')" >&2
