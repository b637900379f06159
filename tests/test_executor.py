"""The Ray executor gives the same bytes as local processes (ingest and tag stages)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from mixer import executor
from mixer.ingest import ingest
from mixer.tag import tag_workdir


def _corpus(root: Path) -> Path:
    for s in range(3):
        d = root / "raw" / ("web" if s < 2 else "wiki")
        d.mkdir(parents=True, exist_ok=True)
        lines = [
            orjson.dumps(
                {
                    "id": f"{s}-{i}",
                    "text": f"The page {i} of shard {s} says hello.\nIt has a second line, with words and more words.",
                }
            )
            for i in range(300)
        ]
        (d / f"s{s}.jsonl").write_bytes(b"\n".join(lines) + b"\nnot json\n")
    return root / "raw"


def _digest(wd: Path) -> dict[str, str]:
    return {
        str(p.relative_to(wd)): hashlib.sha256(p.read_bytes()).hexdigest()
        for sub in ("documents", "quarantine", "attributes")
        for p in sorted((wd / sub).rglob("*"))
        if p.is_file()
    }


def test_ray_executor_matches_local(tmp_path: Path):
    ray = pytest.importorskip("ray")
    raw = _corpus(tmp_path)
    local = tmp_path / "local"
    ingest([str(raw)], local, workers=2, progress=False)
    tag_workdir(local, ["fineweb"], workers=2, progress=False)
    on_ray = tmp_path / "ray"
    ex = executor.RayExecutor(workers=2)  # a local Ray instance
    try:
        with executor.use(ex):  # what `mixer ingest --executor ray` does
            summary = ingest([str(raw)], on_ray, workers=2, progress=False)
        tag_workdir(on_ray, ["fineweb"], progress=False, executor=ex)
    finally:
        ray.shutdown()
    assert summary["quarantined"] == 3 and summary["ingested"] == 900
    assert _digest(on_ray) == _digest(local)
    assert any(k.startswith("attributes/fineweb/") for k in _digest(local))


def test_place_balances_weight_per_cpu():
    assert executor.place([5, 1, 1, 1, 1, 1], [1, 1]) == [0, 1, 1, 1, 1, 1]
    assert executor.place([1] * 6, [1, 2]).count(1) == 4  # twice the CPUs, twice the tasks
    assert executor.place([], [1, 1]) == []
