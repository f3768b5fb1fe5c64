#!/usr/bin/env python3
"""Writes a copy of template.yaml for `sam local invoke` without `sam build`: each function's
CodeUri becomes a folder holding its bootstrap (copied from a cargo build), the files layer's
ContentUri the given layer folder, and EXTRA_ENV lines join the global environment (e.g. the
local S3/SQS endpoint, which the deployed template has no reason to name).

usage: sam_local_template.py TEMPLATE OUT_DIR BIN_DIR LAYER_DIR [NAME=VALUE ...]
"""
import os
import re
import shutil
import sys

template, out, bins, layer = sys.argv[1:5]
extra = sys.argv[5:]
text = open(template).read()
os.makedirs(out, exist_ok=True)


def code_uri(match):
    binary = match.group(1)
    folder = os.path.join(os.path.abspath(out), binary)
    os.makedirs(folder, exist_ok=True)
    shutil.copy(os.path.join(bins, binary), os.path.join(folder, "bootstrap"))
    return f"    Properties:\n      CodeUri: {folder}"


# Metadata: {checkov skips, BuildMethod, BuildProperties: {Binary}} then Properties: CodeUri: ./
text, n = re.subn(
    r"    Metadata:\n(?:      (?!BuildMethod).*\n|        .*\n)*?      BuildMethod: rust-cargolambda\n"
    r"      BuildProperties:\n        Binary: (\S+)\n    Properties:\n      CodeUri: \./",
    code_uri,
    text,
)
if n == 0:
    sys.exit("no rust-cargolambda function found in the template")
text = text.replace("ContentUri: deploy/layer/", f"ContentUri: {os.path.abspath(layer)}")
lines = "".join(f"        {k}: \"{v}\"\n" for k, v in (e.split("=", 1) for e in extra))
text = text.replace("        RUST_LOG: info\n", "        RUST_LOG: info\n" + lines, 1)
open(os.path.join(out, "template.yaml"), "w").write(text)
print(f"{n} functions", file=sys.stderr)
