"""The ingest stage: raw JSONL shards (.jsonl, .gz, .zst) -> documents/<source>/part-NNNNN.parquet.

Every input line ends up in exactly one place: a row of a documents part (with its src_file and
src_line), or a quarantine record (with src_file, src_line, reason and the raw bytes). Each
shard is streamed in batches, so memory is bounded by the batch size whatever the shard size.

`IngestStage` runs on the one stage interface (mixer/stage.py): one task per (source, shard),
sized by the shard's bytes. Each (source, shard) pair gets its own stable part number
(state/ingest/parts.json), so two sources that list the same shard each get all of its
documents, and every source string found in that task's shard is written to
documents/<dir of source>/part-N.parquet. A record state/ingest/part-N.json names the files the
task wrote; a later run removes only files such records name: the outputs of a shard that
left a source's inputs, and the outputs of an older version of a shard that this version did
not rewrite. Nothing mixer did not write is ever deleted.

`ingest(...)` is the thin wrapper the `mixer ingest` command and the tests call.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixer.errors import MixerError
from mixer.inputs import item_key, resolve_each
from mixer.io import (
    StreamError,
    atomic_path,
    clean_temporaries,
    file_fingerprint,
    iter_lines,
    parquet_writer_atomic,
    read_json,
    write_json_atomic,
)
from mixer.schema import (
    DOCUMENT_SCHEMA,
    documents_dir,
    list_parts,
    part_name,
    quarantine_dir,
    state_dir,
)
from mixer.stage import RunContext, Stage, Task, run_stage

BATCH_ROWS = 8192
BATCH_BYTES = 32 << 20
LOW_CARDINALITY = ["source", "added", "created", "src_file"]
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class FieldMap:
    """Where the Dolma fields are in the input records (for non-Dolma JSONL)."""

    id: str = "id"
    text: str = "text"
    source: str = "source"
    added: str = "added"
    created: str = "created"
    metadata: str = "metadata"

    @functools.cached_property
    def names(self) -> frozenset[str]:
        return frozenset((self.id, self.text, self.source, self.added, self.created, self.metadata))


@dataclass(frozen=True)
class IngestSource:
    """One source of an ingest: its name (None: each document's own `source` field, else the
    shard's folder name), its inputs (files, folders, globs, URLs) and its field map."""

    name: str | None
    inputs: list[str] | tuple[str, ...]
    fields: FieldMap = field(default_factory=FieldMap)


# ------------------------------------------------------------------------ one line -> record


def _as_text(value) -> str | None:
    """Optional string fields: keep strings, stringify scalars, None stays None."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


def _scrub(value: str) -> str:
    """Lone surrogates (legal in JSON escapes, illegal in UTF-8) become "?"."""
    return value.encode("utf-8", "replace").decode("utf-8") if value else value


def _loads(line: bytes, is_last_unterminated: bool):
    """Parse one line. Returns (record, reason, whether the slow parser was needed)."""
    try:
        return orjson.loads(line), None, False
    except orjson.JSONDecodeError as e:
        if "recursion limit" in str(e):
            return None, "too_deeply_nested", False
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8", False
    try:
        # The standard library accepts lone surrogate escapes that orjson refuses.
        return json.loads(text), None, True
    except RecursionError:
        return None, "too_deeply_nested", False
    except ValueError:
        return None, ("truncated_line" if is_last_unterminated else "invalid_json"), False


def _exact_number(raw: bytes, key: str, value):
    """orjson reads integers beyond 64 bits (and every float) as doubles, which drops digits
    of ids above 2**53: take the literal digits from the line instead."""
    try:
        exact = json.loads(raw, parse_int=str, parse_float=str, parse_constant=str)
        got = exact.get(key) if isinstance(exact, dict) else None
        return got if isinstance(got, str) else str(value)
    except (ValueError, RecursionError):
        return str(value)


def parse_record(
    record,
    fields: FieldMap,
    used: frozenset | None = None,
    scrub: bool = False,
    raw: bytes | None = None,
) -> tuple[list | None, str | None]:
    """Validate and normalise one decoded JSON value into the Dolma columns
    [id, text, source, added, created, metadata], or name why it can't be.

    `scrub` replaces lone surrogates, which only the standard-library fallback parser lets through.
    `raw` (the line) lets a numeric id keep its exact digits.
    """
    if not isinstance(record, dict):
        return None, "not_an_object"
    text = record.get(fields.text)
    if text is None:
        return None, "missing_text"
    if not isinstance(text, str):
        return None, "text_not_string"
    doc_id = record.get(fields.id)
    if isinstance(doc_id, float) or (isinstance(doc_id, int) and abs(doc_id) > 2**53):
        doc_id = _exact_number(raw, fields.id, doc_id) if raw is not None else str(doc_id)
    elif isinstance(doc_id, int) and not isinstance(doc_id, bool):
        doc_id = str(doc_id)
    if not isinstance(doc_id, str) or not doc_id.strip():
        return None, "missing_id"
    metadata = record.get(fields.metadata)
    # Fields beyond the Dolma ones are kept inside metadata rather than dropped.
    used = used if used is not None else fields.names
    extra_keys = record.keys() - used
    extra = {k: record[k] for k in sorted(extra_keys)} if extra_keys else None
    if extra:
        metadata = (
            {**extra, **metadata}
            if isinstance(metadata, dict)
            else {**extra, "metadata": metadata}
            if metadata is not None
            else extra
        )
    try:
        meta_json = None if metadata is None else orjson.dumps(metadata).decode()
    except TypeError:  # lone surrogates in keys or values
        meta_json = _scrub(json.dumps(metadata, ensure_ascii=False))
    if scrub:
        doc_id, text = _scrub(doc_id), _scrub(text)
    return [
        doc_id,
        text,
        _as_text(record.get(fields.source)),
        _as_text(record.get(fields.added)),
        _as_text(record.get(fields.created)),
        meta_json,
    ], None


# ------------------------------------------------------------------------ one shard


class _SourceOutput:
    """Buffered rows of one source of one shard, flushed as Parquet row groups.

    Compressing and writing a row group happens on a background thread (pyarrow releases the
    GIL there) while the next batch is parsed; at most one batch waits, so memory stays bounded.
    """

    def __init__(self, path: Path):
        self.path = path
        self.batch: list[tuple] = []
        self.nbytes = 0
        self.rows = 0
        self._ctx = None
        self._writer = None
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future | None = None

    def add(self, doc: list, src_file: str, src_line: int) -> None:
        self.batch.append((*doc, src_file, src_line))
        self.nbytes += len(doc[1])
        self.rows += 1
        if len(self.batch) >= BATCH_ROWS or self.nbytes >= BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.batch and self._writer is not None:
            return
        if self._writer is None:
            # Dictionary-encoding unique texts and ids only costs time.
            self._ctx = parquet_writer_atomic(
                self.path, DOCUMENT_SCHEMA, use_dictionary=LOW_CARDINALITY
            )
            self._writer = self._ctx.__enter__()
            self._pool = ThreadPoolExecutor(1)
        columns = list(zip(*self.batch, strict=True)) or [[] for _ in DOCUMENT_SCHEMA]
        table = pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(columns, DOCUMENT_SCHEMA, strict=True)],
            schema=DOCUMENT_SCHEMA,
        )
        self._wait()
        self._pending = self._pool.submit(self._writer.write_table, table)
        self.batch = []
        self.nbytes = 0

    def _wait(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None

    def close(self, error: BaseException | None = None) -> None:
        try:
            if error is None:
                self.flush()
            self._wait()
        except BaseException as e:
            error = error or e
            raise
        finally:
            if self._pool is not None:
                self._pool.shutdown()
            if self._ctx is not None:
                self._ctx.__exit__(type(error) if error else None, error, None)


class _Quarantine:
    """Rejected lines of one shard, per source, as JSONL written under temporary names."""

    def __init__(self, workdir: Path, index: int):
        self.workdir, self.index = workdir, index
        self.files: dict[str, tuple] = {}

    def add(
        self, source: str, src_file: str, src_line: int, reason: str, raw: bytes, **extra
    ) -> None:
        if source not in self.files:
            path = quarantine_dir(self.workdir, source) / part_name(self.index, ".jsonl")
            ctx = atomic_path(path)
            tmp = ctx.__enter__()
            self.files[source] = (ctx, open(tmp, "wb"), path)
        record = {
            "src_file": src_file,
            "src_line": src_line,
            "reason": reason,
            "raw": raw.decode("utf-8", "backslashreplace"),
            **extra,
        }
        self.files[source][1].write(orjson.dumps(record) + b"\n")

    def close(self, error: BaseException | None = None) -> list[str]:
        for ctx, fh, _ in self.files.values():
            fh.close()
            ctx.__exit__(type(error) if error else None, error, None)
        return [str(p) for _, _, p in self.files.values()]


def _default_source(path: str) -> str:
    parent = PurePosixPath(path.split("://", 1)[-1]).parent.name
    return parent or "default"


def ingest_shard(workdir: str, path: str, index: int, source: str | None, fields: FieldMap) -> dict:
    """Ingest one shard into documents/<dir of source>/part-<index>.parquet (per source string
    found, or the forced `source`). Returns its statistics; any OSError (unreadable shard, full
    disk) is a one-line MixerError and leaves no partial output."""
    try:
        return _ingest_shard(workdir, path, index, source, fields)
    except OSError as e:
        raise _os_error(e, path, workdir) from None


def _os_error(e: OSError, path: str, workdir: str) -> MixerError:
    what = e.strerror or type(e).__name__
    target = e.filename or path
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return MixerError(f"no space left on device writing under {workdir} ({target}): {what}")
    if str(target).startswith(str(workdir)):
        return MixerError(f"can't write {target}: {what}")
    return MixerError(f"can't read {target}: {what}")


def _ingest_shard(
    workdir: str, path: str, index: int, source: str | None, fields: FieldMap
) -> dict:
    workdir_p = Path(workdir)
    fallback = source or _default_source(path)
    src_file = str(path)
    outputs: dict[str, _SourceOutput] = {}
    quarantine = _Quarantine(workdir_p, index)
    reasons: Counter = Counter()
    per_source: dict[str, Counter] = {}
    lines_read = 0
    error: BaseException | None = None
    stream_error = None

    def reject(src: str, line_no: int, reason: str, raw: bytes, **extra) -> None:
        quarantine.add(src, src_file, line_no, reason, raw, **extra)
        reasons[reason] += 1
        per_source.setdefault(src, Counter())["quarantined"] += 1

    try:
        try:
            for line_no, raw, terminated in iter_lines(path, with_terminated=True):
                lines_read += 1
                if line_no == 1 and raw.startswith(BOM):
                    raw = raw[len(BOM) :]
                _ingest_line(
                    line_no,
                    raw,
                    not terminated,
                    source,
                    fallback,
                    fields,
                    outputs,
                    workdir_p,
                    index,
                    src_file,
                    reject,
                )
        except StreamError as e:
            lines_read += 1
            stream_error = {"offset": e.offset, "line": e.line_no, "detail": e.message}
            reject(
                fallback,
                e.line_no,
                "corrupt_stream",
                e.partial,
                offset=e.offset,
                detail=e.message,
            )
    except BaseException as e:  # leave nothing half-written
        error = e
        raise
    finally:
        for out in outputs.values():
            out.close(error)
        quarantine_files = quarantine.close(error)

    ingested = {s: o.rows for s, o in outputs.items()}
    stats = {
        "file": src_file,
        "part": index,
        "lines_read": lines_read,
        "ingested": sum(ingested.values()),
        "quarantined": sum(reasons.values()),
        "reasons": dict(sorted(reasons.items())),
        "per_source": {
            s: {
                "ingested": ingested.get(s, 0),
                "quarantined": per_source.get(s, Counter())["quarantined"],
            }
            for s in sorted(set(ingested) | set(per_source))
        },
        "outputs": sorted(str(o.path) for o in outputs.values()) + sorted(quarantine_files),
    }
    if stream_error:
        stats["stream_error"] = stream_error
    return stats


def _ingest_line(
    line_no,
    raw,
    last_unterminated,
    forced,
    fallback,
    fields,
    outputs,
    workdir,
    index,
    src_file,
    reject,
):
    if not raw.strip():
        reject(forced or fallback, line_no, "empty_line", raw)
        return
    record, reason, slow = _loads(raw, last_unterminated)
    if reason is None:
        doc, reason = parse_record(record, fields, fields.names, scrub=slow, raw=raw)
    if reason is not None:
        src = forced or (record.get(fields.source) if isinstance(record, dict) else None)
        src = src if isinstance(src, str) and src else fallback
        reject(src, line_no, reason, raw)
        return
    # Any source string is kept as written; its folder is derived safely (schema.source_dir_name).
    src = forced or doc[2] or fallback
    doc[2] = src
    out = outputs.get(src)
    if out is None:
        out = outputs[src] = _SourceOutput(documents_dir(workdir, src) / part_name(index))
    out.add(doc, src_file, line_no)


# ------------------------------------------------------------------------ the stage


def _state(workdir: Path) -> Path:
    return state_dir(workdir) / "ingest"


def _record_path(workdir: Path, index: int) -> Path:
    return _state(workdir) / part_name(index, ".json")


def _pair_key(source: str | None, shard: str) -> str:
    return orjson.dumps([source, shard]).decode()


PRUNE_MODES = ("inputs", "sources")
INGEST_VERSION = 2  # bump when the output of a task changes for the same input


class IngestStage(Stage):
    """Raw shards -> documents/ and quarantine/, one task per (source, shard).

    `prune` says which earlier outputs are stale: "inputs" (the command line's default): a
    shard that an input of this run (the same folder or glob, for the same source) no longer
    yields; "sources" (a recipe, which lists every input of its sources): any shard that a
    source of this run no longer lists. Only files named by ingest's own records are removed.
    """

    name = "ingest"

    def __init__(self, workdir: str | Path, sources: list[IngestSource], prune: str = "inputs"):
        if prune not in PRUNE_MODES:
            raise ValueError(f"prune must be one of {PRUNE_MODES}")
        sources = list(sources)
        for s in sources:
            if s.name is not None and (not isinstance(s.name, str) or not s.name):
                raise MixerError(f"source name {s.name!r}: must be a non-empty string")
            if not s.inputs:
                raise MixerError(f"source {s.name!r}: no inputs")
        # The stage's config holds only what every task's output depends on; each task's
        # source, shard and fields are in its own fingerprint, so adding an input (or spelling
        # one differently) reruns only the tasks it changes.
        super().__init__(workdir, {"version": INGEST_VERSION})
        self.sources = sources
        self.prune = prune
        self._plan_cache = None
        self._run_token = None
        self._skipped = 0

    def __getstate__(self):  # workers get paths and settings only, not the resolved plan
        d = dict(self.__dict__)
        d["_plan_cache"] = None
        return d

    # -- planning (driver)
    def _plan(self) -> dict:
        """{(source, shard): {"fields": FieldMap, "items": [item keys]}} in a stable order."""
        if self._plan_cache is not None:
            return self._plan_cache
        plan: dict[tuple, dict] = {}
        for s in self.sources:
            for key, shards in resolve_each(list(s.inputs)).items():
                for shard in shards:
                    entry = plan.setdefault((s.name, shard), {"fields": s.fields, "items": []})
                    if entry["fields"] != s.fields:
                        raise MixerError(
                            f"source {s.name!r}: shard {shard} is listed twice with different fields"
                        )
                    if key not in entry["items"]:
                        entry["items"].append(key)
        self._plan_cache = dict(
            sorted(plan.items(), key=lambda kv: (kv[0][0] is not None, kv[0][0] or "", kv[0][1]))
        )
        return self._plan_cache

    def input_fingerprint(self):
        out = []
        for (source, shard), entry in self._plan().items():
            fp = _stat(shard)
            fields = dataclasses.astuple(entry["fields"])
            out.append([source, shard, fp["size"], fp["mtime_ns"], fields])
        return out

    def outputs(self) -> list[Path]:
        parts = _read_parts(self.workdir)
        files = []
        for source, shard in self._plan():
            index = parts.get(_pair_key(source, shard))
            rec = read_json(_record_path(self.workdir, index)) if index is not None else None
            if rec is None:
                return [_state(self.workdir) / "missing-record"]  # not done: never exists
            files += [Path(p) for p in rec["stats"]["outputs"]]
        return files

    def setup(self, ctx: RunContext) -> None:
        self._plan()  # resolve inputs first: a bad input fails before anything is written
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            probe = self.workdir / ".mixer-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise MixerError(f"output {self.workdir}: not writable ({e.strerror})") from None
        clean_temporaries(self.workdir / "documents")
        clean_temporaries(self.workdir / "quarantine")

    def tasks(self) -> list[Task]:
        plan = self._plan()
        parts = _assign_parts(self.workdir, list(plan))
        self._prune(plan, parts)
        self._run_token = f"{time.time_ns()}-{os.getpid()}"
        tasks, skipped = [], 0
        for (source, shard), entry in plan.items():
            index = parts[_pair_key(source, shard)]
            fp = _stat(shard)
            rec = read_json(_record_path(self.workdir, index))
            epoch = 0
            if rec and rec.get("source") == source and rec.get("shard") == shard:
                epoch = rec.get("epoch", 0)
                complete = all(Path(p).exists() for p in rec["stats"]["outputs"])
                if not complete:
                    epoch += 1  # an output was removed: the task must run again
                elif rec.get("fingerprint") == [fp["size"], fp["mtime_ns"]] and rec.get(
                    "fields"
                ) == dataclasses.asdict(entry["fields"]):
                    skipped += 1
            tasks.append(
                Task(
                    key=part_name(index, ""),
                    args={
                        "source": source,
                        "shard": shard,
                        "index": index,
                        "fields": entry["fields"],
                        "items": entry["items"],
                        "epoch": epoch,
                        "token": self._run_token,
                    },
                    fingerprint={
                        "source": source,
                        "shard": shard,
                        "size": fp["size"],
                        "mtime_ns": fp["mtime_ns"],
                        "fields": dataclasses.asdict(entry["fields"]),
                        "epoch": epoch,
                    },
                    weight=max(1, fp["size"]),
                )
            )
        self._skipped = skipped
        return tasks

    def _prune(self, plan: dict, parts: dict) -> None:
        """Remove the outputs of (source, shard) pairs this run's sources no longer yield."""
        current = {_pair_key(s, sh) for s, sh in plan}
        names = {s for s, _ in plan} | {s.name for s in self.sources}
        items: dict = {}
        for (s, _), entry in plan.items():
            items.setdefault(s, set()).update(entry["items"])
        for s in self.sources:  # an input that yields nothing now still names its old shards
            items.setdefault(s.name, set()).update(item_key(i) for i in s.inputs)
        stale = []
        for key, index in parts.items():
            if key in current or not key.startswith("["):
                continue
            rec = read_json(_record_path(self.workdir, index))
            if not rec or rec.get("source") not in names:
                continue
            if self.prune == "sources" or set(rec.get("items", [])) & items.get(
                rec.get("source"), set()
            ):
                stale.append((key, index, rec))
        if not stale:
            return
        for key, index, rec in stale:
            for p in rec["stats"]["outputs"]:
                Path(p).unlink(missing_ok=True)
            _record_path(self.workdir, index).unlink(missing_ok=True)
            del parts[key]
        write_json_atomic(_state(self.workdir) / "parts.json", parts)

    # -- the work (any worker)
    def run_task(self, task: Task) -> dict:
        a = task.args
        workdir = str(self.workdir)
        record_path = _record_path(self.workdir, a["index"])
        previous = read_json(record_path)
        try:
            fp = file_fingerprint(a["shard"], with_hash=False)
        except OSError as e:
            raise _os_error(e, a["shard"], workdir) from None
        stats = ingest_shard(workdir, a["shard"], a["index"], a["source"], a["fields"])
        if previous and previous.get("shard") == a["shard"]:
            # outputs of an older version of this shard that this run did not rewrite
            for stale in set(previous["stats"]["outputs"]) - set(stats["outputs"]):
                Path(stale).unlink(missing_ok=True)
        try:
            write_json_atomic(
                record_path,
                {
                    "source": a["source"],
                    "shard": a["shard"],
                    "items": a["items"],
                    "fields": dataclasses.asdict(a["fields"]),
                    "fingerprint": [fp["size"], fp["mtime_ns"]],
                    "epoch": a["epoch"],
                    "stats": stats,
                },
            )
        except OSError as e:
            raise _os_error(e, str(record_path), workdir) from None
        return {**stats, "token": a["token"]}

    # -- the reduce (driver)
    def finish(self, results: list[dict]) -> dict:
        whole = summarize(self.workdir)  # every source of the workdir, for the report
        write_json_atomic(state_dir(self.workdir) / "ingest.json", whole)
        duplicates = {s: c["duplicate_ids"] for s, c in whole["sources"].items()}
        summary = _summary(self.workdir, results, duplicates)
        fresh = sum(1 for r in results if r.get("token") == self._run_token)
        summary["shards_ingested"] = fresh
        summary["shards_skipped"] = len(results) - fresh
        return summary


def _stat(shard: str) -> dict:
    """Size and mtime of a shard; a shard that vanished or can't be read is a one-line error."""
    try:
        return file_fingerprint(shard, with_hash=False)
    except OSError as e:
        raise MixerError(f"can't read {shard}: {e.strerror or type(e).__name__}") from None


def _read_parts(workdir: Path) -> dict[str, int]:
    return read_json(_state(workdir) / "parts.json", {})


def _assign_parts(workdir: Path, pairs: list[tuple]) -> dict[str, int]:
    """Stable part numbers per (source, shard): known pairs keep theirs, new ones get the next
    free numbers (never one used before in this workdir, even by an older layout)."""
    path = _state(workdir) / "parts.json"
    parts: dict[str, int] = read_json(path, {})
    next_index = max(parts.values(), default=-1) + 1
    for p in _state(workdir).glob("part-*.json") if _state(workdir).is_dir() else []:
        try:  # a record whose pair was pruned from parts.json still holds its number
            next_index = max(next_index, int(p.name.split(".")[0].split("-")[1]) + 1)
        except (IndexError, ValueError):
            continue
    changed = False
    for source, shard in pairs:
        key = _pair_key(source, shard)
        if key not in parts:
            parts[key] = next_index
            next_index += 1
            changed = True
    if changed:
        write_json_atomic(path, parts)
    return parts


def _summary(workdir: Path, stats: list[dict], duplicates: dict | None = None) -> dict:
    totals: Counter = Counter()
    reasons: Counter = Counter()
    per_source: dict[str, Counter] = {}
    stream_errors = []
    for s in stats:
        totals.update({k: s[k] for k in ("lines_read", "ingested", "quarantined")})
        reasons.update(s["reasons"])
        for src, c in s["per_source"].items():
            per_source.setdefault(src, Counter()).update(c)
        if s.get("stream_error"):
            stream_errors.append({"file": s["file"], **s["stream_error"]})
    if duplicates is None or not set(per_source) <= set(duplicates):
        duplicates = duplicate_ids(workdir, sorted(per_source))
    out = {
        "shards": len(stats),
        "lines_read": totals["lines_read"],
        "ingested": totals["ingested"],
        "quarantined": totals["quarantined"],
        "quarantine_reasons": dict(sorted(reasons.items())),
        "sources": {
            src: {
                "ingested": c["ingested"],
                "quarantined": c["quarantined"],
                "duplicate_ids": duplicates.get(src, 0),
            }
            for src, c in sorted(per_source.items())
        },
    }
    if stream_errors:
        out["stream_errors"] = stream_errors
    return out


def summarize(workdir: str | Path, indices: list[int] | None = None) -> dict:
    """Totals over every ingested (source, shard) of the workdir (or the part numbers given)."""
    workdir = Path(workdir)
    if indices is None:
        indices = sorted(_read_parts(workdir).values())
    stats = []
    for index in indices:
        rec = read_json(_record_path(workdir, index))
        if rec and "stats" in rec:
            stats.append(rec["stats"])
    return _summary(workdir, stats)


def duplicate_ids(workdir: Path, sources: list[str]) -> dict[str, int]:
    """Per source: how many documents repeat an id already seen in that source."""
    out = {}
    for src in sources:
        parts = list_parts(documents_dir(workdir, src))
        if parts:
            ids = pa.concat_arrays(
                [c for p in parts for c in pq.read_table(p, columns=["id"]).column("id").chunks]
                or [pa.array([], pa.string())]
            )
            out[src] = len(ids) - pc.count_distinct(ids).as_py()
    return out


# ------------------------------------------------------------------------ the wrapper


def ingest(
    inputs: list[str],
    workdir: str | Path,
    source: str | None = None,
    fields: FieldMap | None = None,
    workers: int | None = None,
    progress: bool = True,
    prune: str = "inputs",
    echo=None,
) -> dict:
    """Ingest shards into `workdir` (one source: `source`, or each document's own). Returns the
    summary (this run's inputs; the whole workdir's is in state/ingest.json)."""
    from mixer.executor import _settings, make_executor

    stage = IngestStage(workdir, [IngestSource(source, list(inputs), fields or FieldMap())], prune)
    executor = make_executor(_settings["kind"], workers, _settings["address"])
    ctx = RunContext(Path(workdir), executor, progress, echo or (lambda _msg: None))
    summary = run_stage(stage, ctx)
    if stage._run_token is None:  # the whole stage was up to date
        summary = {**summary, "shards_skipped": summary["shards"], "shards_ingested": 0}
    return summary
