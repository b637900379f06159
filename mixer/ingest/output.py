"""One task's output: rows buffered per source and written as Parquet row groups on a writer
thread (documents/<source>/part-N.parquet, `_ShardOutput`, `_PartWriter`), and quarantined
lines as JSONL (`_Quarantine`). Everything is written under temporary names and renamed when
complete; on error nothing is left."""

from __future__ import annotations

import contextlib
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mixer.errors import MixerError
from mixer.hashing import id_hashes128
from mixer.ingest.columns import (
    _SRC_FILE,
    _SRC_FILE_AT,
    _offsets,
    _repeat,
    _rows_piece,
    _single,
    _string_bytes,
    _text_bytes,
)
from mixer.ingest.ids import write_id_file
from mixer.io import (
    atomic_path,
)
from mixer.schema import (
    DOCUMENT_SCHEMA,
    PARQUET_COMPRESSION,
    documents_dir,
    part_name,
    quarantine_dir,
)

BUFFER_BYTES = 64 << 20  # text buffered (all sources of a shard) before it is written
ROW_GROUP_ROWS = 65536  # a source's rows buffered before they are written...
# ...or its text bytes: a shard smaller than BUFFER_BYTES is then written while it is read, not
# all at its end with the reading thread waiting (and a row group stays a few pages per column)
ROW_GROUP_BYTES = 16 << 20
SMALL_PART_BYTES = 4 << 20  # a source's rows of a flush below this are made one chunk
WRITE_AHEAD_BYTES = 64 << 20  # tables handed to the writer threads and not written yet
WRITER_THREADS = 1  # Parquet encoding and compression run there, without the GIL
LOW_CARDINALITY = ["source", "added", "created", "src_file"]
STATS_COLUMNS = ["source", "added", "created", "src_file", "src_line"]
# documents/: the text (most of the bytes) in LZ4, ids, metadata and line numbers in zstd. LZ4
# costs about half of zstd's CPU to write (and less to read) for files about 40% larger. The
# dictionary-encoded columns are a few bytes per row group, where a zstd context costs more
# than it saves (0.08 ms per row group: hundreds of small sources make hundreds of them).
DOCUMENT_COMPRESSION = {f.name: "lz4" for f in DOCUMENT_SCHEMA} | {
    name: PARQUET_COMPRESSION for name in ("id", "metadata", "src_line")
}


class _PartWriter:
    """One documents part, written under a temporary name and renamed when complete. Its
    methods run on the shard's writer thread (pyarrow compresses without the GIL)."""

    def __init__(self, path: Path):
        self.path = path
        self.number = 0
        self._ctx = None
        self._writer = None

    def write(self, table: pa.Table) -> None:
        if self._writer is None:
            self._ctx = atomic_path(self.path)
            tmp = self._ctx.__enter__()
            self._writer = pq.ParquetWriter(
                tmp,
                DOCUMENT_SCHEMA,
                compression=DOCUMENT_COMPRESSION,
                # dictionaries and min/max statistics of unique texts and ids only cost time
                use_dictionary=LOW_CARDINALITY,
                write_statistics=STATS_COLUMNS,
            )
        self._writer.write_table(table, row_group_size=max(1, table.num_rows))

    def close(self, error: BaseException | None = None) -> None:
        if self._writer is None:
            return
        try:
            self._writer.close()
        except BaseException as e:
            self._ctx.__exit__(type(error or e), error or e, None)  # removes the temporary
            raise
        self._ctx.__exit__(type(error) if error else None, error, None)


class _ShardOutput:
    """Documents of one shard, buffered in line order and written as row groups per source.

    Rows arrive as Arrow tables of whole blocks (`add_piece`) or one by one from the per-line
    path (appended to `rows`, turned into a table when needed); each piece is stably sorted
    by source as it arrives and kept per source. A source's rows are written as a row group
    when it holds ROW_GROUP_ROWS of them or ROW_GROUP_BYTES of text (cut at that row). When
    the buffer holds BUFFER_BYTES of text in all (cut at that row, whatever the blocks), the
    sources holding the most are written, largest first, until less than half of it is left:
    a source of a few documents among hundreds waits for more rows (or the end) instead of
    becoming a row group at every flush. Tables go to the writer thread, at most
    WRITE_AHEAD_BYTES ahead: memory stays bounded whatever the shard size, and row groups
    never depend on how the shard was read.
    """

    def __init__(self, workdir: Path, index: int):
        self.workdir, self.index = workdir, index
        self.src_file = ""  # the shard whose rows arrive now (`start_file`)
        # the per-line path appends (source, id, text, added, created, metadata, line) here
        self.rows: list[tuple] = []
        self.pieces: dict[str, list[pa.Table]] = {}  # per source, in line order
        self.source_rows: Counter = Counter()  # rows in pieces, per source
        self.source_bytes: Counter = Counter()  # text bytes in pieces, per source
        self.buffered = 0  # text in pieces and rows (bytes; characters for rows)
        self.count: Counter = Counter()
        self.writers: dict[str, _PartWriter] = {}
        self.hashes: dict[str, list[np.ndarray]] = {}
        self._pools: list[ThreadPoolExecutor] = []
        self._pending: deque = deque()  # (future, bytes)
        self._ahead = 0

    def start_file(self, src_file: str) -> None:
        """The rows that follow come from `src_file` (a task may ingest several shards)."""
        self._rows_to_piece()
        self.src_file = src_file

    def add_piece(self, table: pa.Table, text_ends: np.ndarray) -> None:
        """Buffer a block's table; `text_ends[k]` is the text bytes of its rows before row k
        (n + 1 values). Cut where the limit is reached, so row groups don't depend on blocks."""
        self._rows_to_piece()
        n, start = table.num_rows, 0
        while start < n:
            room = BUFFER_BYTES - self.buffered
            end = int(np.searchsorted(text_ends, text_ends[start] + room, "left"))
            end = max(start + 1, min(end, n))
            self._add(table if (start, end) == (0, n) else table.slice(start, end - start))
            if self.buffered >= BUFFER_BYTES:
                self.flush()
            start = end

    def _add(self, piece: pa.Table) -> None:
        """Buffer a piece per source (its shard's name added: DOCUMENT_SCHEMA's columns): rows of
        one source as they are, else stably sorted by source (a gather within the piece, which
        is small) and sliced."""
        n = piece.num_rows
        piece = piece.add_column(_SRC_FILE_AT, _SRC_FILE, _repeat(self.src_file, n, 2**31 - 1))
        sources = _single(piece.column("source"))  # never null
        least, most = pc.min_max(sources).as_py().values()
        if least == most:
            self._keep(least, piece)
            return
        sources = sources.dictionary_encode()
        names = sources.dictionary.to_pylist()
        codes = np.frombuffer(sources.indices.buffers()[1], np.int32, n, sources.indices.offset * 4)
        order = np.argsort(codes, kind="stable")
        piece = piece.take(pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(order)]))
        ends = np.cumsum(np.bincount(codes, minlength=len(names)))
        start = 0
        for name, end in zip(names, ends.tolist(), strict=True):
            if end > start:
                self._keep(name, piece.slice(start, end - start))
            start = end

    def _keep(self, source: str, part: pa.Table) -> None:
        """Buffer one source's rows; a full row group of them (ROW_GROUP_ROWS rows, or the
        rows that first hold ROW_GROUP_BYTES of text) is written at once, cut at that row."""
        size = _text_bytes(part)
        self.pieces.setdefault(source, []).append(part)
        self.source_rows[source] += part.num_rows
        self.source_bytes[source] += size
        self.buffered += size
        while (
            self.source_rows[source] >= ROW_GROUP_ROWS
            or self.source_bytes[source] >= ROW_GROUP_BYTES
        ):
            rows = _rows_holding(self.pieces[source], ROW_GROUP_BYTES)
            self._write_source(source, min(rows, ROW_GROUP_ROWS))

    def _rows_to_piece(self, rows: list[tuple] | None = None) -> None:
        rows = self.rows if rows is None else rows
        if not rows:
            return
        if rows is self.rows:  # their text counted in characters until now: bytes from here
            self.rows = []
            self.buffered = sum(self.source_bytes.values())
        try:
            piece = _rows_piece(rows)
        except OverflowError:  # over 2 GiB of text in one array: halves
            if len(rows) == 1:
                raise MixerError(
                    f"{self.src_file}: line {rows[0][6]}: a document over 2 GiB can't be stored"
                ) from None
            half = len(rows) // 2
            self._rows_to_piece(rows[:half])
            self._rows_to_piece(rows[half:])
        else:
            self._add(piece)

    def flush(self) -> None:
        """The buffer is full: write the sources holding the most text (largest first, then
        by name) until less than half of BUFFER_BYTES is left."""
        self._rows_to_piece()
        groups = []
        for source in sorted(self.pieces, key=lambda s: (-self.source_bytes[s], s)):
            if self.buffered < BUFFER_BYTES // 2:
                break
            groups.append(self._row_group(source))
        self._submit_all(groups)

    def write(self) -> None:
        """Hand everything buffered to the writer thread: one row group per source."""
        self._rows_to_piece()
        self._submit_all([self._row_group(source) for source in sorted(self.pieces)])

    def _write_source(self, source: str, limit: int | None = None) -> None:
        """One row group of a source's buffered rows (the first `limit` of them, or all)."""
        self._submit_all([self._row_group(source, limit)])

    def _submit_all(self, groups: list[tuple[str, pa.Table, int]]) -> None:
        """Hand row groups to the writer thread; their ids are hashed in one call (per-call
        costs add up over hundreds of small sources)."""
        if not groups:
            return
        ids = [table.column("id") for _, table, _ in groups]
        hashes = id_hashes128(pa.chunked_array([c for col in ids for c in col.chunks], pa.string()))
        at = 0
        for source, table, size in groups:
            self._submit(source, table, hashes[at : at + table.num_rows], size)
            at += table.num_rows

    def _row_group(self, source: str, limit: int | None = None) -> tuple[str, pa.Table, int]:
        """(source, the table of one row group of its buffered rows (the first `limit` of them,
        or all), its bytes in memory as the write-ahead counts them)."""
        parts = self.pieces.pop(source)
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        if limit is not None and limit < table.num_rows:
            rest = table.slice(limit)
            self.pieces[source] = [rest]
            table = table.slice(0, limit)
        n, size = table.num_rows, _text_bytes(table)
        if len(parts) > 1 and size < SMALL_PART_BYTES:
            table = table.combine_chunks()  # one page per column, not one per piece
        self.source_rows[source] -= n
        self.source_bytes[source] -= size
        self.buffered -= size
        if source not in self.pieces:
            del self.source_rows[source], self.source_bytes[source]
        # what the write-ahead bounds: text, ids and metadata (Table.nbytes costs more, on slices)
        return source, table, size + _string_bytes(table, "id") + _string_bytes(table, "metadata")

    def _submit(self, source: str, table: pa.Table, hashes: np.ndarray, size: int) -> None:
        self.count[source] += table.num_rows
        self.hashes.setdefault(source, []).append(hashes)
        writer = self.writers.get(source)
        if writer is None:
            path = documents_dir(self.workdir, source) / part_name(self.index)
            writer = self.writers[source] = _PartWriter(path)
            writer.number = len(self.writers)
        if not self._pools:
            self._pools = [
                ThreadPoolExecutor(1, thread_name_prefix="mixer-ingest-write")
                for _ in range(WRITER_THREADS)
            ]
        # a part always goes to the same thread, so its row groups keep their order
        pool = self._pools[writer.number % len(self._pools)]
        while self._pending and self._ahead + size > WRITE_AHEAD_BYTES:
            self._wait_one()
        self._pending.append((pool.submit(writer.write, table), size))
        self._ahead += size

    def _wait_one(self) -> None:
        future, size = self._pending.popleft()
        self._ahead -= size
        future.result()

    def close(self, error: BaseException | None = None) -> None:
        """Write what is buffered, wait for the writer thread, and publish every part (or,
        on error, remove every temporary file)."""
        try:
            if error is None:
                self.write()
            while self._pending:
                self._wait_one()
        except BaseException as e:
            error = error or e
            raise
        finally:
            while self._pending:  # an error: let the thread finish before removing files
                with contextlib.suppress(BaseException):
                    self._wait_one()
            for pool in self._pools:
                pool.shutdown()
            for writer in self.writers.values():
                writer.close(error)

    def paths(self) -> list[str]:
        return sorted(str(w.path) for w in self.writers.values())

    def write_id_hashes(self, path: Path) -> None:
        """Every document's id hash with its source, sorted: duplicate_ids merges these."""
        sources = sorted(self.hashes)
        keys = [np.concatenate(self.hashes[s]) for s in sources]
        src = np.concatenate(
            [np.full(len(k), i, np.uint32) for i, k in enumerate(keys)] or [np.zeros(0, np.uint32)]
        )
        keys = np.concatenate(keys) if keys else np.zeros((0, 2), np.uint64)
        order = np.lexsort((src, keys[:, 1], keys[:, 0]))
        write_id_file(path, sources, keys[order, 0], keys[order, 1], src[order])


def _rows_holding(parts: list[pa.Table], size: int) -> int:
    """The fewest leading rows of `parts` (in order) whose text holds at least `size` bytes;
    all their rows when they hold less."""
    rows = 0
    for part in parts:
        for chunk in part.column("text").chunks:
            n = len(chunk)
            if not n:
                continue
            offsets = _offsets(chunk)
            held = offsets - offsets[0]  # text bytes of the chunk's rows before row k
            if held[-1] >= size:
                return rows + int(np.searchsorted(held, size, "left"))
            size -= int(held[-1])
            rows += n
    return rows


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
