# mixer: two commands on a fresh clone: `make sample` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
EXTRAS ?= dev,train,ray,s3

.PHONY: help setup sample sample-data test lint format bench clean

help:
	@echo "make sample   set up, generate sample_data, run recipes/sample.yaml end to end"
	@echo "make test     run the test suite"
	@echo "make bench    run the benchmarks (installs the peers into .venv-peers)"
	@echo "make lint     ruff"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $(STAMP)

setup: $(STAMP)

sample_data/.complete: $(STAMP) mixer/devtools/sample_data.py
	$(PY) -m mixer.devtools.sample_data --out sample_data --seed 0
	touch $@

sample-data: sample_data/.complete

sample: sample_data/.complete
	$(VENV)/bin/mixer run recipes/sample.yaml

test: $(STAMP)
	$(VENV)/bin/pytest -q -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check mixer tests bench
	$(VENV)/bin/ruff format --check mixer tests bench

format: $(STAMP)
	$(VENV)/bin/ruff check --fix mixer tests bench
	$(VENV)/bin/ruff format mixer tests bench

bench: $(STAMP)
	bash bench/setup_peers.sh
	bash bench/run_all.sh

clean:
	rm -rf work sample_data/*.jsonl* sample_data/*/ sample_data/.complete
