"""Inputs on object storage: ingest reads s3:// shards from a local S3-compatible server (moto,
started by the test on loopback) exactly as it reads the same files from disk."""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto")
boto3 = pytest.importorskip("boto3")

from mixer.ingest import ingest  # noqa: E402

REGION = "eu-west-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint():
    # One server for the module: fsspec caches its S3 filesystem, endpoint included.
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": url,
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        yield url
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(10)


def _shards(root: Path) -> Path:
    d = root / "raw" / "web"
    d.mkdir(parents=True)
    for s in range(2):
        lines = [
            orjson.dumps({"id": f"{s}-{i}", "text": f"page {i} from shard {s}", "created": None})
            for i in range(200)
        ]
        (d / f"s{s}.jsonl.gz").write_bytes(
            gzip.compress(b"\n".join(lines) + b"\n{broken\n", mtime=0)
        )
    return d


def _parquet_digests(wd: Path) -> dict[str, str]:
    return {
        str(p.relative_to(wd)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((wd / "documents").rglob("*.parquet"))
    }


def test_ingest_from_s3_matches_local(tmp_path: Path, s3_endpoint: str):
    local_dir = _shards(tmp_path)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    s3.create_bucket(Bucket="corpus", CreateBucketConfiguration={"LocationConstraint": REGION})
    for f in sorted(local_dir.iterdir()):
        s3.upload_file(str(f), "corpus", f"raw/web/{f.name}")

    wd = tmp_path / "wd"
    summary = ingest(["s3://corpus/raw/web"], wd, workers=1, progress=False)
    assert summary["ingested"] == 400 and summary["quarantined"] == 2
    assert summary["lines_read"] == summary["ingested"] + summary["quarantined"]
    assert sorted(summary["sources"]) == ["web"]  # the folder name, as for local files

    # rerun: unchanged objects are skipped
    again = ingest(["s3://corpus/raw/web/*.jsonl.gz"], wd, workers=1, progress=False)
    assert again["shards_skipped"] == 2 and again["shards_ingested"] == 0

    import pyarrow.parquet as pq

    docs = pq.read_table(wd / "documents" / "web").to_pylist()
    assert docs[0]["src_file"].startswith("s3://corpus/raw/web/")
    assert sorted(d["id"] for d in docs) == sorted(f"{s}-{i}" for s in range(2) for i in range(200))
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")


def test_recipe_with_s3_inputs_runs(tmp_path: Path, s3_endpoint: str):
    import yaml
    from click.testing import CliRunner

    from mixer.cli import main

    local_dir = _shards(tmp_path)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)
    s3.create_bucket(Bucket="mixes", CreateBucketConfiguration={"LocationConstraint": REGION})
    for f in sorted(local_dir.iterdir()):
        s3.upload_file(str(f), "mixes", f"raw/web/{f.name}")
    recipe = {
        "name": "s3demo",
        "workdir": str(tmp_path / "wd"),
        "seed": 1,
        "budget": "1K",
        "sources": {
            "web": {
                "inputs": ["s3://mixes/raw/web/"],
                "taggers": ["fineweb", "tokens"],
                "filters": ["tokens__count >= 3"],
            }
        },
        "groups": {"all": {"share": 1.0, "sources": {"web": {"weight": 1.0}}}},
        "tokenizer": {"train": {"vocab_size": 300}, "eos": "<|endoftext|>"},
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(main, ["run", str(path), "--quiet", "--workers", "1"])
    assert result.exit_code == 0, result.output
    tokens = yaml.safe_load((tmp_path / "wd" / "tokens" / "s3demo" / "tokens.json").read_text())
    assert tokens["total_tokens"] > 0
    again = CliRunner().invoke(main, ["run", str(path)])
    assert again.exit_code == 0 and "[ingest.web] up to date" in again.output
