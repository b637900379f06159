"""Helpers of the ingest tests that compare a fast reader with the per-line path."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from mixer.ingest import ingest
from mixer.ingest import shard as ing_shard


def ingest_line_by_line(monkeypatch, raw: Path, out: Path, **options) -> None:
    """`ingest` with every block reader off: every line takes the per-line path."""
    monkeypatch.setattr(ing_shard, "_block_reader", lambda fields: None)
    ingest([str(raw)], out, progress=False, workers=1, **options)


def outputs(wd: Path) -> dict:
    """Every documents part's rows, quarantine file and id file of a workdir, by path."""
    found = {}
    for p in sorted((wd / "documents").rglob("*.parquet")):
        found[str(p.relative_to(wd))] = pq.read_table(p).to_pylist()
    for sub in ("quarantine", "state/ingest/ids"):
        for p in sorted((wd / sub).rglob("*")):
            if p.is_file():
                found[str(p.relative_to(wd))] = p.read_bytes()
    return found
