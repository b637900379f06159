"""The ingest stage: raw JSONL shards (.jsonl, .gz, .zst) -> documents/<source>/part-NNNNN.parquet.

Every input line ends up in exactly one place: a row of a documents part (with its src_file and
src_line), or a quarantine record (with src_file, src_line, reason and the raw bytes). Each
shard is streamed in batches, so memory is bounded by the batch size whatever the shard size,
and shards are spread over a process pool.

Each input shard gets a stable part number (recorded in state/ingest/parts.json), and every
source found in shard N is written to documents/<source>/part-N.parquet. A shard is done when
its state file state/ingest/part-N.json exists with the shard's fingerprint: a rerun skips it;
a killed run leaves only temporary files, which are removed and redone.
"""

from __future__ import annotations

import dataclasses
import functools
import glob
import json
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from mixer.errors import MixerError
from mixer.executor import run_tasks
from mixer.io import (
    StreamError,
    atomic_path,
    clean_temporaries,
    file_fingerprint,
    glob_urls,
    is_shard,
    is_url,
    iter_lines,
    parquet_writer_atomic,
    read_json,
    write_json_atomic,
)
from mixer.schema import (
    DOCUMENT_SCHEMA,
    check_name,
    documents_dir,
    list_parts,
    part_name,
    quarantine_dir,
    state_dir,
)

BATCH_ROWS = 8192
BATCH_BYTES = 32 << 20
LOW_CARDINALITY = ["source", "added", "created", "src_file"]


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
    except orjson.JSONDecodeError:
        pass
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return None, "invalid_utf8", False
    try:
        # The standard library accepts lone surrogate escapes that orjson refuses.
        return json.loads(text), None, True
    except ValueError:
        return None, ("truncated_line" if is_last_unterminated else "invalid_json"), False


def parse_record(
    record, fields: FieldMap, used: frozenset | None = None, scrub: bool = False
) -> tuple[list | None, str | None]:
    """Validate and normalise one decoded JSON value into the Dolma columns
    [id, text, source, added, created, metadata], or name why it can't be.

    `scrub` replaces lone surrogates, which only the standard-library fallback parser lets through.
    """
    if not isinstance(record, dict):
        return None, "not_an_object"
    text = record.get(fields.text)
    if text is None:
        return None, "missing_text"
    if not isinstance(text, str):
        return None, "text_not_string"
    doc_id = record.get(fields.id)
    if isinstance(doc_id, (int, float)) and not isinstance(doc_id, bool):
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

    def add(self, source: str, src_file: str, src_line: int, reason: str, raw: bytes) -> None:
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
        }
        self.files[source][1].write(orjson.dumps(record) + b"\n")

    def close(self, error: BaseException | None = None) -> list[str]:
        for ctx, fh, _ in self.files.values():
            fh.close()
            ctx.__exit__(type(error) if error else None, error, None)
        return [str(p) for _, _, p in self.files.values()]


def _default_source(path: str) -> str:
    parent = PurePosixPath(path.split("://", 1)[-1]).parent.name
    return parent if parent and _valid_name(parent) else "default"


def ingest_shard(workdir: str, path: str, index: int, source: str | None, fields: FieldMap) -> dict:
    """Ingest one shard into documents/<source>/part-<index>.parquet. Returns its statistics."""
    workdir_p = Path(workdir)
    fallback = source or _default_source(path)
    src_file = str(path)
    outputs: dict[str, _SourceOutput] = {}
    quarantine = _Quarantine(workdir_p, index)
    reasons: Counter = Counter()
    per_source: dict[str, Counter] = {}
    lines_read = 0
    error: BaseException | None = None

    def reject(src: str, line_no: int, reason: str, raw: bytes) -> None:
        quarantine.add(src, src_file, line_no, reason, raw)
        reasons[reason] += 1
        per_source.setdefault(src, Counter())["quarantined"] += 1

    try:
        try:
            for line_no, raw, terminated in iter_lines(path, with_terminated=True):
                lines_read += 1
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
            reject(fallback, e.line_no, "corrupt_stream", e.partial)
    except BaseException as e:  # leave nothing half-written
        error = e
        raise
    finally:
        for out in outputs.values():
            out.close(error)
        quarantine_files = quarantine.close(error)

    ingested = {s: o.rows for s, o in outputs.items()}
    return {
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
        reject(fallback, line_no, "empty_line", raw)
        return
    record, reason, slow = _loads(raw, last_unterminated)
    if reason is None:
        doc, reason = parse_record(record, fields, fields.names, scrub=slow)
    if reason is not None:
        src = forced or (record.get(fields.source) if isinstance(record, dict) else None)
        src = src if isinstance(src, str) and _valid_name(src) else fallback
        reject(src, line_no, reason, raw)
        return
    src = forced or doc[2] or fallback
    if not _valid_name(src):
        reject(fallback, line_no, "bad_source_name", raw)
        return
    doc[2] = src
    out = outputs.get(src)
    if out is None:
        out = outputs[src] = _SourceOutput(documents_dir(workdir, src) / part_name(index))
    out.add(doc, src_file, line_no)


@functools.lru_cache(maxsize=4096)
def _valid_name(name: str) -> bool:
    try:
        check_name(name)
        return True
    except MixerError:
        return False


# ------------------------------------------------------------------------ inputs and state


def resolve_inputs(inputs: list[str]) -> list[str]:
    """Expand files, folders (recursively), globs and URLs into a sorted list of shards."""
    shards: set[Path] = set()
    urls: set[str] = set()
    for item in inputs:
        if is_url(item):
            found = [u for u in glob_urls(item) if is_shard(u)]
            if not found:
                raise MixerError(f"input {item!r}: no .jsonl/.json(.gz/.zst) shards there")
            urls.update(found)
            continue
        p = Path(item)
        if any(c in item for c in "*?["):
            matches = [Path(m) for m in glob.glob(item, recursive=True)]
            if not matches:
                raise MixerError(f"input {item!r}: no files match")
            for m in matches:
                shards.update(_shards_under(m))
        elif p.is_dir():
            found = _shards_under(p)
            if not found:
                raise MixerError(f"input {item!r}: folder holds no .jsonl/.json(.gz/.zst) shards")
            shards.update(found)
        elif p.is_file():
            shards.add(p)
        else:
            raise MixerError(f"input {item!r}: no such file or folder")
    return sorted(str(s.resolve()) for s in shards) + sorted(urls)


def _shards_under(p: Path) -> list[Path]:
    if p.is_file():
        return [p] if is_shard(p) else []
    return [q for q in p.rglob("*") if q.is_file() and is_shard(q) and not q.name.startswith(".")]


def _ingest_state(workdir: Path) -> Path:
    return state_dir(workdir) / "ingest"


def assign_parts(workdir: Path, shards: list[Path]) -> dict[str, int]:
    """Stable part numbers: known shards keep theirs, new ones get the next free numbers."""
    path = _ingest_state(workdir) / "parts.json"
    parts: dict[str, int] = read_json(path, {})
    next_index = max(parts.values(), default=-1) + 1
    changed = False
    for shard in shards:
        if str(shard) not in parts:
            parts[str(shard)] = next_index
            next_index += 1
            changed = True
    if changed:
        write_json_atomic(path, parts)
    return parts


def _shard_state_path(workdir: Path, index: int) -> Path:
    return _ingest_state(workdir) / part_name(index, ".json")


def _is_done(workdir: Path, shard: Path, index: int, settings: dict) -> bool:
    st = read_json(_shard_state_path(workdir, index))
    if not st or st.get("settings") != settings:
        return False
    old = st["fingerprint"]
    now = file_fingerprint(shard, with_hash=False)
    if (now["size"], now["mtime_ns"]) != (old["size"], old["mtime_ns"]):
        if now["size"] != old["size"] or file_fingerprint(shard)["sha256"] != old["sha256"]:
            return False
    return all(Path(p).exists() for p in st["stats"]["outputs"])


def _run_one(
    workdir: str, shard: str, index: int, source: str | None, fields: FieldMap, settings: dict
) -> dict:
    workdir_p = Path(workdir)
    previous = read_json(_shard_state_path(workdir_p, index))
    fingerprint = file_fingerprint(shard)
    stats = ingest_shard(workdir, shard, index, source, fields)
    if previous:  # outputs of an older version of this shard that this run did not rewrite
        for stale in set(previous["stats"]["outputs"]) - set(stats["outputs"]):
            Path(stale).unlink(missing_ok=True)
    write_json_atomic(
        _shard_state_path(workdir_p, index),
        {"fingerprint": fingerprint, "settings": settings, "stats": stats},
    )
    return stats


def ingest(
    inputs: list[str],
    workdir: str | Path,
    source: str | None = None,
    fields: FieldMap | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> dict:
    """Ingest shards into `workdir`. Returns the summary (also written to state/ingest.json)."""
    workdir = Path(workdir)
    fields = fields or FieldMap()
    if source is not None:
        check_name(source)
    shards = resolve_inputs(inputs)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        probe = workdir / ".mixer-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise MixerError(f"output {workdir}: not writable ({e.strerror})") from None
    clean_temporaries(workdir / "documents")
    clean_temporaries(workdir / "quarantine")

    parts = assign_parts(workdir, shards)
    settings = {"source": source, "fields": dataclasses.asdict(fields)}
    todo = [s for s in shards if not _is_done(workdir, s, parts[str(s)], settings)]
    tasks = [(str(workdir), str(s), parts[str(s)], source, fields, settings) for s in todo]

    sizes = {s: file_fingerprint(s, with_hash=False)["size"] for s in todo}
    total_bytes = sum(sizes.values())
    bar = tqdm(
        total=total_bytes,
        desc="ingest",
        unit="B",
        unit_scale=True,
        disable=not progress or not todo,
    )
    for stats in run_tasks(_run_one, tasks, workers):
        bar.update(sizes[stats["file"]])
    bar.close()

    summary = summarize(workdir, [parts[str(s)] for s in shards])
    summary["shards_ingested"] = len(todo)
    summary["shards_skipped"] = len(shards) - len(todo)
    write_json_atomic(state_dir(workdir) / "ingest.json", summary)
    return summary


def summarize(workdir: Path, indices: list[int] | None = None) -> dict:
    """Totals over all ingested shards (or those given): lines read, ingested, quarantined."""
    if indices is None:
        indices = sorted(read_json(_ingest_state(workdir) / "parts.json", {}).values())
    totals: Counter = Counter()
    reasons: Counter = Counter()
    per_source: dict[str, Counter] = {}
    for index in indices:
        st = read_json(_shard_state_path(workdir, index))
        if not st:
            continue
        s = st["stats"]
        totals.update({k: s[k] for k in ("lines_read", "ingested", "quarantined")})
        reasons.update(s["reasons"])
        for src, c in s["per_source"].items():
            per_source.setdefault(src, Counter()).update(c)
    duplicates = duplicate_ids(workdir, sorted(per_source))
    return {
        "shards": len(indices),
        "lines_read": totals["lines_read"],
        "ingested": totals["ingested"],
        "quarantined": totals["quarantined"],
        "quarantine_reasons": dict(sorted(reasons.items())),
        "sources": {
            src: {**dict(c), "duplicate_ids": duplicates.get(src, 0)}
            for src, c in sorted(per_source.items())
        },
    }


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
