"""Ingest: every line accounted for, bad lines quarantined, reruns skip, kills resume byte-identically."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import zstandard
from click.testing import CliRunner
from ingest_outputs import ingest_line_by_line, outputs

from mixer.cli import main
from mixer.ingest import FieldMap, ingest
from mixer.ingest import blocks as ing_blocks
from mixer.ingest import columns as ing_columns
from mixer.ingest import ids as ing_ids
from mixer.ingest import output as ing_output
from mixer.ingest import shard as ing_shard


def _doc(i: int, source: str = "web", **extra) -> bytes:
    rec = {
        "id": f"d{i}",
        "text": f"document number {i} " * 5,
        "source": source,
        "added": "2024-01-01",
        "created": None,
    }
    rec.update(extra)
    return orjson.dumps(rec)


def _bad_lines() -> dict[str, bytes]:
    return {
        "invalid_json": b"{not json at all",
        "invalid_utf8": b'{"id": "u", "text": "bad \xff\xfe bytes"}',
        "missing_text": b'{"id": "m"}',
        "text_not_string": b'{"id": "n", "text": ["a"]}',
        "missing_id": b'{"id": "", "text": "no id"}',
        "not_an_object": b"[1, 2, 3]",
        "empty_line": b"",
    }


@pytest.fixture
def messy_dir(tmp_path: Path) -> Path:
    d = tmp_path / "raw" / "web"
    d.mkdir(parents=True)
    good = [_doc(i, metadata={"url": f"https://example.com/{i}"}) for i in range(20)]
    lines = good[:10] + list(_bad_lines().values()) + good[10:]
    # a truncated last line (no newline, cut JSON)
    (d / "a.jsonl").write_bytes(b"\n".join(lines) + b'\n{"id": "cut", "te')
    # a gzip stream cut short, and a zstd stream cut short
    many = b"\n".join(_doc(i + 100) for i in range(3000)) + b"\n"
    (d / "b.jsonl.gz").write_bytes(gzip.compress(many)[:-2000])
    cctx = zstandard.ZstdCompressor(level=3)
    frames = b"".join(
        cctx.compress(b"\n".join(_doc(i + 5000) for i in range(j, j + 100)) + b"\n")
        for j in range(0, 1000, 100)
    )
    (d / "c.jsonl.zst").write_bytes(frames[:-50])
    # a lone surrogate escape (valid JSON, invalid UTF-8 once decoded) and non-Dolma extras
    (d / "d.json.gz").write_bytes(
        gzip.compress(
            b'{"id": "s1", "text": "lone \\ud800 surrogate", "url": "u"}\n{"id": 7, "text": "int id", "metadata": {"k": [1]}}\n'
        )
    )
    return tmp_path / "raw"


def test_every_line_is_accounted_for(messy_dir: Path, tmp_path: Path):
    wd = tmp_path / "wd"
    summary = ingest([str(messy_dir)], wd, workers=1, progress=False)
    assert summary["lines_read"] == summary["ingested"] + summary["quarantined"]
    reasons = summary["quarantine_reasons"]
    for reason in _bad_lines():
        assert reasons.get(reason) == 1, reason
    assert reasons["truncated_line"] == 1
    assert reasons["corrupt_stream"] == 2  # the cut gzip and the cut zstd

    docs = pq.read_table(wd / "documents" / "web").to_pylist()
    ids = {d["id"] for d in docs}
    assert {f"d{i}" for i in range(20)} <= ids  # every good line of the messy shard is kept
    # all complete zstd frames before the cut are kept
    assert {f"d{i}" for i in range(5000, 5900)} <= ids
    assert "s1" in ids and "7" in ids
    # the quarantine files hold exactly the quarantined lines, with file, line and reason
    q = [
        json.loads(line)
        for f in sorted((wd / "quarantine" / "web").glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    assert len(q) == summary["quarantined"]
    assert all({"src_file", "src_line", "reason", "raw"} <= set(r) for r in q)
    bad = next(r for r in q if r["reason"] == "invalid_json")
    assert (
        bad["src_line"] == 11
        and bad["src_file"].endswith("a.jsonl")
        and bad["raw"] == "{not json at all"
    )


def test_columns_provenance_and_metadata(messy_dir: Path, tmp_path: Path):
    wd = tmp_path / "wd"
    ingest([str(messy_dir)], wd, workers=1, progress=False)
    docs = {d["id"]: d for d in pq.read_table(wd / "documents" / "web").to_pylist()}
    d3 = docs["d3"]
    assert d3["created"] is None and d3["added"] == "2024-01-01"
    assert json.loads(d3["metadata"]) == {"url": "https://example.com/3"}
    assert d3["src_file"].endswith("a.jsonl") and d3["src_line"] == 4
    assert "\ud800" not in docs["s1"]["text"] and docs["s1"]["text"].startswith("lone ")
    assert json.loads(docs["s1"]["metadata"]) == {"url": "u"}  # unknown fields land in metadata
    assert json.loads(docs["7"]["metadata"]) == {"k": [1]}


def test_field_mapping_and_forced_source(tmp_path: Path):
    raw = tmp_path / "in.jsonl"
    raw.write_text(
        "\n".join(json.dumps({"doc_id": f"x{i}", "content": f"text {i}"}) for i in range(5)) + "\n"
    )
    wd = tmp_path / "wd"
    s = ingest(
        [str(raw)], wd, source="forum", fields=FieldMap(id="doc_id", text="content"), progress=False
    )
    assert s["ingested"] == 5
    t = pq.read_table(wd / "documents" / "forum")
    assert t.column("text").to_pylist()[0] == "text 0" and set(t.column("source").to_pylist()) == {
        "forum"
    }


def test_source_from_records_then_folder(tmp_path: Path):
    d = tmp_path / "mystuff"
    d.mkdir()
    (d / "a.jsonl").write_bytes(
        _doc(1, source="code") + b"\n" + orjson.dumps({"id": "q", "text": "no source"}) + b"\n"
    )
    wd = tmp_path / "wd"
    ingest([str(d)], wd, progress=False)
    assert pq.read_table(wd / "documents" / "code").num_rows == 1
    assert pq.read_table(wd / "documents" / "mystuff").num_rows == 1


def test_duplicate_ids_are_counted(tmp_path: Path):
    raw = tmp_path / "web" / "a.jsonl"
    raw.parent.mkdir()
    raw.write_bytes(b"\n".join([_doc(1), _doc(1), _doc(2)]) + b"\n")
    s = ingest([str(raw)], tmp_path / "wd", progress=False)
    assert s["sources"]["web"]["duplicate_ids"] == 1


def test_rerun_skips_and_changed_shard_is_redone(messy_dir: Path, tmp_path: Path):
    wd = tmp_path / "wd"
    ingest([str(messy_dir)], wd, progress=False, group_below=0)
    again = ingest([str(messy_dir)], wd, progress=False, group_below=0)
    assert again["shards_ingested"] == 0 and again["shards_skipped"] == 4
    f = messy_dir / "web" / "a.jsonl"
    f.write_bytes(f.read_bytes().replace(b"document number 1 ", b"changed number 1 "))
    third = ingest([str(messy_dir)], wd, progress=False, group_below=0)
    assert third["shards_ingested"] == 1 and third["ingested"] == again["ingested"]


def test_cli_errors_are_one_line(tmp_path: Path):
    runner = CliRunner()
    r = runner.invoke(
        main, ["ingest", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "wd")]
    )
    assert r.exit_code == 2 and "no such file" in r.output and "Traceback" not in r.output
    f = tmp_path / "a.jsonl"
    f.write_bytes(_doc(1) + b"\n")
    r = runner.invoke(
        main, ["ingest", str(f), "--out", str(tmp_path / "wd"), "--source", "../escape"]
    )
    # any source string is accepted, stored as written, and never escapes documents/
    assert r.exit_code == 0, r.output
    (d,) = (tmp_path / "wd" / "documents").iterdir()
    assert d.parent == tmp_path / "wd" / "documents" and "~" in d.name
    assert pq.read_table(d).column("source").to_pylist() == ["../escape"]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = runner.invoke(main, ["ingest", str(f), "--out", str(blocker / "wd")])
    assert r.exit_code == 2 and "not writable" in r.output


def _digest(wd: Path) -> dict[str, str]:
    out = {}
    for sub in ("documents", "quarantine"):
        for p in sorted((wd / sub).rglob("*")):
            if p.is_file():
                out[str(p.relative_to(wd))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _big_corpus(root: Path) -> Path:
    d = root / "big" / "web"
    d.mkdir(parents=True)
    for s in range(4):
        lines = b"\n".join(
            _doc(s * 100_000 + i, text=("word " * 150) + str(i)) for i in range(15_000)
        )
        (d / f"s{s}.jsonl.zst").write_bytes(
            zstandard.ZstdCompressor(level=1).compress(lines + b"\n")
        )
    return root / "big"


def test_kill_and_rerun_is_byte_identical(tmp_path: Path):
    corpus = _big_corpus(tmp_path)
    clean = tmp_path / "clean"
    ingest([str(corpus)], clean, workers=2, progress=False, group_below=0)

    wd = tmp_path / "killed"
    cmd = [
        sys.executable,
        "-m",
        "mixer.cli",
        "ingest",
        str(corpus),
        "--out",
        str(wd),
        "--workers",
        "1",
        "--group-below",
        "0",
        "--quiet",
    ]
    proc = subprocess.Popen(cmd, start_new_session=True)
    deadline = time.time() + 60
    # kill once the first shard is finished and the next one is being written
    while time.time() < deadline and proc.poll() is None:
        done = (
            list((wd / "state" / "ingest").glob("part-*.json"))
            if (wd / "state" / "ingest").exists()
            else []
        )
        partial = list((wd / "documents").rglob(".tmp-*")) if (wd / "documents").exists() else []
        if done and partial:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    summary = ingest([str(corpus)], wd, workers=1, progress=False, group_below=0)
    assert summary["shards_skipped"] >= 1
    assert _digest(wd) == _digest(clean)
    assert not list(wd.rglob(".tmp-*"))
    assert summary["ingested"] == 60_000 == summary["lines_read"]


def test_duplicate_ids_are_exact_per_source_in_bounded_windows(tmp_path: Path, monkeypatch):
    import random

    import mixer.ingest as ing

    rng = random.Random(7)
    raw = tmp_path / "raw"
    raw.mkdir()
    expected: dict[str, int] = {}
    seen: dict[str, set] = {}
    for shard in range(3):
        lines = []
        for _ in range(400):
            src = rng.choice(["web", "code", "s2/pes2o"])
            doc_id = f"d{rng.randrange(500)}"  # repeats within and across shards
            lines.append(_doc(0, source=src, id=doc_id))
            if doc_id in seen.setdefault(src, set()):
                expected[src] = expected.get(src, 0) + 1
            seen[src].add(doc_id)
        (raw / f"s{shard}.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    def no_parquet_reads(*a, **k):
        raise AssertionError("duplicate counting must not read Parquet")

    monkeypatch.setattr(pq, "read_table", no_parquet_reads)
    monkeypatch.setattr(pq, "ParquetFile", no_parquet_reads)
    wd = tmp_path / "wd"
    s = ingest([str(raw)], wd, workers=1, progress=False, group_below=0)
    got = {src: c["duplicate_ids"] for src, c in s["sources"].items()}
    assert got == {src: expected.get(src, 0) for src in seen}
    assert all(v > 0 for v in got.values())
    # the same counts when the hash range is merged in many small windows
    monkeypatch.setattr(ing_ids, "ID_MERGE_BYTES", 256)
    assert ing.duplicate_ids(wd) == got
    # the id files are the tasks' outputs: a rerun with them gone redoes those tasks
    ids = sorted((wd / "state" / "ingest" / "ids").glob("part-*.ids"))
    assert len(ids) == 3
    ids[0].unlink()
    again = ingest([str(raw)], wd, workers=1, progress=False, group_below=0)
    assert again["shards_ingested"] == 1
    assert {src: c["duplicate_ids"] for src, c in again["sources"].items()} == got


def test_removed_shard_takes_its_ids_along(tmp_path: Path):
    raw = tmp_path / "web"
    raw.mkdir()
    (raw / "a.jsonl").write_bytes(b"\n".join([_doc(1), _doc(2)]) + b"\n")
    (raw / "b.jsonl").write_bytes(b"\n".join([_doc(1), _doc(3)]) + b"\n")
    wd = tmp_path / "wd"
    assert ingest([str(raw)], wd, progress=False)["sources"]["web"]["duplicate_ids"] == 1
    (raw / "b.jsonl").unlink()
    s = ingest([str(raw)], wd, progress=False)
    assert s["sources"]["web"]["duplicate_ids"] == 0
    assert len(list((wd / "state" / "ingest" / "ids").glob("*.ids"))) == 1


def test_buffer_limits_change_row_groups_not_rows(tmp_path: Path, monkeypatch):

    raw = tmp_path / "raw" / "mixed.jsonl"
    raw.parent.mkdir()
    srcs = ["web", "code", "tiny:a", "tiny:b"]
    lines = [
        _doc(i, source=srcs[i % 7 % 4], metadata={"n": i} if i % 3 else None) for i in range(3000)
    ]
    lines[5] = b'{"id": 5, "text": "numeric id", "source": "web", "extra": 1}'  # careful branch
    raw.write_bytes(b"\n".join(lines) + b"\n")
    ingest([str(raw.parent)], tmp_path / "big", workers=1, progress=False)
    monkeypatch.setattr(ing_output, "BUFFER_BYTES", 20000)
    monkeypatch.setattr(ing_output, "WRITE_AHEAD_BYTES", 1)
    ingest([str(raw.parent)], tmp_path / "small", workers=1, progress=False)
    for d in (tmp_path / "big" / "documents").iterdir():
        big = pq.ParquetFile(d / "part-00000.parquet")
        small = pq.ParquetFile(tmp_path / "small" / "documents" / d.name / "part-00000.parquet")
        assert big.read().equals(small.read())
        assert big.metadata.num_row_groups == 1  # a small source is written once
        if d.name in ("web", "code"):
            assert small.metadata.num_row_groups > 1
    web = pq.read_table(tmp_path / "big" / "documents" / "web").to_pylist()
    assert [r["src_line"] for r in web] == sorted(r["src_line"] for r in web)
    (numeric,) = [r for r in web if r["src_line"] == 6]
    assert numeric["id"] == "5" and numeric["metadata"] == '{"extra":1}'
    # row groups don't depend on how the shard was read: pieces of 4 KB, same bytes
    import mixer.io

    monkeypatch.setattr(mixer.io, "READ_CHUNK", 4096)
    ingest([str(raw.parent)], tmp_path / "blocks", workers=1, progress=False)
    for d in (tmp_path / "small" / "documents").iterdir():
        blocks = tmp_path / "blocks" / "documents" / d.name / "part-00000.parquet"
        assert blocks.read_bytes() == (d / "part-00000.parquet").read_bytes()


def test_small_sources_wait_for_more_rows_instead_of_a_row_group_per_flush(
    tmp_path: Path, monkeypatch
):
    """A full buffer writes the sources holding the most text; a source of a few documents
    among big ones becomes one row group, not one per flush."""

    raw = tmp_path / "raw" / "mixed.jsonl"
    raw.parent.mkdir()
    lines = []
    for i in range(2000):
        big = "web" if i % 2 else "code"
        lines.append(_doc(i, source=f"tiny:{i // 50 % 4}" if i % 50 == 0 else big))
    raw.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setattr(ing_output, "BUFFER_BYTES", 30000)
    s = ingest([str(raw.parent)], tmp_path / "wd", workers=1, progress=False)
    assert s["ingested"] == 2000
    docs = tmp_path / "wd" / "documents"
    groups = {d.name: pq.ParquetFile(d / "part-00000.parquet").metadata.num_row_groups
              for d in docs.iterdir()}  # fmt: skip
    assert groups["web"] > 3 and groups["code"] > 3
    assert all(n == 1 for name, n in groups.items() if name.startswith("tiny"))
    ids = pq.read_table(docs).column("id").to_pylist()
    assert sorted(ids, key=lambda x: int(x[1:])) == [f"d{i}" for i in range(2000)]


def test_a_source_is_cut_into_row_groups_of_row_group_rows(tmp_path: Path, monkeypatch):

    raw = tmp_path / "raw" / "a.jsonl"
    raw.parent.mkdir()
    raw.write_bytes(b"\n".join(_doc(i, source=["a", "b"][i % 3 == 0]) for i in range(900)) + b"\n")
    monkeypatch.setattr(ing_output, "ROW_GROUP_ROWS", 100)
    ingest([str(raw.parent)], tmp_path / "wd", workers=1, progress=False)
    for name, rows in (("a", 600), ("b", 300)):
        meta = pq.ParquetFile(tmp_path / "wd" / "documents" / name / "part-00000.parquet").metadata
        assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == [100] * (
            rows // 100
        )


def test_a_source_is_cut_into_row_groups_of_row_group_bytes(tmp_path: Path, monkeypatch):
    """A source's rows become a row group once they hold ROW_GROUP_BYTES of text, cut at the
    row that reaches it, the same whatever pieces the shard was read in; rows unchanged."""

    raw = tmp_path / "raw" / "a.jsonl"
    raw.parent.mkdir()
    docs = [
        _doc(i, source=["a", "b"][i % 3 == 0], text="x" * (i * 7919 % 900 + 1)) for i in range(900)
    ]
    raw.write_bytes(b"\n".join(docs) + b"\n")
    ingest([str(raw.parent)], tmp_path / "whole", workers=1, progress=False)
    monkeypatch.setattr(ing_output, "ROW_GROUP_BYTES", 20000)
    ingest([str(raw.parent)], tmp_path / "wd", workers=1, progress=False)
    import mixer.io

    monkeypatch.setattr(mixer.io, "READ_CHUNK", 4096)
    ingest([str(raw.parent)], tmp_path / "pieces", workers=1, progress=False)
    for name in ("a", "b"):
        part = Path("documents") / name / "part-00000.parquet"
        whole = pq.ParquetFile(tmp_path / "whole" / part)
        cut = pq.ParquetFile(tmp_path / "wd" / part)
        assert whole.metadata.num_row_groups == 1
        assert cut.read().equals(whole.read())
        assert (tmp_path / "pieces" / part).read_bytes() == (tmp_path / "wd" / part).read_bytes()
        sizes = [
            [len(t.encode()) for t in cut.read_row_group(g, ["text"]).column(0).to_pylist()]
            for g in range(cut.metadata.num_row_groups)
        ]
        assert len(sizes) > 3
        assert all(sum(group) >= 20000 for group in sizes[:-1])  # each reaches the limit...
        assert all(sum(group[:-1]) < 20000 for group in sizes)  # ...at its last row


def test_tables_too_large_for_one_array_are_split(tmp_path: Path, monkeypatch):
    """The per-line path's rows are made a table at once, halved while their text is too
    large for one Arrow string array; the rows written are the same."""

    raw = tmp_path / "raw" / "a.jsonl"
    raw.parent.mkdir()
    raw.write_bytes(b"\n".join(_doc(i, source=["web", "code"][i % 2]) for i in range(40)) + b"\n")
    monkeypatch.setattr(ing_shard, "_block_reader", lambda fields: None)  # line by line
    ingest([str(raw.parent)], tmp_path / "one", workers=1, progress=False)
    tables, real = [], ing_output._rows_piece
    monkeypatch.setattr(
        ing_output, "_rows_piece", lambda rows: tables.append(len(rows)) or real(rows)
    )
    monkeypatch.setattr(ing_columns, "MAX_ARRAY_BYTES", 300)  # a few documents' text per array
    s = ingest([str(raw.parent)], tmp_path / "split", workers=1, progress=False)
    assert s["ingested"] == 40
    assert tables[0] == 40 and min(tables) <= 3  # halved down to a few rows each
    for src in ("web", "code"):
        a = pq.read_table(tmp_path / "one" / "documents" / src)
        b = pq.read_table(tmp_path / "split" / "documents" / src)
        assert a.equals(b)


def test_one_and_two_workers_write_the_same_bytes(tmp_path: Path):
    import mixer.ingest as ing

    raw = tmp_path / "raw"
    raw.mkdir()
    for shard in range(3):
        lines = [
            _doc(shard * 1000 + i, source=["web", "code", "s2/pes2o"][i % 3], metadata={"i": i})
            for i in range(300)
        ]
        lines.insert(7, b"{broken")
        (raw / f"s{shard}.jsonl.zst").write_bytes(
            zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n")
        )
    for group_below, files in ((0, 3 * 3 + 3 + 3), (ing.GROUP_BELOW_BYTES, 3 + 1 + 1)):
        outs = {}
        for workers in (1, 2):
            wd = tmp_path / f"wd{workers}-{group_below}"
            ingest([str(raw)], wd, workers=workers, progress=False, group_below=group_below)
            outs[workers] = {
                str(p.relative_to(wd)): p.read_bytes()
                for sub in ("documents", "quarantine", "state/ingest/ids")
                for p in sorted((wd / sub).rglob("*"))
                if p.is_file()
            }
        # parts, quarantine files, id files: per shard, or one of each for the three together
        assert len(outs[1]) == files
        assert outs[1] == outs[2]


ENGINES = ["both", "msgspec", "arrow"]  # the block readers: as ingest chains them, or one alone


def _count_fast_blocks(monkeypatch, engine: str = "both") -> list:
    """From now on, per block given to the block readers (`engine`: both, as ingest chains
    them, or msgspec or Arrow alone): its row count, or None when it went line by line."""

    if engine == "arrow":
        monkeypatch.setattr(ing_blocks, "_msgspec_block", lambda *a: None)
    elif engine == "msgspec":
        monkeypatch.setattr(ing_blocks, "_arrow_block", lambda *a: None)
    parsed: list = []
    real = ing_blocks._fast_block

    def counting(*args):
        block = real(*args)
        parsed.append(None if block is None else block[0].num_rows)
        return block

    monkeypatch.setattr(ing_shard, "_fast_block", counting)
    return parsed


def _rows_in_line_order(wd: Path, source_dir: str = "") -> list:
    found = pq.read_table(wd / "documents" / source_dir).to_pylist()
    return sorted(found, key=lambda r: (r["src_file"], r["src_line"]))


def _varied_records(rng, n: int, metadata_last: bool) -> list[bytes]:
    """Valid Dolma records written many ways: escapes or raw UTF-8, spaces, CRLF, metadata of
    every JSON type (or none), empty or missing sources, ids padded with spaces."""
    import random

    assert isinstance(rng, random.Random)
    words = ["alpha", "δέλτα", "日本", "🙂", 'quote"', "back\\slash", "tab\t", "nl\n", "\x00", "}{"]
    metas = [
        None,
        {"url": "u", "n": 1},
        {"deep": {"metadata": [1, {"x": "y"}]}, "big": 2**70, "f": 1.5e-7, "t": True},
        [1, "two"],
        "a string",
        3,
        {},
        {"ключ": "значение", "e": "🙂"},
    ]
    out = []
    for i in range(n):
        rec = {
            "id": rng.choice([f"d{i}", f"  d{i} ", f"日本{i}", f"\u00a0d{i}"]),
            "text": " ".join(rng.choice(words) for _ in range(rng.randint(0, 30))),
        }
        for key, values in (
            ("source", ["web", "", None, "s2/pes2o", "wiki pédia"]),
            ("added", ["2024-01-01", None]),
            ("created", ["2020", None]),
        ):
            if rng.random() < 0.7:
                rec[key] = rng.choice(values)
        if rng.random() < 0.8:
            rec["metadata"] = rng.choice(metas)
        if not metadata_last:
            keys = list(rec)
            rng.shuffle(keys)
            rec = {k: rec[k] for k in keys}
        if rng.random() < 0.3:
            line = json.dumps(rec, separators=(",", ":"), ensure_ascii=False).encode()
        else:
            line = json.dumps(rec, ensure_ascii=rng.random() < 0.5).encode()
        out.append(line + (b"\r" if rng.random() < 0.1 else b"") + (b" " * rng.randint(0, 1)))
    return out


@pytest.mark.parametrize("engine", ENGINES)
def test_fast_blocks_give_what_the_per_line_path_gives(tmp_path: Path, monkeypatch, engine):
    """The same documents, quarantine and id files whether blocks are read by msgspec, by
    Arrow or line by line; blocks with any other line (bad JSON, numeric ids, extra fields,
    blank lines) fall back to the per-line path."""
    import random

    rng = random.Random(7)
    raw = tmp_path / "raw"
    raw.mkdir()
    clean = _varied_records(rng, 400, metadata_last=True)
    (raw / "clean.jsonl").write_bytes(b"\n".join(clean) + b"\n")
    mixed = _varied_records(rng, 300, metadata_last=False)
    mixed[10:10] = [
        b'{"id": 5, "text": "numeric id"}',
        b'{"id": "x", "text": "extra", "more": {"metadata": 1}}',
        b'{"id": "x", "text": "\\ud800 lone"}',
        b'{"id": "   ", "text": "blank id"}',
        b'{"id": "x", "text": "two", "text": "keys"}',
        b'{"id": "x", "text": "a"} {"id": "y", "text": "b"}',
        b'{"id": "x", "text": "bad \xff utf8"}',
        b'{"id": "x", "metadata": {"a": 1}}',
        b"",
        b"null",
    ]
    (raw / "mixed.jsonl").write_bytes(b"\n".join(mixed) + b"\n")
    parsed = _count_fast_blocks(monkeypatch, engine)
    for name in ("clean.jsonl", "mixed.jsonl"):  # a unit (and a part) each, as line by line
        ingest([str(raw / name)], tmp_path / "arrow", progress=False, workers=1, group_below=0)
    assert parsed == [400, None]
    ingest_line_by_line(monkeypatch, raw, tmp_path / "lines", group_below=0)

    arrow, lines = outputs(tmp_path / "arrow"), outputs(tmp_path / "lines")
    assert arrow.keys() == lines.keys()
    for name in arrow:
        assert arrow[name] == lines[name], name
    docs = [r for k, v in arrow.items() if k.startswith("documents") for r in v]
    # kept: the numeric id, the extra field, the lone surrogate, the repeated key (the last wins)
    assert len(docs) == 400 + 300 + 4
    assert sum(1 for k in arrow if k.startswith("quarantine")) == 1


@pytest.mark.parametrize(
    "line",
    [
        b'{"id": "a", "text": "b",}',
        b'{"id": "a", /* c */ "text": "b"}',
        b'{"id": "a", "text": "b"} // c',
        b"{'id': 'a', 'text': 'b'}",
        b'{"id": "a", "text": "b", "metadata": {},}',
        b'{"id": "a", "text": "b"} null',
        b'{"id": "a", "text": "b"}\x00',
        b'{"id": "a", "text": "b", "metadata": NaN}',
        b'{"id": "a", "text": "b", "metadata": {"x": 1} , "source": "s"}',
        b'{"metadata": {"x": 1}}',
        b'{"id": "a", "text": "b", "metadata": ' + b"[" * 1100 + b"]" * 1100 + b"}",
        b'{"id": "a", "text": "b", "more": ' + b"[" * 100000 + b"]" * 100000 + b"}",
        b'{"id": "a", "text": "\\udc00"}',
        b'{"id": "a", "text": "\xc3"}',
        b'{"id": "\\u2003", "text": "b"}',
        b'{"id": "a", "text": "b", "te\\u0078t": "c"}',
        b' {"id": "a", "text": "b"}',
        b"null",
    ],
)
def test_lines_arrow_must_not_read_go_line_by_line(line: bytes):
    """Whatever orjson refuses, or reads differently, is never taken by the Arrow path."""

    reader = ing_blocks._block_reader(FieldMap())
    block = b'{"id": "ok", "text": "fine"}\n' + line
    assert ing_blocks._arrow_block(block, 0, len(block), 1, None, "web", reader) is None


def test_arrow_rows_do_not_point_into_the_scratch_buffer():
    """What Arrow reads is a scratch buffer reused from piece to piece: its columns must be
    copies."""

    reader = ing_blocks._block_reader(FieldMap())
    block = b"\n".join(_doc(i, metadata={"i": i, "s": "é"}) for i in range(50))
    table, _ = ing_blocks._arrow_block(block, 0, len(block), 1, None, "web", reader)
    rows = table.to_pylist()
    reader.scratch[:] = b"x" * len(reader.scratch)
    assert table.to_pylist() == rows
    assert rows[3]["text"] == "document number 3 " * 5 and rows[3]["metadata"] == '{"i":3,"s":"é"}'


@pytest.mark.parametrize("engine", ENGINES)
def test_sorted_keys_take_a_fast_path_and_give_the_same_rows(tmp_path: Path, monkeypatch, engine):
    """Writers that sort keys put metadata before source and text: msgspec reads any order;
    for Arrow the metadata value then ends before the next key. The rows are what the
    per-line path makes of them. A key of that name inside the metadata makes Arrow's piece
    go line by line (msgspec still reads it)."""
    import random

    import orjson

    rng = random.Random(11)
    metas = [None, {"source": "nested", "url": "u"}, {"k": [1, "é", {"x": None}]}, "s", 3, {}]
    sorted_lines = []
    for i in range(300):
        rec = {"id": f"d{i}", "text": f'text {i} "quoted" \\ 日本 ,"source": x'}
        for key, values in (("source", ["web", "a/b", None]), ("added", ["2024", None])):
            if rng.random() < 0.7:
                rec[key] = rng.choice(values)
        if rng.random() < 0.9:
            rec["metadata"] = rng.choice(metas)
        sorted_lines.append(orjson.dumps(rec, option=orjson.OPT_SORT_KEYS))
    assert sorted_lines[0].index(b'"metadata"') < sorted_lines[0].index(b'"text"')
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "sorted.jsonl").write_bytes(b"\n".join(sorted_lines) + b"\n")
    nested = b'{"id":"n","metadata":{"a":1,"source":"x"},"source":"web","text":"t"}'
    (raw / "nested.jsonl").write_bytes(nested + b"\n")
    parsed = _count_fast_blocks(monkeypatch, engine)
    ingest([str(raw / "sorted.jsonl")], tmp_path / "arrow", progress=False, workers=1)
    assert parsed == [300]
    ingest([str(raw / "nested.jsonl")], tmp_path / "arrow", progress=False, workers=1)
    assert parsed[1:] == [None if engine == "arrow" else 1]
    ingest_line_by_line(monkeypatch, raw, tmp_path / "lines")

    for d in sorted((tmp_path / "lines" / "documents").iterdir()):
        assert _rows_in_line_order(tmp_path / "arrow", d.name) == _rows_in_line_order(
            tmp_path / "lines", d.name
        )
    web = pq.read_table(tmp_path / "arrow" / "documents" / "web").to_pylist()
    assert {r["id"]: r["metadata"] for r in web}["n"] == '{"a":1,"source":"x"}'


@pytest.mark.parametrize("engine", ["both", "arrow"])
def test_extra_fields_take_a_fast_path_and_are_kept_in_metadata(
    tmp_path: Path, monkeypatch, engine
):
    """Keys beyond the Dolma fields, learnt from a piece's first line, are read by msgspec
    (any JSON value, a key missing on some lines) or by Arrow (typed from that line), and
    folded into metadata exactly as the per-line path folds them. Arrow sends a piece where
    one is missing, null, of another type or nested line by line; msgspec takes those, but
    not a key JSON escapes (Arrow does) nor nesting deeper than orjson reads (and nesting
    can't crash either)."""
    import random

    import orjson

    rng = random.Random(5)
    metas = [None, {"url": "inner wins", "k": 1}, ["a"], "s", {}]
    lines = []
    for i in range(200):
        rec = {"id": f"d{i}", "text": f"text {i} é", "url": f"https://x/{i}", "n": i - 100}
        rec["flag"] = i % 2 == 0
        rec['z"quoted'] = "é\u0000"
        if rng.random() < 0.8:
            rec["metadata"] = rng.choice(metas)
        if rng.random() < 0.5:
            rec["source"] = "web"
        keys = list(rec)
        rng.shuffle(keys)
        if "metadata" in keys:  # the metadata last, or before the Dolma keys when sorted
            keys.remove("metadata")
            keys.append("metadata")
        lines.append(orjson.dumps({k: rec[k] for k in keys}))
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "extra.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    deep = b"[" * 100000 + b"]" * 100000
    odd = [
        b'{"id":"a","text":"t","url":"u"}\n{"id":"b","text":"t"}',  # missing on one line
        b'{"id":"a","text":"t","url":"u"}\n{"id":"b","text":"t","url":null}',  # null
        b'{"id":"a","text":"t","url":"u"}\n{"id":"b","text":"t","url":' + deep + b"}",
        b'{"id":"a","text":"t","n":1}\n{"id":"b","text":"t","n":1.5}',
        b'{"id":"a","text":"t","n":1.5}',
        b'{"id":"a","text":"t","o":{"x":1}}',
    ]
    for k, piece in enumerate(odd):
        (raw / f"odd{k}.jsonl").write_bytes(piece + b"\n")
    parsed = _count_fast_blocks(monkeypatch, engine)  # a unit per file: one call each
    ingest([str(raw)], tmp_path / "arrow", progress=False, workers=1, group_below=0)
    if engine == "arrow":
        assert sorted(parsed, key=str) == [200] + [None] * len(odd)
    else:
        assert sorted(parsed, key=str) == [1, 1, 2, 2, 2, 200, None]
    ingest_line_by_line(monkeypatch, raw, tmp_path / "lines")

    arrow = _rows_in_line_order(tmp_path / "arrow")
    assert arrow == _rows_in_line_order(tmp_path / "lines")
    first = {r["id"]: r for r in arrow if r["src_file"].endswith("extra.jsonl")}
    meta = orjson.loads(first["d3"]["metadata"])
    assert list(meta)[:4] == ["flag", "n", "url", 'z"quoted'] and meta["n"] == -97


def _random_value(rng, depth: int = 0):
    """A metadata value of any JSON shape, with keys named like the Dolma fields inside."""
    r = rng.random()
    if depth > 2 or r < 0.3:
        return rng.choice(["s", "é", "", 'a"b', "x\\y", 0, -5, 2**40, True, None, 1.5, ',"text":'])
    if r < 0.6:
        keys = ["a", "source", "text", "metadata", "id", "k"]
        return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


@pytest.mark.parametrize("seed, engine", [(1, "both"), (2, "both"), (3, "arrow"), (4, "msgspec")])
def test_random_shapes_give_the_same_rows_by_fast_blocks_and_line_by_line(
    tmp_path: Path, monkeypatch, seed, engine
):
    """Shards of valid records written every way (keys sorted, shuffled or metadata last;
    compact or spaced; extra keys of every type; keys named like the fields inside metadata):
    the same documents whichever path read them, and the block readers take some of them."""
    import random

    import orjson

    rng = random.Random(seed)
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in range(25):
        sort, shuffle, spaced = rng.random() < 0.4, rng.random() < 0.2, rng.random() < 0.2
        kinds = {
            "str": lambda i: f"u{i}",
            "int": lambda i: i,
            "bool": lambda i: i % 2 == 0,
            "mixed": lambda i: rng.choice(["a", 1, None]),
        }
        extras = {}
        if rng.random() < 0.5:
            for name in rng.sample(["url", "version", "n", "flag", "zz"], rng.randint(1, 3)):
                extras[name] = kinds[rng.choice(list(kinds))]
        lines = []
        for i in range(rng.randint(1, 60)):
            rec = {"id": f"d{f}-{i}", "text": rng.choice(["t", "é x", 'q"q', 'a,"source":b'])}
            for key in ("source", "added", "created"):
                if rng.random() < 0.6:
                    rec[key] = rng.choice(["web", None, ""])
            if rng.random() < 0.85:
                rec["metadata"] = _random_value(rng)
            rec.update({k: make(i) for k, make in extras.items()})
            keys = sorted(rec) if sort else list(rec)
            if shuffle and not sort:
                rng.shuffle(keys)
            rec = {k: rec[k] for k in keys}
            if spaced:
                lines.append(json.dumps(rec, ensure_ascii=False).encode())
            else:
                try:
                    lines.append(orjson.dumps(rec))
                except TypeError:  # an integer orjson won't write
                    lines.append(json.dumps(rec).encode())
        (raw / f"s{f:02d}.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    parsed = _count_fast_blocks(monkeypatch, engine)
    ingest([str(raw)], tmp_path / "arrow", progress=False, workers=1, group_below=0)
    ingest_line_by_line(monkeypatch, raw, tmp_path / "lines", group_below=0)
    assert outputs(tmp_path / "arrow") == outputs(tmp_path / "lines")
    taken = sum(n is not None for n in parsed)  # a block per shard
    assert 0 < taken and (taken < len(parsed) or engine != "arrow")


_META_PIECES = {
    "compact": (
        [
            '{"id":"a","text":"x","metadata":{"k":[1,"é"]}}'.encode(),
            b'{"id":"b","text":"y"}',
            b'{"id":"c","text":"z","metadata":null}',
        ],
        True,
    ),  # fmt: skip
    "values that parse together but not one by one": (
        [b'{"id":"a","metadata":[1}', b'{"id":"b","metadata":2]}', b'{"id":"c","metadata":3,4}'],
        False,
    ),
    "spaces around the key": ([b'{"id": "a", "text": "x", "metadata": {"k": 1}}'], False),
    "the key inside the value": ([b'{"id":"a","metadata":{"metadata":1}}'], False),
    "the key after a comma inside the value": (
        [b'{"id":"a","metadata":{"x":1,"metadata":2}}'],
        False,
    ),
    "not as orjson writes it": ([b'{"id":"a","metadata":{"k":1.0e0}}'], False),
    "deeper than orjson writes": (
        [b'{"id":"a","metadata":' + b"[" * 300 + b"]" * 300 + b"}"],
        False,
    ),
    "a space after the brace": ([b'{"id":"a","metadata":{"k":1}} '], False),
    "an empty line": ([b'{"id":"a","metadata":1}', b""], False),
}


@pytest.mark.parametrize("name", list(_META_PIECES))
def test_metadata_cut_at_once_is_the_line_by_line_cut_or_declines(name):
    """The vectorised metadata cut gives exactly what the line-by-line one gives, or declines
    (then the line-by-line cut runs); it takes the usual compact piece."""

    lines, taken = _META_PIECES[name]
    data = b"\n".join(lines)
    key = b'"metadata":'
    fast = ing_blocks._cut_metadata_at_once(data, 0, len(data), key, bytearray())
    slow = ing_blocks._cut_metadata_by_line(data, 0, len(data), key, bytearray())
    assert (fast is not None) == taken
    if fast is not None:
        assert slow is not None and fast[1].equals(slow[1]) and bytes(fast[0]) == bytes(slow[0])
    if name == "compact":
        assert fast[1].to_pylist() == ['{"k":[1,"é"]}', None, None]
        assert bytes(fast[0]).count(b"metadata") == 0
