#!/usr/bin/env bash
# Fresh machine → .venv with edgecls and everything it needs (torch from the pinned local wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
. .venv/bin/activate
pip install -q torch==2.14.1 torchvision==0.29.1
pip install -q -e '.[cpu,train,dev,modelopt,serve]'
echo "edgecls installed in $(pwd)/.venv — activate with: . .venv/bin/activate"
