"""One task: a unit of shards (one, or small ones together) read piece by piece, by the block
readers where they can and line by line where they can't, into `_ShardOutput` and
`_Quarantine`; every line read is kept or quarantined, counted per file."""

from __future__ import annotations

import errno
import gc
import itertools
import os
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np
import orjson
import pyarrow as pa

from mixer.errors import MixerError
from mixer.ingest import output
from mixer.ingest.blocks import _block_reader, _fast_block
from mixer.ingest.columns import _SRC_LINE, _SRC_LINE_AT
from mixer.ingest.ids import _ids_path
from mixer.ingest.output import _Quarantine, _ShardOutput
from mixer.ingest.records import FieldMap, _careful
from mixer.io import (
    StreamError,
    iter_line_chunks,
)

MAX_ARROW_SKIP = 64  # after pieces Arrow refused: at most this many read line by line first
SMALL_FILE_BYTES = 256 << 10  # shards this small (on disk) are read whole, and several...
TOGETHER_BYTES = 4 << 20  # ...of them parsed by one Arrow call, up to this much JSON
BOM = b"\xef\xbb\xbf"


def _small_whole_file(path: str) -> tuple[bytes, int, int] | None:
    """(data, start, stop): a local shard of at most SMALL_FILE_BYTES read whole, when it is
    one piece of whole lines ending in a newline, at most TOGETHER_BYTES once decompressed
    (data[start:stop], a BOM skipped); else None (the shard is then read as usual, which
    reports anything unusual about it)."""
    try:
        if os.path.getsize(path) > SMALL_FILE_BYTES:
            return None
        pieces = list(itertools.islice(iter_line_chunks(path), 2))
    except (OSError, StreamError):
        return None
    if len(pieces) != 1:
        return None
    data, _, stop = pieces[0]
    if stop >= len(data) or len(data) > TOGETHER_BYTES:  # no final newline, or it inflated
        return None
    start = len(BOM) if data.startswith(BOM) else 0
    return data, start, stop


def _default_source(path: str) -> str:
    parent = PurePosixPath(path.split("://", 1)[-1]).parent.name
    return parent or "default"


def ingest_shard(
    workdir: str, path: str | list[str], index: int, source: str | None, fields: FieldMap
) -> dict:
    """Ingest one shard, or several one after the other, into documents/<dir of source>/
    part-<index>.parquet (per source string found, or the forced `source`); each row keeps its
    shard (src_file) and line. Returns the statistics; any OSError (unreadable shard, full
    disk) is a one-line MixerError and leaves no partial output."""
    paths = [path] if isinstance(path, str) else list(path)
    try:
        return _ingest_shard(workdir, paths, index, source, fields)
    except OSError as e:
        raise _os_error(e, paths[0], workdir) from None


def _os_error(e: OSError, path: str, workdir: str) -> MixerError:
    what = e.strerror or type(e).__name__
    target = e.filename or path
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return MixerError(f"no space left on device writing under {workdir} ({target}): {what}")
    if str(target).startswith(str(workdir)):
        return MixerError(f"can't write {target}: {what}")
    return MixerError(f"can't read {target}: {what}")


def _ingest_shard(
    workdir: str, paths: list[str], index: int, source: str | None, fields: FieldMap
) -> dict:
    workdir_p = Path(workdir)
    out = _ShardOutput(workdir_p, index)
    quarantine = _Quarantine(workdir_p, index)
    reasons: Counter = Counter()
    rejected: Counter = Counter()
    total_lines = 0
    file_lines: dict[str, int] = {}  # lines read per shard
    error: BaseException | None = None
    stream_errors = []
    src_file = fallback = ""  # the shard being read, and its default source

    def reject(src: str, line_no: int, reason: str, raw: bytes, **extra) -> None:
        quarantine.add(src, src_file, line_no, reason, raw, **extra)
        reasons[reason] += 1
        rejected[src] += 1

    # A block whose lines are all plain Dolma records is decoded by msgspec, or parsed by Arrow
    # (_fast_block); any other block takes the per-line loop: a plain Dolma record the fast branch, anything else
    # (numeric ids, extra fields, bad values, lines orjson refuses) the careful one.
    reader = _block_reader(fields)
    loads, dumps, decode_error = orjson.loads, orjson.dumps, orjson.JSONDecodeError
    names = fields.names
    f_id, f_text, f_src = fields.id, fields.text, fields.source
    f_added, f_created, f_meta = fields.added, fields.created, fields.metadata
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived dicts, no cycles: the cyclic collector only costs time
    # batches of small shards the block readers refused in a row, and how many to read shard
    # by shard before trying a batch again (each shard still tries them for its own pieces)
    batch_misses = batch_skip = 0
    try:

        def ingest_file(path: str) -> None:
            """One shard, piece by piece: the block readers where they can, else line by line."""
            nonlocal src_file, fallback, total_lines
            src_file = str(path)
            fallback = source or _default_source(src_file)
            out.start_file(src_file)
            lines_read = 0
            misses = skip = 0  # pieces refused in a row; pieces to read line by line first
            try:
                for data, start, stop in iter_line_chunks(path):
                    first = lines_read + 1
                    if first == 1 and data.startswith(BOM, start):
                        start += len(BOM)
                    if reader is not None and skip == 0:
                        block = _fast_block(data, start, stop, first, source, fallback, reader)
                        if block is not None:
                            misses = 0
                            lines_read += block[0].num_rows
                            out.add_piece(*block)
                            continue
                        # a corpus whose pieces keep failing is not parsed twice: back off
                        misses += 1
                        skip = min(1 << misses, MAX_ARROW_SKIP)
                    elif skip:
                        skip -= 1
                    lines = data[start:stop].split(b"\n")
                    terminated = stop < len(data)
                    lines_read += len(lines)
                    rows = out.rows
                    buffered = out.buffered
                    line_no = first - 1
                    for raw in lines:
                        line_no += 1
                        row = None
                        try:
                            rec = loads(raw)
                        except decode_error:
                            rec = None
                        if type(rec) is dict and rec.keys() <= names:
                            text = rec.get(f_text)
                            doc_id = rec.get(f_id)
                            src = rec.get(f_src)
                            added = rec.get(f_added)
                            created = rec.get(f_created)
                            meta = rec.get(f_meta)
                            if (
                                type(text) is str
                                and type(doc_id) is str
                                and (src is None or type(src) is str)
                                and (added is None or type(added) is str)
                                and (created is None or type(created) is str)
                                and doc_id.strip()
                            ):
                                try:
                                    meta = None if meta is None else dumps(meta)
                                except TypeError:
                                    pass  # (nesting orjson won't write) the careful branch below
                                else:
                                    src = source or src or fallback
                                    row = (src, doc_id, text, added, created, meta, line_no)
                        if row is None:  # a dict orjson read is not parsed again
                            src, doc, reason = _careful(
                                raw,
                                not terminated,
                                source,
                                fallback,
                                fields,
                                rec if type(rec) is dict else None,
                            )
                            if reason is not None:
                                reject(src, line_no, reason, raw)
                                continue
                            text = doc[1]
                            row = (src, *doc, line_no)
                        rows.append(row)
                        buffered += len(text)
                        if buffered >= output.BUFFER_BYTES or len(rows) >= output.ROW_GROUP_ROWS:
                            out.buffered = buffered
                            if buffered >= output.BUFFER_BYTES:
                                out.flush()
                            else:  # bounds the Python rows held: a table of them
                                out._rows_to_piece()
                            rows, buffered = out.rows, out.buffered
                    out.buffered = buffered
            except StreamError as e:
                e.line_no = lines_read + 1
                lines_read += 1
                stream_errors.append(
                    {"file": src_file, "offset": e.offset, "line": e.line_no, "detail": e.message}
                )
                reject(
                    fallback,
                    e.line_no,
                    "corrupt_stream",
                    e.partial,
                    offset=e.offset,
                    detail=e.message,
                )
            total_lines += lines_read
            file_lines[src_file] = lines_read

        def ingest_together(batch: list[tuple]) -> None:
            """Small whole shards (src_file, fallback, data, start, stop) read by one call of the
            block readers (an Arrow call costs about 0.25 ms whatever its size), then split back
            per shard with their own line numbers; if they refuse any line, each shard alone."""
            nonlocal total_lines, batch_misses, batch_skip
            block = None
            if len(batch) > 1 and batch_skip:
                batch_skip -= 1
            elif len(batch) > 1:
                joined = b"\n".join(data[a:b] for _, _, data, a, b in batch)
                block = _fast_block(joined, 0, len(joined), 1, source, batch[0][1], reader)
                batch_misses = 0 if block is not None else batch_misses + 1
                batch_skip = min(1 << batch_misses, MAX_ARROW_SKIP) if block is None else 0
            if block is None:
                for item in batch:
                    ingest_file(item[0])
                return
            table, text_ends = block
            at = 0
            for name, _, data, a, b in batch:
                n = data.count(b"\n", a, b) + 1
                out.start_file(name)
                lines_no = np.arange(1, n + 1, dtype=np.int64)
                piece = table.slice(at, n).set_column(
                    _SRC_LINE_AT,
                    _SRC_LINE,
                    pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(lines_no)]),
                )
                out.add_piece(piece, text_ends[at : at + n + 1] - text_ends[at])
                total_lines += n
                file_lines[name] = n
                at += n

        batch: list[tuple] = []  # small whole shards waiting for ingest_together
        batch_bytes = 0
        for path in paths:  # one part per source for all of them: rows keep their file
            whole = _small_whole_file(str(path)) if reader is not None else None
            default = source or _default_source(str(path))
            if batch and (
                whole is None
                or default != batch[0][1]
                or batch_bytes + len(whole[0]) > TOGETHER_BYTES
            ):
                ingest_together(batch)
                batch, batch_bytes = [], 0
            if whole is None:
                ingest_file(str(path))
                continue
            batch.append((str(path), default, *whole))
            batch_bytes += len(whole[0])
        if batch:
            ingest_together(batch)
        ids_file = _ids_path(workdir_p, index)
    except BaseException as e:  # leave nothing half-written
        error = e
        raise
    finally:
        if gc_was_enabled:
            gc.enable()
        try:
            out.close(error)
        finally:
            quarantine_files = quarantine.close(error)
    try:
        out.write_id_hashes(ids_file)
    except BaseException:
        for p in out.paths() + quarantine_files:
            Path(p).unlink(missing_ok=True)
        raise

    ingested = dict(out.count)
    stats = {
        "files": [str(p) for p in paths],
        "part": index,
        "lines_read": total_lines,
        "lines_per_file": [file_lines[str(p)] for p in paths],
        "ingested": sum(ingested.values()),
        "quarantined": sum(reasons.values()),
        "reasons": dict(sorted(reasons.items())),
        "per_source": {
            s: {"ingested": ingested.get(s, 0), "quarantined": rejected.get(s, 0)}
            for s in sorted(set(ingested) | set(rejected))
        },
        # relative to the workdir: the record reads the same in any workdir (or its mirror)
        "outputs": [
            os.path.relpath(p, workdir)
            for p in out.paths() + sorted(quarantine_files) + [str(ids_file)]
        ],
    }
    if stream_errors:
        stats["stream_errors"] = stream_errors
    return stats
