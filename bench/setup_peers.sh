#!/usr/bin/env bash
# Install the peer tools (datatrove, dolma, datasketch) in their own environment, .venv-peers,
# so benchmarks and parity scripts run them on the same input as mixer.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-peers/bin/python ]; then
  python3 -m venv .venv-peers
fi
.venv-peers/bin/pip install -q "datatrove[processing]" dolma datasketch orjson zstandard pyarrow tokenizers
echo "peers installed in .venv-peers"
