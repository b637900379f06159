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
from mixer.ingest.blocks import Backoff, _block_reader, _fast_block
from mixer.ingest.columns import _SRC_LINE, _SRC_LINE_AT
from mixer.ingest.ids import _ids_path
from mixer.ingest.output import _Quarantine, _ShardOutput
from mixer.ingest.records import FieldMap, _careful
from mixer.io import (
    StreamError,
    iter_line_chunks,
)

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
    unit = _UnitReader(workdir_p, index, source, fields)
    error: BaseException | None = None
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived dicts, no cycles: the cyclic collector only costs time
    try:
        unit.read(paths)
    except BaseException as e:  # leave nothing half-written
        error = e
        raise
    finally:
        if gc_was_enabled:
            gc.enable()
        try:
            unit.out.close(error)
        finally:
            quarantine_files = unit.quarantine.close(error)
    ids_file = _ids_path(workdir_p, index)
    try:
        unit.out.write_id_hashes(ids_file)
    except BaseException:
        for p in unit.out.paths() + quarantine_files:
            Path(p).unlink(missing_ok=True)
        raise
    return unit.stats(workdir, paths, quarantine_files, ids_file)


class _UnitReader:
    """One task's shards read into one output (`out`: a part per source) and one quarantine.

    A piece whose lines are all plain Dolma records is decoded by msgspec, or parsed by Arrow
    (`_fast_block`); any other piece takes the per-line loop (`_read_lines`): a plain Dolma
    record the fast branch, anything else (numeric ids, extra fields, bad values, lines orjson
    refuses) the careful one. Small whole shards are read together (`read_together`)."""

    def __init__(self, workdir: Path, index: int, source: str | None, fields: FieldMap):
        self.source, self.fields = source, fields
        self.out = _ShardOutput(workdir, index)
        self.quarantine = _Quarantine(workdir, index)
        self.reader = _block_reader(fields)
        self.reasons: Counter = Counter()
        self.rejected: Counter = Counter()  # lines quarantined, per source
        self.total_lines = 0
        self.file_lines: dict[str, int] = {}  # lines read per shard
        self.stream_errors: list[dict] = []
        self.src_file = self.fallback = ""  # the shard being read, and its default source
        # after batches of small shards the block readers refused, how many are read shard by
        # shard (each shard still tries them for its own pieces)
        self.batch_backoff = Backoff()

    def reject(self, src: str, line_no: int, reason: str, raw: bytes, **extra) -> None:
        self.quarantine.add(src, self.src_file, line_no, reason, raw, **extra)
        self.reasons[reason] += 1
        self.rejected[src] += 1

    def read(self, paths: list[str]) -> None:
        """Every shard in turn (one part per source for all of them: rows keep their file);
        consecutive small whole shards of one default source in batches."""
        batch: list[tuple] = []  # small whole shards waiting for read_together
        batch_bytes = 0
        for path in paths:
            whole = _small_whole_file(str(path)) if self.reader is not None else None
            default = self.source or _default_source(str(path))
            if batch and (
                whole is None
                or default != batch[0][1]
                or batch_bytes + len(whole[0]) > TOGETHER_BYTES
            ):
                self.read_together(batch)
                batch, batch_bytes = [], 0
            if whole is None:
                self.read_file(str(path))
                continue
            batch.append((str(path), default, *whole))
            batch_bytes += len(whole[0])
        if batch:
            self.read_together(batch)

    def read_file(self, path: str) -> None:
        """One shard, piece by piece: the block readers where they can, else line by line."""
        self.src_file = src_file = str(path)
        self.fallback = fallback = self.source or _default_source(src_file)
        self.out.start_file(src_file)
        lines_read = 0
        backoff = Backoff()  # after pieces refused, how many go straight to the per-line path
        try:
            for data, start, stop in iter_line_chunks(path):
                first = lines_read + 1
                if first == 1 and data.startswith(BOM, start):
                    start += len(BOM)
                if self.reader is not None and backoff.ready():
                    block = _fast_block(
                        data, start, stop, first, self.source, fallback, self.reader
                    )
                    backoff.record(block is not None)  # a corpus they refuse isn't parsed twice
                    if block is not None:
                        lines_read += block[0].num_rows
                        self.out.add_piece(*block)
                        continue
                lines_read += self._read_lines(data, start, stop, first)
        except StreamError as e:
            e.line_no = lines_read + 1
            lines_read += 1
            self.stream_errors.append(
                {"file": src_file, "offset": e.offset, "line": e.line_no, "detail": e.message}
            )
            self.reject(
                fallback, e.line_no, "corrupt_stream", e.partial, offset=e.offset, detail=e.message
            )
        self.total_lines += lines_read
        self.file_lines[src_file] = lines_read

    def _read_lines(self, data: bytes, start: int, stop: int, first: int) -> int:
        """The per-line path for the lines `data[start:stop]` (the first numbered `first`);
        returns how many lines it read."""
        out, source, fallback, fields = self.out, self.source, self.fallback, self.fields
        loads, dumps, decode_error = orjson.loads, orjson.dumps, orjson.JSONDecodeError
        names = fields.names
        f_id, f_text, f_src = fields.id, fields.text, fields.source
        f_added, f_created, f_meta = fields.added, fields.created, fields.metadata
        buffer_bytes, group_rows = output.BUFFER_BYTES, output.ROW_GROUP_ROWS
        lines = data[start:stop].split(b"\n")
        terminated = stop < len(data)
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
                    self.reject(src, line_no, reason, raw)
                    continue
                text = doc[1]
                row = (src, *doc, line_no)
            rows.append(row)
            buffered += len(text)
            if buffered >= buffer_bytes or len(rows) >= group_rows:
                out.buffered = buffered
                if buffered >= buffer_bytes:
                    out.flush()
                else:  # bounds the Python rows held: a table of them
                    out._rows_to_piece()
                rows, buffered = out.rows, out.buffered
        out.buffered = buffered
        return len(lines)

    def read_together(self, batch: list[tuple]) -> None:
        """Small whole shards (src_file, fallback, data, start, stop) read by one call of the
        block readers (an Arrow call costs about 0.25 ms whatever its size), then split back
        per shard with their own line numbers; if they refuse any line, each shard alone."""
        block = None
        if len(batch) > 1 and self.batch_backoff.ready():
            joined = b"\n".join(data[a:b] for _, _, data, a, b in batch)
            block = _fast_block(joined, 0, len(joined), 1, self.source, batch[0][1], self.reader)
            self.batch_backoff.record(block is not None)
        if block is None:
            for item in batch:
                self.read_file(item[0])
            return
        table, text_ends = block
        at = 0
        for name, _, data, a, b in batch:
            n = data.count(b"\n", a, b) + 1
            self.out.start_file(name)
            lines_no = np.arange(1, n + 1, dtype=np.int64)
            piece = table.slice(at, n).set_column(
                _SRC_LINE_AT,
                _SRC_LINE,
                pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(lines_no)]),
            )
            self.out.add_piece(piece, text_ends[at : at + n + 1] - text_ends[at])
            self.total_lines += n
            self.file_lines[name] = n
            at += n

    def stats(self, workdir: str, paths: list[str], quarantine_files: list[str], ids_file) -> dict:
        """The task's summary: lines read, kept and quarantined (per reason, per source), and
        the files it wrote (relative to the workdir: the record reads the same in any workdir
        or its mirror)."""
        ingested = dict(self.out.count)
        stats = {
            "files": [str(p) for p in paths],
            "part": self.out.index,
            "lines_read": self.total_lines,
            "lines_per_file": [self.file_lines[str(p)] for p in paths],
            "ingested": sum(ingested.values()),
            "quarantined": sum(self.reasons.values()),
            "reasons": dict(sorted(self.reasons.items())),
            "per_source": {
                s: {"ingested": ingested.get(s, 0), "quarantined": self.rejected.get(s, 0)}
                for s in sorted(set(ingested) | set(self.rejected))
            },
            "outputs": [
                os.path.relpath(p, workdir)
                for p in self.out.paths() + sorted(quarantine_files) + [str(ids_file)]
            ],
        }
        if self.stream_errors:
            stats["stream_errors"] = self.stream_errors
        return stats
