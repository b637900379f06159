#!/usr/bin/env bash
# Install the peer tools (datatrove, dolma, datasketch) in their own environment, .venv-peers,
# so benchmarks and parity scripts run them on the same input as mixer.
# dolma pins aiobotocore~=2.5; without matching boto3/botocore pins pip backtracks for an hour.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-peers/bin/python ]; then
  python3 -m venv .venv-peers
fi
.venv-peers/bin/pip install -q "datatrove[processing]" dolma datasketch orjson zstandard pyarrow tokenizers \
  spacy lxml_html_clean boto3==1.28.17 botocore==1.31.17 aiobotocore==2.5.4 "xxhash<4"
echo "peers installed in .venv-peers"
