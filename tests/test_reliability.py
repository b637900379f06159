"""Real data as it comes: no silent loss, no stale data, a clear error for every bad input.

Each test builds its own fixtures; each names the promise of docs/reliability.md it checks.
"""

from __future__ import annotations

import errno
import gzip
import os
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
import zstandard
from click.testing import CliRunner

from mixer.cli import main
from mixer.errors import MixerError
from mixer.ingest import FieldMap, IngestSource, IngestStage, ingest
from mixer.inputs import resolve_inputs
from mixer.schema import documents_dir, list_parts, list_sources, quarantine_dir, source_dir_name
from mixer.stage import RunContext, run_stage


def _doc(i: int, source: str | None = "web", **extra) -> bytes:
    rec = {"id": f"d{i}", "text": f"document number {i} " * 3}
    if source is not None:
        rec["source"] = source
    rec.update(extra)
    return orjson.dumps(rec)


def _shard(path: Path, docs: list[bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"\n".join(docs) + b"\n"
    if path.name.endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    elif path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _rows(wd: Path, source: str) -> list[str]:
    parts = list_parts(documents_dir(wd, source))
    return sorted(i for p in parts for i in pq.read_table(p).column("id").to_pylist())


def _run(wd: Path, sources: list[IngestSource], prune: str = "sources") -> dict:
    ctx = RunContext(wd, progress=False, echo=lambda _m: None)
    from mixer.executor import LocalExecutor

    ctx.executor = LocalExecutor(1)
    return run_stage(IngestStage(wd, sources, prune), ctx)


# ---------------------------------------------------------------- sources sharing shards


def test_two_sources_listing_the_same_shard_each_get_every_document(tmp_path: Path):
    shared = _shard(tmp_path / "raw" / "shared.jsonl", [_doc(i) for i in range(80)])
    only_b = _shard(tmp_path / "raw" / "b.jsonl", [_doc(i) for i in range(100, 110)])
    wd = tmp_path / "wd"
    s = _run(
        wd,
        [IngestSource("a", [str(shared)]), IngestSource("b", [str(shared), str(only_b)])],
    )
    assert len(_rows(wd, "a")) == 80 and len(_rows(wd, "b")) == 90
    assert s["sources"]["a"]["ingested"] == 80 and s["sources"]["b"]["ingested"] == 90
    # a rerun changes nothing, and a rerun of one source alone never deletes the other's parts
    _run(wd, [IngestSource("b", [str(shared), str(only_b)])])
    assert len(_rows(wd, "a")) == 80 and len(_rows(wd, "b")) == 90


def test_identical_inputs_for_two_sources(tmp_path: Path):
    raw = tmp_path / "raw"
    _shard(raw / "x.jsonl", [_doc(i) for i in range(5)])
    wd = tmp_path / "wd"
    _run(wd, [IngestSource("a", [str(raw)]), IngestSource("b", [str(raw)])])
    assert _rows(wd, "a") == _rows(wd, "b") == [f"d{i}" for i in range(5)]


def test_removed_shard_leaves_no_documents_behind(tmp_path: Path):
    raw = tmp_path / "raw"
    _shard(raw / "x.jsonl", [_doc(i) for i in range(5)])
    gone = _shard(raw / "y.jsonl", [_doc(i) for i in range(5, 10)] + [b"{bad"])
    wd = tmp_path / "wd"
    ingest([str(raw)], wd, source="web", workers=1, progress=False)
    assert len(_rows(wd, "web")) == 10 and list(quarantine_dir(wd, "web").iterdir())
    # a file mixer did not write stays whatever happens
    foreign = documents_dir(wd, "web") / "notes.txt"
    foreign.write_text("mine")
    gone.unlink()
    s = ingest([str(raw)], wd, source="web", workers=1, progress=False)
    assert _rows(wd, "web") == [f"d{i}" for i in range(5)]
    assert not list(quarantine_dir(wd, "web").glob("part-*"))
    assert s["ingested"] == 5 and foreign.read_text() == "mine"
    # another input of the same source on the command line is not "removed"
    other = _shard(tmp_path / "other" / "z.jsonl", [_doc(i) for i in range(50, 52)])
    ingest([str(other)], wd, source="web", workers=1, progress=False)
    assert len(_rows(wd, "web")) == 7


def test_recipe_prune_drops_an_input_the_recipe_no_longer_lists(tmp_path: Path):
    x = _shard(tmp_path / "raw" / "x.jsonl", [_doc(i) for i in range(3)])
    y = _shard(tmp_path / "raw2" / "y.jsonl", [_doc(i) for i in range(3, 6)])
    wd = tmp_path / "wd"
    _run(wd, [IngestSource("web", [str(x), str(y)])])
    assert len(_rows(wd, "web")) == 6
    _run(wd, [IngestSource("web", [str(x)])])
    assert len(_rows(wd, "web")) == 3


def test_deleted_output_is_rewritten_on_rerun(tmp_path: Path):
    raw = tmp_path / "raw"
    _shard(raw / "x.jsonl", [_doc(i) for i in range(4)])
    wd = tmp_path / "wd"
    ingest([str(raw)], wd, source="web", workers=1, progress=False)
    (part,) = documents_dir(wd, "web").glob("part-*.parquet")
    part.unlink()
    s = ingest([str(raw)], wd, source="web", workers=1, progress=False)
    assert s["shards_ingested"] == 1 and part.exists()
    again = ingest([str(raw)], wd, source="web", workers=1, progress=False)
    assert again["shards_ingested"] == 0


# ---------------------------------------------------------------- the same shard twice


def test_same_shard_given_twice_is_read_once(tmp_path: Path, monkeypatch):
    f = _shard(tmp_path / "raw" / "web" / "x.jsonl", [_doc(i) for i in range(5)])
    monkeypatch.chdir(tmp_path)
    wd = tmp_path / "wd"
    s = ingest(["raw/web/x.jsonl", str(f), "raw", "raw/**/*.jsonl"], wd, progress=False)
    assert s["lines_read"] == 5 and s["ingested"] == 5 and len(_rows(wd, "web")) == 5


def test_glob_through_a_symlink_loop(tmp_path: Path):
    raw = tmp_path / "raw"
    _shard(raw / "web" / "x.jsonl", [_doc(i) for i in range(5)])
    os.symlink(raw, raw / "web" / "loop")  # raw/web/loop -> raw: a cycle
    os.symlink(raw / "web", raw / "alias")
    assert resolve_inputs([f"{raw}/**/*.jsonl"]) == [str((raw / "web" / "x.jsonl").resolve())]
    s = ingest([f"{raw}/**/*.jsonl", str(raw)], tmp_path / "wd", progress=False)
    assert s["lines_read"] == 5 and s["ingested"] == 5


def test_unreadable_subfolder_and_file_are_errors(tmp_path: Path, monkeypatch):
    raw = tmp_path / "raw"
    _shard(raw / "ok" / "x.jsonl", [_doc(1)])
    _shard(raw / "locked" / "y.jsonl", [_doc(2)])
    real_scandir = os.scandir

    def scandir(path):
        if str(path).endswith("locked"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr("mixer.inputs.os.scandir", scandir)
    with pytest.raises(MixerError, match=r"can't read folder .*locked: Permission denied"):
        resolve_inputs([str(raw)])
    monkeypatch.setattr("mixer.inputs.os.scandir", real_scandir)

    def probe(path):
        if path.endswith("y.jsonl"):
            raise PermissionError(errno.EACCES, "Permission denied", path)

    monkeypatch.setattr("mixer.inputs._probe_readable", probe)
    r = CliRunner().invoke(main, ["ingest", str(raw), "--out", str(tmp_path / "wd")])
    assert r.exit_code == 2 and "y.jsonl: Permission denied" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


# ---------------------------------------------------------------- source strings as written

REAL_SOURCES = [
    "olmoe-routing-sample:c4",
    "s2/pes2o",
    "a:b",
    "a/b",
    "a b",
    "a_b",
    "x" * 300,
    "wikipédia-日本語",
    "..",
    "../../etc",
    "web\n",
    "/abs/path",
    "web",
]


def test_any_source_string_is_kept_and_gets_its_own_folder(tmp_path: Path):
    raw = _shard(
        tmp_path / "raw" / "x.jsonl",
        [_doc(i, source=s) for i, s in enumerate(REAL_SOURCES)],
    )
    wd = tmp_path / "wd"
    s = ingest([str(raw)], wd, progress=False)
    assert s["ingested"] == len(REAL_SOURCES) and s["quarantined"] == 0
    dirs = {source_dir_name(src) for src in REAL_SOURCES}
    assert len(dirs) == len(REAL_SOURCES)  # no two sources share a folder
    assert source_dir_name("web") == "web"  # simple names keep their layout
    assert {p.name for p in (wd / "documents").iterdir()} == dirs
    for name in dirs:
        assert "/" not in name and ".." not in name and len(name.encode()) < 120
    for src in REAL_SOURCES:
        t = pq.read_table(documents_dir(wd, src))
        assert t.column("source").to_pylist() == [src]
    assert sorted(list_sources(wd)) == sorted(REAL_SOURCES)
    # nothing was written outside the workdir
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "wd"]


def test_source_dir_name_is_stable_and_injective():
    assert source_dir_name("olmoe-routing-sample:c4").startswith("olmoe-routing-sample_c4~")
    assert source_dir_name("s2/pes2o") == source_dir_name("s2/pes2o")
    assert source_dir_name("a_b") == "a_b" and "~" in source_dir_name("a b")
    # a plain name that looks like a derived one can't take its place: "~" is never plain
    derived = source_dir_name("a:b")
    assert source_dir_name(derived) != derived


def test_tag_and_dedup_find_sources_with_odd_names(tmp_path: Path):
    from mixer.tag import tag_workdir

    raw = _shard(
        tmp_path / "raw" / "x.jsonl",
        [_doc(i, source="s2/pes2o", text="word " * (20 + i)) for i in range(6)],
    )
    wd = tmp_path / "wd"
    ingest([str(raw)], wd, progress=False, workers=1)
    tag_workdir(wd, ["gopher"], {}, workers=1, progress=False)
    from mixer.schema import attributes_dir

    assert pq.read_table(attributes_dir(wd, "gopher", "s2/pes2o")).num_rows == 6
    from mixer.sql_views import connect
    from mixer.train_fasttext import _connect

    q = "SELECT source, count(gopher__keep) FROM docs GROUP BY 1"
    assert connect(wd).execute(q).fetchall() == [("s2/pes2o", 6)]
    assert _connect(wd).execute(q).fetchall() == [("s2/pes2o", 6)]
    from mixer.dedup import run_dedup

    run_dedup(wd, workers=1, progress=False)
    run_dedup(wd, workers=1, progress=False)  # a rerun keeps the odd-named source's parts
    assert pq.read_table(attributes_dir(wd, "dedup", "s2/pes2o")).num_rows == 6


# ---------------------------------------------------------------- streams


def _lines(n: int) -> list[bytes]:
    return [_doc(i, text=f"line {i} " + "w " * (i % 50)) for i in range(n)]


def _careful_zstd(comp: bytes) -> tuple[int | None, bytes]:
    """What a reader fed one byte at a time decodes before the damage, and where it fails."""
    dec, out = zstandard.ZstdDecompressor().decompressobj(), []
    for i in range(len(comp)):
        try:
            out.append(dec.decompress(comp[i : i + 1]))
        except zstandard.ZstdError:
            return i, b"".join(out)
        if dec.eof:
            break
    return None, b"".join(out)


def test_corrupt_zstd_middle_keeps_every_decodable_line(tmp_path: Path):
    lines = _lines(20_000)
    clean = zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n")
    # damage the middle until the damage is detectable (zstd without checksums can decode
    # some damage into other bytes)
    for attempt in range(100):
        comp = bytearray(clean)
        at = len(comp) // 2 + attempt * 131
        comp[at : at + 64] = bytes(64)
        fail, out = _careful_zstd(bytes(comp))
        if fail is not None:
            break
    assert fail is not None
    path = tmp_path / "raw" / "web" / "c.jsonl.zst"
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(comp))
    careful = out.count(b"\n")
    assert fail is not None and careful > 1000
    wd = tmp_path / "wd"
    s = ingest([str(path)], wd, progress=False)
    assert s["ingested"] == careful
    assert s["quarantine_reasons"] == {"corrupt_stream": 1}
    assert s["lines_read"] == careful + 1
    (q,) = quarantine_dir(wd, "web").glob("part-*.jsonl")
    rec = orjson.loads(q.read_bytes().splitlines()[0])
    assert rec["reason"] == "corrupt_stream" and rec["offset"] == fail
    assert f"byte {fail}" in rec["detail"] and rec["src_line"] == careful + 1
    assert s["stream_errors"][0]["offset"] == fail


def test_corrupt_gzip_keeps_lines_before_the_damage(tmp_path: Path):
    lines = _lines(5000)
    data = gzip.compress(b"\n".join(lines) + b"\n")
    path = tmp_path / "raw" / "web" / "c.jsonl.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(data[: len(data) // 2] + b"\x00" * 64 + data[len(data) // 2 + 64 :])
    s = ingest([str(path)], tmp_path / "wd", progress=False)
    assert s["lines_read"] == s["ingested"] + s["quarantined"]
    assert s["quarantine_reasons"].get("corrupt_stream") == 1 and s["ingested"] > 1000


def test_zst_name_with_plain_text_inside(tmp_path: Path):
    path = tmp_path / "raw" / "web" / "p.jsonl.zst"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\n".join(_doc(i) for i in range(10)) + b"\n")
    s = ingest([str(path)], tmp_path / "wd", progress=False)
    assert s["lines_read"] == 10 and s["ingested"] == 10 and s["quarantined"] == 0


def test_zst_name_with_garbage_inside_is_a_corrupt_stream(tmp_path: Path):
    path = tmp_path / "raw" / "web" / "g.jsonl.zst"
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(range(256)) * 8)
    s = ingest([str(path)], tmp_path / "wd", progress=False)
    assert s["lines_read"] == 1 and s["quarantine_reasons"] == {"corrupt_stream": 1}


def test_bom_big_ids_and_deep_nesting(tmp_path: Path):
    deep = b'{"id": "deep", "text": "t", "metadata": ' + b"[" * 1100 + b"]" * 1100 + b"}"
    deep2 = b'{"id": "deep2", "text": "t", "x": ' + b'{"a":' * 1100 + b"1" + b"}" * 1100 + b"}"
    lines = [
        b"\xef\xbb\xbf" + _doc(0),
        b'{"id": 123456789012345678901234567890, "text": "big", "source": "web"}',
        b'{"id": 9007199254740993, "text": "2^53+1", "source": "web"}',
        b'{"id": -18446744073709551617, "text": "neg", "source": "web"}',
        deep,
        deep2,
    ]
    path = _shard(tmp_path / "raw" / "web" / "x.jsonl", lines)
    wd = tmp_path / "wd"
    s = ingest([str(path)], wd, progress=False)
    assert s["lines_read"] == 6 and s["ingested"] == 4
    assert s["quarantine_reasons"] == {"too_deeply_nested": 2}
    ids = set(pq.read_table(documents_dir(wd, "web")).column("id").to_pylist())
    assert ids == {
        "d0",
        "123456789012345678901234567890",
        "9007199254740993",
        "-18446744073709551617",
    }


def test_full_disk_is_one_line_error(tmp_path: Path, monkeypatch):
    path = _shard(tmp_path / "raw" / "web" / "x.jsonl", [_doc(i) for i in range(3)])

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "wd" / "x"))

    monkeypatch.setattr("mixer.ingest.output._PartWriter.write", full)  # on the writer thread
    r = CliRunner().invoke(
        main, ["ingest", str(path), "--out", str(tmp_path / "wd"), "--workers", "1"]
    )
    assert r.exit_code == 2, r.output
    assert "no space left on device" in r.output and "Traceback" not in r.output
    assert not list((tmp_path / "wd" / "documents").rglob("part-*"))


def test_shard_unreadable_while_ingesting_is_one_line_error(tmp_path: Path, monkeypatch):
    path = _shard(tmp_path / "raw" / "web" / "x.jsonl", [_doc(i) for i in range(3)])
    import mixer.io

    real = mixer.io.open_binary

    def deny(p):
        if str(p).endswith("x.jsonl"):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real(p)

    monkeypatch.setattr("mixer.io.open_binary", deny)
    with pytest.raises(MixerError, match=r"can't read .*x.jsonl: Permission denied"):
        ingest([str(path)], tmp_path / "wd", progress=False, workers=1)


def test_field_map_source_column(tmp_path: Path):
    path = _shard(
        tmp_path / "raw" / "x.jsonl",
        [orjson.dumps({"i": "1", "t": "hello", "src": "s2/pes2o"})],
    )
    s = ingest(
        [str(path)],
        tmp_path / "wd",
        fields=FieldMap(id="i", text="t", source="src"),
        progress=False,
    )
    assert list(s["sources"]) == ["s2/pes2o"]


# ---------------------------------------------------------------- what SQL may touch


@pytest.fixture
def small_workdir(tmp_path: Path) -> Path:
    raw = _shard(tmp_path / "raw" / "web" / "x.jsonl", [_doc(i) for i in range(4)])
    wd = tmp_path / "wd"
    ingest([str(raw)], wd, progress=False, workers=1)
    (tmp_path / "secret.txt").write_text("TOP-SECRET-CONTENT\n")
    return wd


def _sql(wd: Path, query: str, *extra: str):
    return CliRunner().invoke(main, ["sql", str(wd), query, *extra])


def test_mixer_sql_stays_inside_the_workdir(small_workdir: Path, tmp_path: Path):
    wd = small_workdir
    ok = _sql(wd, "SELECT count(*) AS n FROM documents")
    assert ok.exit_code == 0 and ok.output.splitlines() == ["n", "4"]
    secret = tmp_path / "secret.txt"
    refused = [
        f"SELECT * FROM read_text('{secret}')",
        f"SELECT * FROM read_csv('{wd}/../secret.txt')",
        f"COPY (SELECT 1) TO '{tmp_path}/out.csv'",
        f"ATTACH '{tmp_path}/x.duckdb'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
    ]
    for q in refused:
        r = _sql(wd, q)
        assert r.exit_code == 2, (q, r.output)
        assert "TOP-SECRET" not in r.output and "Traceback" not in r.output
        assert len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "x.duckdb").exists()
    # writing inside the workdir is a local inspection task and allowed
    inside = _sql(wd, f"COPY (SELECT id FROM documents) TO '{wd}/ids.csv'")
    assert inside.exit_code == 0 and (wd / "ids.csv").exists()
    # the flag lifts the restriction
    r = _sql(wd, f"SELECT * FROM read_text('{secret}')", "--allow-external")
    assert r.exit_code == 0 and "TOP-SECRET" in r.output


def test_empty_sql_query_is_one_line_error(small_workdir: Path):
    for q in ("", "   ", ";"):
        r = _sql(small_workdir, q)
        assert r.exit_code == 2 and "empty SQL query" in r.output and "Traceback" not in r.output


def test_explain_recipe_filters_cannot_read_files(small_workdir: Path, tmp_path: Path):
    from mixer.sql_views import explain_document

    secret = tmp_path / "secret.txt"
    expr = f"(SELECT count(*) FROM read_text('{secret}')) > 0"
    (rec,) = explain_document(small_workdir, "d1", {"web": [expr, "length(text) > 3"]})
    assert rec["filters"]["length(text) > 3"] is True
    verdict = rec["filters"][expr]
    assert isinstance(verdict, str) and verdict.startswith("error: Permission Error")
    assert "TOP-SECRET" not in verdict


def test_train_fasttext_selections_cannot_read_files(small_workdir: Path, tmp_path: Path):
    from mixer.train_fasttext import _connect

    con = _connect(small_workdir)
    assert con.execute("SELECT count(*) FROM docs").fetchone() == (4,)
    with pytest.raises(Exception, match="Permission Error"):
        con.execute(f"SELECT * FROM read_text('{tmp_path}/secret.txt')").fetchall()


def test_mix_filters_connection_has_no_file_access(tmp_path: Path):
    from mixer.mix import _connect

    (tmp_path / "f.csv").write_text("a\n1\n")
    con = _connect()
    with pytest.raises(Exception, match="Permission Error"):
        con.execute(f"SELECT * FROM read_csv('{tmp_path}/f.csv')").fetchall()


def test_adding_an_input_reruns_only_its_shards(tmp_path: Path):
    x = _shard(tmp_path / "raw" / "x.jsonl", [_doc(i) for i in range(3)])
    y = _shard(tmp_path / "raw2" / "y.jsonl.gz", [_doc(i) for i in range(3, 6)])
    wd = tmp_path / "wd"
    ingest([str(x)], wd, source="web", progress=False, workers=1, group_below=0)
    s = ingest([str(x), str(y)], wd, source="web", progress=False, workers=1, group_below=0)
    assert s["shards_ingested"] == 1 and s["shards_skipped"] == 1 and s["ingested"] == 6


def test_ingest_stage_bytes_do_not_depend_on_workers(tmp_path: Path):
    import hashlib

    from mixer.executor import LocalExecutor

    raw = tmp_path / "raw"
    for s in range(3):
        _shard(
            raw / f"s{s}.jsonl.zst",
            [_doc(s * 100 + i, source=["web", "s2/pes2o"][i % 2]) for i in range(50)] + [b"{x"],
        )
    sources = [IngestSource(None, [str(raw)]), IngestSource("all", [str(raw)])]

    def digest(wd: Path) -> dict:
        return {
            str(p.relative_to(wd)): hashlib.sha256(p.read_bytes()).hexdigest()
            for sub in ("documents", "quarantine")
            for p in sorted((wd / sub).rglob("*"))
            if p.is_file()
        }

    # per shard: web, s2/pes2o and all per shard, a quarantine file per shard and source;
    # grouped (the default): the three shards as one unit per source of the run
    for group_below, files in ((0, 3 * 3 + 3 + 3), (8 << 20, 3 + 2)):
        out = []
        for workers in (1, 2):
            wd = tmp_path / f"wd{workers}-{group_below}"
            ctx = RunContext(wd, LocalExecutor(workers), progress=False, echo=lambda _m: None)
            s = run_stage(IngestStage(wd, sources, group_below=group_below), ctx)
            assert s["lines_read"] == 2 * 153 and s["quarantined"] == 6
            out.append(digest(wd))
        assert out[0] == out[1] and len(out[0]) == files


def test_outputs_get_the_usual_permissions_and_no_temporaries_stay(tmp_path: Path):
    path = _shard(tmp_path / "raw" / "web" / "x.jsonl", [_doc(i) for i in range(3)])
    old = os.umask(0o022)
    try:
        ingest([str(path)], tmp_path / "wd", progress=False, workers=1)
    finally:
        os.umask(old)
    (part,) = (tmp_path / "wd" / "documents" / "web").iterdir()
    assert part.stat().st_mode & 0o777 == 0o644
    assert not list((tmp_path / "wd").rglob(".tmp-*"))
