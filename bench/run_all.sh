#!/usr/bin/env bash
# Every benchmark, one after another (they compete for the two cores otherwise), each against
# its peers from .venv-peers (bench/setup_peers.sh). Results print to the terminal; the tables
# in docs/benchmarks.md were made with these commands.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
python3 bench/realistic_corpus.py --out work/bench/realistic --sizes 10,50,200
$PY -m bench.ingest --realistic work/bench/realistic/realistic_50mb.jsonl.zst --sources one --workers 1 --repeat 3
$PY -m bench.ingest --mb 400 --shards 8 --corpus work/bench/ingest-400
$PY -m bench.parity_datatrove --mb 20
$PY -m bench.taggers --mb 10
$PY -m bench.domain_decon --mb 20 --repeat 3
$PY -m bench.dedup compare --docs 20000 --workers 2
$PY -m bench.dedup scale --sizes 100000,300000,1000000 --workers 2
$PY -m bench.mix_scale --rows 10000000 --parts 20 --workdir work/bench/mix
$PY -m bench.tokenize_speed --mb 16 --repeats 2 --dolma .venv-peers/bin/dolma
$PY -m bench.train_speed --steps 12 --threads 1
