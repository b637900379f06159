"""Fuzzing ingest: random truncations, bit flips and malformed JSON over a small corpus.

Seeded and bounded in time. Whatever the damage, every run accounts for every line it read
(lines read = ingested + quarantined, per shard and in total, and the rows on disk agree),
and never raises anything but a one-line MixerError.
"""

from __future__ import annotations

import gzip
import json
import random
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from mixer.ingest import ingest
from mixer.schema import list_parts

SEED = 1234
CASES = 60
TIME_BUDGET_S = 45.0

_WORDS = 'alpha beta gamma δέλτα 日本 emoji 🙂 tab\there quote" back\\slash'.split(" ")


def _corpus(rng: random.Random, n: int) -> bytes:
    lines = []
    for i in range(n):
        rec = {
            "id": rng.choice([f"doc-{i}", i, 2**60 + i, 10**25 + i]),
            "text": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 40))),
            "source": rng.choice(["web", "s2/pes2o", "olmoe:c4", "wiki pédia", None]),
            "metadata": rng.choice([None, {"url": f"u{i}"}, [1, 2], "str"]),
        }
        if rec["source"] is None:
            del rec["source"]
        lines.append(json.dumps(rec, ensure_ascii=rng.random() < 0.5).encode())
    return b"\n".join(lines) + b"\n"


def _malform(rng: random.Random, data: bytes) -> bytes:
    lines = data.split(b"\n")
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(lines))
        kind = rng.randrange(7)
        line = lines[i]
        if kind == 0 and line:
            lines[i] = line[: rng.randrange(len(line))]  # cut JSON
        elif kind == 1:
            lines[i] = b"[" * rng.choice([10, 1100, 3000]) + b"]" * rng.choice([0, 10])
        elif kind == 2:
            lines[i] = b'{"id": "x", "text": "\\ud800 lone"}'
        elif kind == 3:
            lines[i] = b"\xef\xbb\xbf" + line  # a BOM in the middle
        elif kind == 4:
            lines[i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 80)))
        elif kind == 5:
            lines[i] = b'{"text": 5, "id": null}'
        else:
            lines.insert(i, b"")
    return b"\n".join(lines)


def _damage(rng: random.Random, blob: bytes) -> bytes:
    b = bytearray(blob)
    kind = rng.randrange(4)
    if kind == 0 and len(b) > 1:  # truncate
        return bytes(b[: rng.randrange(1, len(b))])
    if kind == 1:  # bit flips
        for _ in range(rng.randint(1, 8)):
            j = rng.randrange(len(b))
            b[j] ^= 1 << rng.randrange(8)
        return bytes(b)
    if kind == 2:  # a zeroed stretch
        j = rng.randrange(len(b))
        b[j : j + rng.randint(1, 200)] = bytes(min(len(b) - j, 200))
        return bytes(b[: len(blob)])
    return bytes(b)  # intact


def _encode(rng: random.Random, data: bytes) -> tuple[str, bytes]:
    kind = rng.randrange(4)
    if kind == 0:
        return ".jsonl", data
    if kind == 1:
        return ".jsonl.gz", gzip.compress(data)
    if kind == 2:
        cctx = zstandard.ZstdCompressor(level=rng.choice([1, 3]))
        half = len(data) // 2
        return ".jsonl.zst", cctx.compress(data[:half]) + cctx.compress(data[half:])
    return ".jsonl.zst", data  # plain text under a .zst name


def _rows_on_disk(wd: Path) -> int:
    root = wd / "documents"
    if not root.is_dir():
        return 0
    return sum(pq.ParquetFile(p).metadata.num_rows for d in root.iterdir() for p in list_parts(d))


def _quarantined_on_disk(wd: Path) -> int:
    root = wd / "quarantine"
    if not root.is_dir():
        return 0
    return sum(p.read_bytes().count(b"\n") for p in root.rglob("part-*.jsonl"))


@pytest.mark.slow
def test_ingest_fuzz_accounts_for_every_line(tmp_path: Path):
    rng = random.Random(SEED)
    start = time.perf_counter()
    ran = 0
    for case in range(CASES):
        if time.perf_counter() - start > TIME_BUDGET_S:
            break
        raw = tmp_path / f"raw{case}"
        raw.mkdir()
        for s in range(rng.randint(1, 3)):
            data = _malform(rng, _corpus(rng, rng.randint(1, 400)))
            suffix, blob = _encode(rng, data)
            (raw / f"s{s}{suffix}").write_bytes(_damage(rng, blob))
        wd = tmp_path / f"wd{case}"
        source = rng.choice([None, "web", "s2/pes2o"])
        summary = ingest([str(raw)], wd, source=source, workers=1, progress=False)
        assert summary["lines_read"] == summary["ingested"] + summary["quarantined"], case
        per_source = summary["sources"].values()
        assert sum(s["ingested"] for s in per_source) == summary["ingested"], case
        assert sum(s["quarantined"] for s in per_source) == summary["quarantined"], case
        assert sum(summary["quarantine_reasons"].values()) == summary["quarantined"], case
        assert _rows_on_disk(wd) == summary["ingested"], case
        assert _quarantined_on_disk(wd) == summary["quarantined"], case
        # a rerun skips everything and reports the same totals
        again = ingest([str(raw)], wd, source=source, workers=1, progress=False)
        assert again["shards_ingested"] == 0
        assert {k: again[k] for k in ("lines_read", "ingested", "quarantined")} == {
            k: summary[k] for k in ("lines_read", "ingested", "quarantined")
        }
        ran += 1
    assert ran >= 10, f"only {ran} fuzz cases ran in {TIME_BUDGET_S}s"
