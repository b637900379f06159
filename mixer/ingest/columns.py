"""Arrow string columns built straight from UTF-8 bytes and numpy offsets, and the schema of
the pieces every reader produces. Never `pa.array` or `pa.scalar` on the ingest path: their
first call imports pandas (0.3-1.2 s of every worker process)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mixer.schema import (
    DOCUMENT_SCHEMA,
)

MAX_ARRAY_BYTES = 2**31 - 1  # string data one Arrow string array (int32 offsets) can hold
# what a block's rows are parsed into; buffering adds src_file (DOCUMENT_SCHEMA's order)
PIECE_SCHEMA = pa.schema([f for f in DOCUMENT_SCHEMA if f.name != "src_file"])
_SRC_LINE_AT = PIECE_SCHEMA.get_field_index("src_line")
_SRC_LINE = PIECE_SCHEMA.field("src_line")
_SRC_FILE_AT = DOCUMENT_SCHEMA.get_field_index("src_file")
_SRC_FILE = DOCUMENT_SCHEMA.field("src_file")


def _utf8(encoded: list[bytes], valid: np.ndarray | None = None) -> pa.Array:
    """A string array straight from UTF-8 bytes: offsets by numpy, data by one join (no
    per-value conversion in Arrow, and no pandas import on the first call of `pa.array`)."""
    lengths = np.fromiter(map(len, encoded), np.int64, len(encoded))
    return _utf8_lengths(lengths, b"".join(encoded), valid)


def _utf8_lengths(lengths: np.ndarray, data: bytes, valid: np.ndarray | None = None) -> pa.Array:
    """A string array of the values `data` holds one after another, with these byte lengths
    (0 where `valid` is False: those are null)."""
    n = len(lengths)
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > MAX_ARRAY_BYTES:
        raise OverflowError("string column too large for one array")
    bitmap, nulls = None, 0
    if valid is not None and not valid.all():
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
        nulls = int(n - valid.sum())
    return pa.Array.from_buffers(
        pa.string(),
        n,
        [bitmap, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)],
        null_count=nulls,
    )


def _utf8_or_null(values: list) -> pa.Array:
    """str, UTF-8 bytes or None per value."""
    valid = np.fromiter((v is not None for v in values), bool, len(values))
    return _utf8(
        [b"" if v is None else v if type(v) is bytes else v.encode() for v in values], valid
    )


def _strings(values: list) -> pa.Array:
    """A string array of str or None values; one repeated value (the usual `added`, say) is
    written once."""
    n = len(values)
    first = values[0] if n else None
    if values.count(first) == n:  # identity first: C speed
        return pa.nulls(n, pa.string()) if first is None else _repeat(first, n)
    return _utf8_or_null(values)


def _repeat(value: str, n: int, limit: int | None = None) -> pa.Array:
    b = value.encode()
    offsets = np.arange(n + 1, dtype=np.int64) * len(b)
    if offsets[-1] > (MAX_ARRAY_BYTES if limit is None else limit):
        raise OverflowError("string column too large for one array")
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b * n)]
    )


def _text_bytes(table: pa.Table) -> int:
    """The UTF-8 bytes of a table's text column, from its offsets."""
    return _string_bytes(table, "text")


def _offsets(strings: pa.Array) -> np.ndarray:
    """A string array's offsets, len + 1 of them, as numpy reads them in place (no copy)."""
    return np.frombuffer(strings.buffers()[1], np.int32, len(strings) + 1, strings.offset * 4)


def _string_bytes(table: pa.Table, column: str) -> int:
    """The UTF-8 bytes of a string column's values, from its offsets."""
    total = 0
    for chunk in table.column(column).chunks:
        if len(chunk):
            off = _offsets(chunk)
            total += int(off[-1] - off[0])
    return total


def _bools(mask: np.ndarray) -> pa.Array:
    """A boolean array of a numpy mask (pa.array would import pandas in a worker)."""
    bits = pa.py_buffer(np.packbits(mask, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), len(mask), [None, bits])


def _rows_piece(rows: list[tuple]) -> pa.Table:
    """Rows of the per-line path (source, id, text, added, created, metadata, line) -> a table
    of PIECE_SCHEMA. OverflowError when its text does not fit one array (the caller splits)."""
    n = len(rows)
    sources, doc_ids, texts, added, created, meta, lines = zip(*rows, strict=True)
    first = sources[0]
    if sources.count(first) == n:
        source = _repeat(first, n)
    else:
        source = _utf8([s.encode() for s in sources])
    arrays = [
        _utf8([i.encode() for i in doc_ids]),
        _utf8([t.encode() for t in texts]),
        source,
        _utf8_or_null(added),
        _utf8_or_null(created),
        _utf8_or_null(meta),
        pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(np.array(lines, np.int64))]),
    ]
    return pa.Table.from_arrays(arrays, schema=PIECE_SCHEMA)


def _single(column) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else pa.concat_arrays(column.chunks)
