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
    assert again.exit_code == 0 and "[ingest] up to date" in again.output


# ------------------------------------------------------------------ a workdir on object storage


def _bucket(endpoint: str, name: str):
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3


def _objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            key = o["Key"][len(prefix) :]
            out[key] = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
    return out


def _tiny_recipe(tmp: Path) -> Path:
    """Three sources of the generated sample corpus through every step but the taggers that
    need models: ingest, tokenizer, tag, dedup, mix, tokenize (several parts), report."""
    import yaml

    from mixer.devtools.sample_data import generate

    data = tmp / "data"
    generate(data, seed=3, scale=0.03)
    recipe = {
        "name": "tiny",
        "seed": 5,
        "budget": "20K",
        "workdir": str(tmp / "local"),
        "sources": {
            "web": {
                "inputs": [str(data / "web")],
                "taggers": ["fineweb", "tokens"],
                "filters": ["fineweb__keep", "dedup__keep"],
                "max_repetition": 2,
            },
            "math": {
                "inputs": [str(data / "math")],
                "taggers": ["tokens"],
                "filters": ["dedup__keep"],
                "max_repetition": 3,
            },
            "code": {"inputs": [str(data / "code")], "taggers": ["tokens"], "max_repetition": 3},
        },
        "dedup": {"sources": ["web", "math"], "exact": True, "minhash": True},
        "groups": {
            "web": {"share": 0.5, "sources": {"web": {"weight": 1.0}}},
            "domain": {
                "share": 0.5,
                "sources": {"math": {"weight": 0.5}, "code": {"weight": 0.5}},
            },
        },
        "tokenizer": {"train": {"vocab_size": 512}, "eos": "<|endoftext|>"},
        "tokenize": {"max_tokens_per_part": 4000},
    }
    path = tmp / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def _mixer(*args: str) -> str:
    from click.testing import CliRunner

    from mixer.cli import main

    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _ran(output: str) -> dict[str, str]:
    """{stage: its '[stage] running ...' line} of a run's output."""
    return {
        line.split("]")[0][1:]: line
        for line in output.splitlines()
        if line.startswith("[") and "] running" in line
    }


def test_workdir_on_s3_same_bytes_as_local_and_resumes(
    tmp_path: Path, s3_endpoint: str, monkeypatch
):
    """`mixer run --workdir s3://...` on 2 local workers: every product (documents,
    attributes, mix, token arrays, tokens.json) in the bucket is byte-identical to a local
    workdir's; a rerun does no work, from the same mirror or from a wiped one; a task whose
    record is deleted in the bucket (as a run killed mid-stage leaves it) is the only one of
    its stage to run again."""
    monkeypatch.setenv("MIXER_CACHE", str(tmp_path / "cache"))
    recipe = _tiny_recipe(tmp_path)
    _mixer("run", str(recipe), "--quiet", "--workers", "2")
    local = tmp_path / "local"

    s3 = _bucket(s3_endpoint, "runs")
    url = "s3://runs/tiny"
    out = _mixer("run", str(recipe), "--workdir", url, "--workers", "2", "--quiet")
    assert out == ""
    bucket = _objects(s3, "runs", "tiny/")
    products = ("documents/", "attributes/", "mixes/", "tokens/")
    ours = {k: v for k, v in bucket.items() if k.startswith(products)}
    theirs = {
        str(p.relative_to(local)): p.read_bytes()
        for p in sorted(local.rglob("*"))
        if p.is_file() and str(p.relative_to(local)).startswith(products)
    }
    assert any(k.startswith("tokens/tiny/part-") and k.endswith(".npy") for k in ours)
    assert any(k.endswith(".csv.gz") for k in ours) and "tokens/tiny/tokens.json" in ours
    assert sorted(ours) == sorted(theirs)
    assert [k for k in ours if ours[k] != theirs[k]] == []
    info = orjson.loads(ours["tokens/tiny/tokens.json"])  # names nothing of the workdir's path
    assert info["mix_dir"] == "../../mixes/tiny"
    assert info["tokenizer"]["path"] == "../../tokenizer.json"
    checked = _mixer("verify-tokens", str(local / "tokens" / "tiny"), "--quiet", "--samples", "8")
    assert "8 sampled documents match the mix text" in checked, checked  # found from tokens.json
    assert "state/stages/tokenize.write/stage.json" in bucket and "mixer.log" in bucket
    assert not [
        k for k in bucket if k.rsplit("/", 1)[-1].startswith(".tmp-") or k.endswith(".lock")
    ]

    # a rerun does no work: with the mirror as the last run left it, and with a wiped one
    from mixer.remote_workdir import default_mirror

    for wipe in (False, True):
        if wipe:
            import shutil

            shutil.rmtree(default_mirror(url))
        again = _mixer("run", str(recipe), "--workdir", url, "--workers", "2")
        assert set(_ran(again)) == {"report"}, again  # the report is always rebuilt
        assert "[ingest] up to date" in again and "[tokenize.write] up to date" in again

    # a run killed inside mix.select: its stage record and one task record are not there
    tasks = sorted(k for k in bucket if k.startswith("state/stages/mix.select/tasks/"))
    assert len(tasks) >= 2
    s3.delete_object(Bucket="runs", Key="tiny/state/stages/mix.select/stage.json")
    s3.delete_object(Bucket="runs", Key=f"tiny/{tasks[0]}")
    again = _mixer("run", str(recipe), "--workdir", url, "--workers", "2")
    assert f"running 1 of {len(tasks)} task(s)" in _ran(again)["mix.select"], again
    assert "ingest" not in _ran(again) and "tag" not in _ran(again)
    after = _objects(s3, "runs", "tiny/")
    assert {k: v for k, v in after.items() if k.startswith("tokens/")} == {
        k: v for k, v in theirs.items() if k.startswith("tokens/")
    }


def test_mirrors_sync_through_the_bucket(tmp_path: Path, s3_endpoint: str):
    """Two mirrors of one URL (two nodes): what one pushes the other pulls with the same bytes,
    sizes and mtimes; deletions travel both ways; a change made only in a mirror survives a
    pull; temporaries are never pushed; records (state/) are uploaded after the data."""
    from mixer.remote_workdir import RemoteWorkdir

    _bucket(s3_endpoint, "nodes")
    a = RemoteWorkdir("s3://nodes/wd", tmp_path / "a")
    b = RemoteWorkdir("s3://nodes/wd", tmp_path / "b")
    for rel, data in {
        "documents/web/part-00000.parquet": b"parquet",
        "tokens/m/part-00000.npy": b"\x01\x00" * 10,
        "state/stages/x/tasks/t.json": b"{}",
        "documents/web/.tmp-part-00001.parquet.abc-0": b"half",
    }.items():
        (a.mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        (a.mirror / rel).write_bytes(data)
    order = []
    put = a.fs.put_file
    a.fs.put_file = lambda lpath, rpath, **kw: (order.append(rpath), put(lpath, rpath, **kw))[1]
    try:
        assert a.push() == {"uploaded": 3, "deleted": 0}
    finally:
        del a.fs.put_file
    assert order[-1].endswith("state/stages/x/tasks/t.json")  # the record last
    assert b.pull() == {"downloaded": 3, "deleted": 0}

    def view(m):
        return {
            str(p.relative_to(m.mirror)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(m.mirror.rglob("*"))
            if p.is_file() and ".mixer-sync" not in p.parts and not p.name.startswith(".tmp-")
        }

    assert view(a) == view(b) and len(view(b)) == 3
    assert a.push() == {"uploaded": 0, "deleted": 0} and b.pull()["downloaded"] == 0

    (b.mirror / "tokens/m/part-00000.npy").unlink()
    (b.mirror / "documents/web/part-00000.parquet").write_bytes(b"parquet, again")
    assert b.push() == {"uploaded": 1, "deleted": 1}
    (a.mirror / "state/stages/x/tasks/t.json").write_bytes(b'{"mine": 1}')  # not pushed yet
    assert a.pull() == {"downloaded": 1, "deleted": 1}
    assert view(a) == view(b) | {
        "state/stages/x/tasks/t.json": view(a)["state/stages/x/tasks/t.json"]
    }
    assert (a.mirror / "state/stages/x/tasks/t.json").read_bytes() == b'{"mine": 1}'
    assert a.push()["uploaded"] == 1 and b.pull()["downloaded"] == 1
    assert view(a) == view(b)


def test_a_missing_bucket_is_one_line(tmp_path: Path, s3_endpoint: str, monkeypatch):
    from click.testing import CliRunner

    from mixer.cli import main

    monkeypatch.setenv("MIXER_CACHE", str(tmp_path / "cache"))
    recipe = _tiny_recipe(tmp_path)
    url = "s3://no-such-bucket/run"
    r = CliRunner().invoke(main, ["run", str(recipe), "--workdir", url, "--quiet"])
    assert r.exit_code == 2 and f"{url}: cannot list" in r.output, r.output
    assert len(r.output.strip().splitlines()) == 1, r.output


def test_single_stage_commands_refuse_a_url_workdir(tmp_path: Path):
    from click.testing import CliRunner

    from mixer.cli import main

    for args in (
        ["tag", "s3://bucket/wd", "--taggers", "tokens"],
        ["ingest", str(tmp_path), "--out", "s3://bucket/wd"],
        ["dedup", "s3://bucket/wd"],
        ["tokenize", str(tmp_path), "--tokenizer", "t.json", "--out", "s3://bucket/tokens"],
    ):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2, (args, r.output)
        assert "mixer run" in r.output and len(r.output.strip().splitlines()) == 1, r.output
    assert not (Path.cwd() / "s3:").exists()
