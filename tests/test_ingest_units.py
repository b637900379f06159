"""Ingest units: small shards are ingested together (one task, one part per source), every
line still accounted for with its own file and line, and a changed or added shard reruns its
own unit only, to the bytes a fresh run writes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import orjson
import pyarrow.parquet as pq
from click.testing import CliRunner

from mixer.cli import main
from mixer.ingest import IngestSource, IngestStage, ingest
from mixer.ingest import blocks as ing_blocks
from mixer.ingest import shard as ing_shard

GROUP = 4000  # bytes: shards below this are grouped, units end about every 8 KB


def _shard(path: Path, first: int, n: int, bad: bool = False) -> Path:
    lines = [
        orjson.dumps({"id": f"d{first + i}", "text": f"text {first + i} " * 10, "source": "web"})
        for i in range(n)
    ]
    if bad:
        lines.insert(1, b"{broken")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _corpus(root: Path, shards: int) -> Path:
    for s in range(shards):
        _shard(root / f"s{s:03d}.jsonl", s * 100, 5 + s % 7, bad=s % 10 == 3)
    return root


def _digest(wd: Path) -> dict[str, str]:
    return {
        str(p.relative_to(wd)): hashlib.sha256(p.read_bytes()).hexdigest()
        for sub in ("documents", "quarantine", "state/ingest/ids")
        if (wd / sub).exists()
        for p in sorted((wd / sub).rglob("*"))
        if p.is_file()
    }


def _unit_keys(wd: Path) -> set[str]:
    """parts.json's units ([source, shard, ...] as JSON)."""
    return set(json.loads((wd / "state" / "ingest" / "parts.json").read_text()))


def _parts(wd: Path) -> list[Path]:
    return sorted((wd / "documents").rglob("*.parquet"))


def test_small_shards_make_few_parts_and_keep_every_line(tmp_path: Path):
    raw = _corpus(tmp_path / "raw", 60)
    wd = tmp_path / "wd"
    s = ingest([str(raw)], wd, progress=False, workers=1, group_below=GROUP)
    alone = ingest([str(raw)], tmp_path / "alone", progress=False, workers=1, group_below=0)
    assert s["shards"] == alone["shards"] == 60 and s["shards_ingested"] == 60
    assert s["lines_read"] == alone["lines_read"] == s["ingested"] + s["quarantined"]
    assert (s["ingested"], s["quarantined"]) == (alone["ingested"], alone["quarantined"])
    assert 1 < len(_parts(wd)) < 20 and len(_parts(tmp_path / "alone")) == 60
    per_file = {}  # every task record counts the lines of each of its shards
    for record in (wd / "state" / "ingest").glob("part-*.json"):
        stats = json.loads(record.read_text())["stats"]
        assert sum(stats["lines_per_file"]) == stats["lines_read"]
        per_file.update(zip(stats["files"], stats["lines_per_file"], strict=True))
    assert per_file == {str(raw / f"s{s:03d}.jsonl"): 5 + s % 7 + (s % 10 == 3) for s in range(60)}
    # the same rows, each with its own shard and line, whatever the grouping
    rows = pq.read_table(wd / "documents" / "web").to_pylist()
    key = lambda r: (r["src_file"], r["src_line"])  # noqa: E731
    assert sorted(rows, key=key) == sorted(
        pq.read_table(tmp_path / "alone" / "documents" / "web").to_pylist(), key=key
    )
    assert {r["src_file"] for r in rows} == {str(p) for p in sorted(raw.iterdir())}
    quarantined = [
        json.loads(line)
        for q in sorted((wd / "quarantine").rglob("*.jsonl"))
        for line in q.read_text().splitlines()
    ]
    assert sorted((q["src_file"], q["src_line"]) for q in quarantined) == [
        (str(raw / f"s{s:03d}.jsonl"), 2) for s in range(60) if s % 10 == 3
    ]


def test_an_added_or_changed_small_shard_reruns_its_unit_only(tmp_path: Path):
    raw = _corpus(tmp_path / "raw", 60)
    wd = tmp_path / "wd"
    ingest([str(raw)], wd, progress=False, workers=1, group_below=GROUP)
    units = len(_parts(wd))
    again = ingest([str(raw)], wd, progress=False, workers=1, group_below=GROUP)
    assert again["shards_ingested"] == 0 and again["shards_skipped"] == 60

    _shard(raw / "s030a.jsonl", 10_000, 4)  # sorts into the middle
    before = _unit_keys(wd)
    added = ingest([str(raw)], wd, progress=False, workers=1, group_below=GROUP)
    new = _unit_keys(wd) - before  # the units ingested again: the new shard's, no other
    assert len(new) == 1 and str(raw / "s030a.jsonl") in json.loads(next(iter(new)))
    assert added["shards_ingested"] == len(json.loads(next(iter(new)))) - 1 < 20
    assert added["shards"] == 61 and len(_parts(wd)) in (units, units + 1)
    new_rows = pq.read_table(wd / "documents" / "web", filters=[("id", "=", "d10000")])
    assert new_rows.column("src_file").to_pylist() == [str(raw / "s030a.jsonl")]

    _shard(raw / "s045.jsonl", 20_000, 3)  # rewritten, smaller
    before = _unit_keys(wd)
    changed = ingest([str(raw)], wd, progress=False, workers=1, group_below=GROUP)
    # ingested again: the unit holding it (the same shards, or a new unit where its new size
    # moved an end) and any other new unit
    after = _unit_keys(wd)
    redo = [k for k in after if k not in before or str(raw / "s045.jsonl") in json.loads(k)]
    assert changed["shards_ingested"] == sum(len(json.loads(k)) - 1 for k in redo) < 30
    assert len(redo) <= 2

    # what is left is what a fresh run writes, but for part numbers: same rows per unit
    fresh = tmp_path / "fresh"
    first = ingest([str(raw)], fresh, progress=False, workers=1, group_below=GROUP)
    rows = lambda w: sorted(  # noqa: E731
        (r["src_file"], r["src_line"], r["id"], r["text"])
        for p in _parts(w)
        for r in pq.read_table(p).to_pylist()
    )
    assert rows(wd) == rows(fresh)
    summary = ingest([str(raw)], wd, progress=False, workers=1, group_below=GROUP)
    assert summary["shards_ingested"] == 0 and summary["shards_skipped"] == 61
    for k in ("lines_read", "ingested", "quarantined"):
        assert summary[k] == first[k], k
    assert len(_parts(wd)) == len(_parts(fresh))


def test_units_do_not_depend_on_the_workers(tmp_path: Path):
    from mixer.executor import LocalExecutor
    from mixer.stage import RunContext, run_stage

    raw = _corpus(tmp_path / "raw", 40)
    digests = []
    for workers in (1, 2):
        wd = tmp_path / f"wd{workers}"
        ctx = RunContext(wd, LocalExecutor(workers), progress=False, echo=lambda _m: None)
        stage = IngestStage(wd, [IngestSource(None, [str(raw)])], group_below=GROUP)
        run_stage(stage, ctx)
        ctx.executor.close()
        digests.append(_digest(wd))
    assert digests[0] == digests[1] and len(digests[0]) > 3


def test_group_below_option(tmp_path: Path):
    raw = _corpus(tmp_path / "raw", 12)
    runner = CliRunner()
    r = runner.invoke(
        main, ["ingest", str(raw), "--out", str(tmp_path / "wd"), "--group-below", "lots"]
    )
    assert r.exit_code == 2 and "not a size" in r.output
    r = runner.invoke(
        main, ["ingest", str(raw), "--out", str(tmp_path / "wd"), "--group-below", "0", "-q"]
    )
    assert r.exit_code == 0, r.output
    assert "12 ingested" in r.output and len(_parts(tmp_path / "wd")) == 12
    r = runner.invoke(main, ["ingest", str(raw), "--out", str(tmp_path / "wd2"), "-q"])
    assert r.exit_code == 0 and len(_parts(tmp_path / "wd2")) == 1  # 8 MB: one unit


def test_a_damaged_shard_in_a_unit_keeps_the_others(tmp_path: Path):
    import gzip

    raw = tmp_path / "raw"
    _shard(raw / "a.jsonl", 0, 20)
    whole = b"\n".join(
        orjson.dumps({"id": f"g{i}", "text": f"gzip text {i} " * 30}) for i in range(2000)
    )
    (raw / "b.jsonl.gz").write_bytes(gzip.compress(whole + b"\n")[:-3000])  # cut short
    _shard(raw / "c.jsonl", 100, 20)
    s = ingest([str(raw)], tmp_path / "wd", progress=False, workers=1)
    assert {p.name for p in _parts(tmp_path / "wd")} == {"part-00000.parquet"}  # one unit
    (err,) = s["stream_errors"]
    assert err["file"] == str(raw / "b.jsonl.gz") and err["line"] > 1000
    assert s["quarantine_reasons"] == {"corrupt_stream": 1}
    assert s["lines_read"] == 20 + 20 + err["line"] == s["ingested"] + 1
    files = pq.read_table(tmp_path / "wd" / "documents").column("src_file").to_pylist()
    assert files.count(str(raw / "a.jsonl")) == files.count(str(raw / "c.jsonl")) == 20


def test_small_whole_shards_are_parsed_together_with_their_own_lines(tmp_path: Path, monkeypatch):

    raw = tmp_path / "raw"
    for s in range(6):
        _shard(raw / f"s{s}.jsonl", s * 100, 3 + s)
    bom = raw / "s6.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + _shard(tmp_path / "x.jsonl", 600, 2).read_bytes())
    (raw / "s7.jsonl").write_bytes(_shard(tmp_path / "y.jsonl", 700, 2).read_bytes()[:-1])
    _shard(raw / "s8.jsonl", 800, 4)
    calls: list = []
    real = ing_blocks._fast_block
    monkeypatch.setattr(
        ing_shard, "_fast_block", lambda *a: calls.append(a[1:3]) or real(*a)
    )  # (start, stop) of each block the block readers are given
    s = ingest([str(raw)], tmp_path / "wd", progress=False, workers=1)
    # s0-s6 in one call (a BOM skipped); s7 (no final newline) read alone, which ends the
    # batch: its two pieces (the last line comes alone); s8, last, alone
    together = sum(p.stat().st_size for p in sorted(raw.iterdir())[:7]) - 3 - 1
    assert calls == [(0, together), (0, 128), (0, 128), (0, 515)]
    assert s["ingested"] == sum(3 + k for k in range(6)) + 2 + 2 + 4
    monkeypatch.setattr(ing_shard, "_fast_block", real)
    alone = ingest([str(raw)], tmp_path / "alone", progress=False, workers=1, group_below=0)
    rows = lambda w: sorted(  # noqa: E731
        (r["src_file"], r["src_line"], r["id"]) for r in pq.read_table(w / "documents").to_pylist()
    )
    assert rows(tmp_path / "wd") == rows(tmp_path / "alone") and alone["ingested"] == s["ingested"]
    assert (str(bom), 1, "d600") in rows(tmp_path / "wd")


def test_records_of_the_older_layout_still_add_up(tmp_path: Path):
    """A workdir ingested by the version before units (a record per shard, "shard" and "file")
    still sums up, and such a record's shard is recognised as the same unit."""
    from mixer.ingest import summarize

    a = _shard(tmp_path / "a" / "x.jsonl", 0, 5)
    wd = tmp_path / "wd"
    ingest([str(a)], wd, progress=False, workers=1, group_below=0)
    (record,) = (wd / "state" / "ingest").glob("part-*.json")
    rec = json.loads(record.read_text())
    rec["shard"] = rec.pop("shards")[0]
    rec["stats"]["file"] = rec["stats"].pop("files")[0]
    rec["stats"]["stream_error"] = {"offset": 1, "line": 2, "detail": "old"}
    record.write_text(json.dumps(rec))
    _shard(tmp_path / "b" / "y.jsonl", 10, 7)
    s = ingest([str(tmp_path / "b")], wd, progress=False, workers=1, group_below=0)
    assert s["shards"] == 1 and s["ingested"] == 7
    whole = summarize(wd)
    assert whole["shards"] == 2 and whole["ingested"] == 12
    assert whole["stream_errors"] == [{"file": str(a), "offset": 1, "line": 2, "detail": "old"}]
