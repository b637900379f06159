"""The ingest stage: raw JSONL shards (.jsonl, .gz, .zst) -> documents/<source>/part-NNNNN.parquet.

Every input line ends up in exactly one place: a row of a documents part (with its src_file and
src_line), or a quarantine record (with src_file, src_line, reason and the raw bytes). Each
shard is streamed in batches, so memory is bounded by the batch size whatever the shard size.

`IngestStage` runs on the one stage interface (mixer/stage.py): one task per unit, sized by
its bytes: a shard, or consecutive small shards of a source ingested together (many small
files make a few parts, not one each). Each unit gets its own stable part number
(state/ingest/parts.json), so two sources that list the same shard each get all of its
documents, and every source string found in that unit's shards is written to
documents/<dir of source>/part-N.parquet. A record state/ingest/part-N.json names the files the
task wrote; a later run removes only files such records name: the outputs of a unit whose
shards left a source's inputs or changed membership, and the outputs of an older version of
a unit that this version did not rewrite. Nothing mixer did not write is ever deleted.

Each task also writes state/ingest/ids/part-N.ids (its documents' id hashes, sorted), so
`duplicate_ids` counts repeated ids per source on the driver from these summaries, in bounded
memory, without reading any Parquet file. How a shard is parsed and written fast (whole
decompressed pieces decoded by msgspec, or by Arrow's JSON reader, when every line is a plain
Dolma record, a per-line path for any other piece, one buffer per shard sorted by source, LZ4 text, a writer
thread): docs/ingest.md.

`ingest(...)` is the thin wrapper the `mixer ingest` command and the tests call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import gc
import hashlib
import itertools
import json
import os
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson
import pyarrow.parquet as pq

from mixer.dolma_lines import RecordDecoder, UnknownKey, decode_block
from mixer.errors import MixerError
from mixer.hashing import id_hashes128, utf8_spans
from mixer.inputs import item_key, resolve_each, resolve_inputs  # noqa: F401 (decon_index)
from mixer.io import (
    StreamError,
    atomic_path,
    clean_temporaries,
    file_fingerprint,
    iter_line_chunks,
    read_json,
    write_json_atomic,
)
from mixer.schema import (
    DOCUMENT_SCHEMA,
    PARQUET_COMPRESSION,
    documents_dir,
    part_name,
    quarantine_dir,
    state_dir,
)
from mixer.stage import RunContext, Stage, Task, run_stage

BUFFER_BYTES = 64 << 20  # text buffered (all sources of a shard) before it is written
ROW_GROUP_ROWS = 65536  # rows buffered before they are written
SMALL_PART_BYTES = 4 << 20  # a source's rows of a flush below this are made one chunk
MAX_ARROW_SKIP = 64  # after pieces Arrow refused: at most this many read line by line first
MAX_DECODE_SKIP = 64  # after pieces msgspec refused: at most this many given to Arrow first
MAX_KEYS_LEARNT = 32  # keys beyond the Dolma fields msgspec learns per piece
SMALL_FILE_BYTES = 256 << 10  # shards this small (on disk) are read whole, and several...
TOGETHER_BYTES = 4 << 20  # ...of them parsed by one Arrow call, up to this much JSON
WRITE_AHEAD_BYTES = 64 << 20  # tables handed to the writer threads and not written yet
MAX_ARRAY_BYTES = 2**31 - 1  # string data one Arrow string array (int32 offsets) can hold
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
BOM = b"\xef\xbb\xbf"
# what a block's rows are parsed into; buffering adds src_file (DOCUMENT_SCHEMA's order)
PIECE_SCHEMA = pa.schema([f for f in DOCUMENT_SCHEMA if f.name != "src_file"])
_SRC_LINE_AT = PIECE_SCHEMA.get_field_index("src_line")
_SRC_LINE = PIECE_SCHEMA.field("src_line")
_SRC_FILE_AT = DOCUMENT_SCHEMA.get_field_index("src_file")
_SRC_FILE = DOCUMENT_SCHEMA.field("src_file")


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


def _string_bytes(table: pa.Table, column: str) -> int:
    """The UTF-8 bytes of a string column's values, from its offsets."""
    total = 0
    for chunk in table.column(column).chunks:
        if len(chunk):
            off = np.frombuffer(chunk.buffers()[1], np.int32, len(chunk) + 1, chunk.offset * 4)
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


# ------------------------------------------------------- a block by msgspec, or by Arrow

_JSON_SPACE = frozenset(b" \t\r")
_META_TRIES = 4  # matches of the metadata key tried from the end of a line
_SPACES = memoryview(b" " * (1 << 20))  # metadata longer than this: the per-line path
_MAY_BE_SPACE = np.zeros(256, bool)  # first bytes of the characters str.isspace() accepts
_MAY_BE_SPACE[list(range(33)) + list(range(0x80, 0x100))] = True


@dataclass
class _BlockReader:
    """The block readers set up for one field map (one per shard): msgspec's decoder of
    Dolma records, and Arrow's JSON reader with the five string fields by an explicit schema
    (any other key is an error), metadata cut off each line first."""

    decoder: RecordDecoder  # with the extra keys of the last piece that had some
    schema: pa.Schema
    options: pajson.ParseOptions
    meta_key: bytes  # b'"metadata":'
    field_keys: tuple  # b',"id":', b',"text":', ...: what may follow the metadata value
    names: frozenset  # the six field names
    # what Arrow reads: each piece copied here, metadata blanked (reused from piece to piece)
    scratch: bytearray = field(default_factory=bytearray, repr=False)
    # the schema with the extra keys of the last piece that had some (`_extra_field_options`)
    extra_options: pajson.ParseOptions | None = None
    # pieces msgspec refused in a row, and how many to give straight to Arrow before trying
    # it again (a bad line deep in every piece would otherwise cost two parses per piece)
    decode_misses: int = 0
    decode_skip: int = 0


def _block_reader(fields: FieldMap) -> _BlockReader | None:
    """None when the field map can't be read this way (names repeated, or names that JSON
    would escape): every block then takes the per-line path."""
    names = [fields.id, fields.text, fields.source, fields.added, fields.created]
    allowed = names + [fields.metadata]
    if len(set(allowed)) < 6 or any(
        '"' in n or "\\" in n or any(ord(c) < 32 for c in n) for n in allowed
    ):
        return None
    schema = pa.schema([(n, pa.string()) for n in names])
    options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    keys = tuple(b',"' + n.encode() + b'":' for n in names)
    meta_key = b'"' + fields.metadata.encode() + b'":'
    decoder = RecordDecoder({f: getattr(fields, f) for f in _FIELD_NAMES})
    return _BlockReader(decoder, schema, options, meta_key, keys, frozenset(allowed))


_FIELD_NAMES = ("id", "text", "source", "added", "created", "metadata")


def _fast_block(
    data: bytes,
    start: int,
    stop: int,
    first: int,
    forced: str | None,
    fallback: str,
    reader: _BlockReader,
) -> tuple[pa.Table, np.ndarray] | None:
    """The lines `data[start:stop]` as a PIECE_SCHEMA table (and the text bytes before each
    row), read by msgspec (`_msgspec_block`), else by Arrow (`_arrow_block`: it also reads
    keys beyond the Dolma fields), or None: then every line takes the per-line path."""
    if reader.decode_skip:
        reader.decode_skip -= 1
    else:
        block = _msgspec_block(data, start, stop, first, forced, fallback, reader)
        if block is not None:
            reader.decode_misses = 0
            return block
        reader.decode_misses += 1
        reader.decode_skip = min(1 << reader.decode_misses, MAX_DECODE_SKIP) - 1
    return _arrow_block(data, start, stop, first, forced, fallback, reader)


def _msgspec_block(
    data: bytes,
    start: int,
    stop: int,
    first: int,
    forced: str | None,
    fallback: str,
    reader: _BlockReader,
) -> tuple[pa.Table, np.ndarray] | None:
    """`_arrow_block`'s result, from msgspec's decoding of the block (mixer/dolma_lines.py),
    or None. The records are exactly what the per-line path reads, so the rows are too. Keys
    beyond the Dolma fields are learnt as msgspec meets them (kept for the shard's later
    pieces), and folded into the metadata as the per-line path folds them."""
    if stop - start > MAX_ARRAY_BYTES:
        return None
    for _ in range(MAX_KEYS_LEARNT):
        try:
            block = decode_block(data, start, stop, reader.decoder)
            break
        except UnknownKey as e:  # learn the key (kept for later pieces), and decode again
            wider = reader.decoder.with_key(e.key)
            if wider is None:
                return None
            reader.decoder = wider
    else:
        return None
    if block is None:
        return None
    n = len(block.ids)
    metas = _utf8_lengths(block.meta_lengths, block.meta_text, block.meta_present)
    return _piece(
        _utf8(list(map(str.encode, block.ids))),
        _utf8(list(map(str.encode, block.texts))),
        None if forced else _strings(block.sources),
        _strings(block.added),
        _strings(block.created),
        metas,
        n,
        first,
        forced,
        fallback,
    )


def _single(column) -> pa.Array:
    return column.chunk(0) if column.num_chunks == 1 else pa.concat_arrays(column.chunks)


def _copy_into(scratch: bytearray, data: bytes, start: int, stop: int) -> memoryview:
    """`data[start:stop]` copied to the start of `scratch`, as a writable view. The scratch
    buffer is grown when short and reused from piece to piece: no fresh pages per piece."""
    n = stop - start
    if len(scratch) < n:
        scratch.extend(bytes(n - len(scratch)))
    view = memoryview(scratch)[:n]
    view[:] = memoryview(data)[start:stop]
    return view


def _cut_metadata_by_line(
    data: bytes, start: int, stop: int, key: bytes, scratch: bytearray
) -> tuple[memoryview, pa.Array] | None:
    """The lines `data[start:stop]` with each one's metadata value blanked out (spaces), copied
    into `scratch`, and the metadata column: per line that value's JSON text as orjson writes
    it (null: no metadata, or null); None when a line is not a JSON object or its metadata
    can't be cut off this way. A match of
    `"metadata":` after a comma is a key, and only the object's last key leaves a valid JSON
    value before the final brace: matches are tried from the end of the line."""
    klen = len(key)
    loads, dumps, decode_error = orjson.loads, orjson.dumps, orjson.JSONDecodeError
    space = _JSON_SPACE
    blank = _SPACES
    buf = _copy_into(scratch, data, start, stop)  # what Arrow reads, metadata blanked
    values: list = []  # the metadata values, parsed
    slices: list = []  # their text in the line
    where: list = []  # per line: its index in values, or -1 (no metadata key)
    find, rfind = data.find, data.rfind
    s = start
    while True:
        e = find(b"\n", s, stop)
        if e < 0:
            e = stop
        if data[s : s + 1] != b"{":  # blank lines, leading spaces, other values
            return None
        i = rfind(key, s, e)
        if i < 0:
            where.append(-1)
        else:
            end = e
            while data[end - 1] in space:
                end -= 1
            if data[end - 1] != 125:  # "}"
                return None
            for _ in range(_META_TRIES):  # a later match is a key inside the metadata value
                j = i - 1
                while data[j] in space:
                    j -= 1
                if data[j] == 44:  # a "," before the key
                    text = data[i + klen : end - 1]
                    try:
                        value = loads(text)
                        break
                    except decode_error:
                        pass
                i = rfind(key, s, i)
                if i < 0:
                    return None
            else:
                return None
            where.append(len(values))
            values.append(value)
            slices.append(text)
            n_blank = end - 1 - j
            if n_blank > len(blank):
                return None
            buf[j - start : end - 1 - start] = blank[:n_blank]
        if e >= stop:
            break
        s = e + 1
    metas = [None] * len(where)
    if values:
        try:  # the text as orjson writes it: the line's own when it is the same (compact)
            written = dumps(values)
            if written[1:-1] != b",".join(slices):
                slices = [dumps(v) for v in values]
        except TypeError:
            return None
        metas = [None if k < 0 or values[k] is None else slices[k] for k in where]
    return buf, _utf8_or_null(metas)


def _cut_metadata_at_once(
    data: bytes,
    start: int,
    stop: int,
    key: bytes,
    scratch: bytearray,
    field_keys: tuple = (),
) -> tuple[memoryview, pa.Array] | None:
    """What `_cut_metadata_by_line` gives, for the usual piece, with the checks done by numpy
    over all lines and one orjson call parsing every metadata value: each line starts with `{`
    and ends with `}`, its last key match follows a comma, and every value's text is exactly
    what orjson writes for it (so each one is valid JSON on its own, and the values line up
    with the lines). The value runs to the line's last brace (metadata the last key), or else
    up to the next of `field_keys` (`,"source":`...: the order of writers that sort keys). None
    for anything else: the caller then goes line by line."""
    klen = len(key)
    find, rfind = data.find, data.rfind
    ends: list = []  # each line's end (its newline, or stop)
    keys: list = []  # each line's last key match, or -1
    add_end, add_key = ends.append, keys.append
    s = start
    while True:  # memchr and memrchr in C: cheaper than numpy over lines of kilobytes
        e = find(b"\n", s, stop)
        if e < 0:
            e = stop
        add_end(e)
        add_key(rfind(key, s, e))
        if e >= stop:
            break
        s = e + 1
    a = np.frombuffer(data, np.uint8)
    ends_a = np.array(ends, np.int64)
    starts = np.concatenate(([start], ends_a[:-1] + 1))
    if (ends_a <= starts).any() or (a[starts] != 123).any() or (a[ends_a - 1] != 125).any():
        return None  # an empty line, or one that isn't {...} with nothing around it
    keys_a = np.array(keys, np.int64)
    lines = np.flatnonzero(keys_a >= 0)
    at = keys_a[lines]
    if (a[at - 1] != 44).any():  # `,"metadata":` with nothing between: else line by line
        return None
    value_at = at + klen
    tries = [ends_a[lines] - 1]  # the line's last brace: metadata the last key
    if field_keys and len(lines):  # keys after the first line's metadata: those ends first
        before_next = _ends_before_next_key(data, value_at, ends_a[lines], field_keys)
        if before_next is not None:
            tries.insert(0, before_next)
    for value_end in tries:
        found = _metadata_values(data, value_at, value_end)
        if found is not None:
            break
    else:
        return None
    slices, values = found
    if (value_end - at + 1).max(initial=0) > len(_SPACES):
        return None
    lengths = np.zeros(len(ends), np.int64)  # per line: its metadata text's length, or 0
    valid = np.zeros(len(ends), bool)  # per line: a metadata value that isn't null
    kept, sizes = lines, value_end - value_at  # the metadata column's values
    if values.count(None):  # "metadata": null is no metadata (but is blanked all the same)
        present = np.fromiter((v is not None for v in values), bool, len(values))
        kept, sizes = kept[present], sizes[present]
        slices = list(itertools.compress(slices, present))
    valid[kept] = True
    lengths[kept] = sizes
    buf = _copy_into(scratch, data, start, stop)
    blank = _SPACES
    commas, stops = (at - 1 - start).tolist(), (value_end - start).tolist()  # in the copy
    for i, j in zip(commas, stops, strict=True):  # from the comma before the key to the end
        buf[i:j] = blank[: j - i]
    return buf, _utf8_lengths(lengths, b"".join(slices), valid)


def _metadata_values(data: bytes, value_at: np.ndarray, value_end: np.ndarray):
    """(the texts data[at:end], their values) when every text is one JSON value exactly as
    orjson writes it (one orjson call parses them all; each is written back and compared),
    else None."""
    slices = [data[i:j] for i, j in zip(value_at.tolist(), value_end.tolist(), strict=True)]
    if not slices:
        return slices, []
    try:
        values = orjson.loads(b"".join((b"[", b",".join(slices), b"]")))
        if len(values) != len(slices):
            return None
        if not all(map(bytes.__eq__, map(orjson.dumps, values), slices)):
            return None
    except (orjson.JSONDecodeError, TypeError):  # TypeError: orjson's nesting limits
        return None
    return slices, values


def _ends_before_next_key(
    data: bytes, value_at: np.ndarray, line_end: np.ndarray, field_keys: tuple
) -> np.ndarray | None:
    """Where each metadata value would end if the next key follows it (`,"source":` after
    `"metadata":{...}` when keys are sorted): the known keys after the first line's value,
    in the order they come there, are looked for after each line's value; a line where none
    is found ends at its last brace. A key found inside a value makes a text that is not one
    JSON value, which the caller's check refuses."""
    first, first_end = int(value_at[0]), int(line_end[0])
    found = [(data.find(k, first, first_end), k) for k in field_keys]
    after = [k for pos, k in sorted(found) if pos >= 0]
    if not after:
        return None
    ends = []
    find = data.find
    for i, e in zip(value_at.tolist(), line_end.tolist(), strict=True):
        end = e - 1
        for k in after:
            j = find(k, i, e)
            if j >= 0:
                end = j
                break
        ends.append(end)
    return np.array(ends, np.int64)


def _arrow_block(
    data: bytes,
    start: int,
    stop: int,
    first: int,
    forced: str | None,
    fallback: str,
    reader: _BlockReader,
) -> tuple[pa.Table, np.ndarray] | None:
    """The lines `data[start:stop]` (separated by newlines) parsed by Arrow's JSON reader into
    a PIECE_SCHEMA table (and the text bytes before each row, n + 1 values), or None: then
    every line of the block takes the per-line path, so what is kept or quarantined never
    depends on this reader.

    It returns a table only when every line is a JSON object whose keys are the Dolma fields,
    with string (or null) id/text/source/added/created, a non-blank id, a text, valid UTF-8, no
    repeated key, and the metadata value (if any) the last key. Then the rows are exactly what
    the per-line path makes of these lines: the metadata values are cut off first (written as
    orjson writes them, blanked out in a copy of the block: `_cut_metadata_at_once`, else
    `_cut_metadata_by_line`); Arrow parses the rest without making Python objects, and refuses
    any other key, type, repeated key or bad escape."""
    cut = _cut_metadata_at_once(
        data, start, stop, reader.meta_key, reader.scratch, reader.field_keys
    )
    if cut is None:  # anything unusual: line by line
        cut = _cut_metadata_by_line(data, start, stop, reader.meta_key, reader.scratch)
        if cut is None:
            return None
    buf, metas = cut
    table = _read_piece(buf, reader.options)
    if table is None:  # keys beyond the Dolma fields? Read with them typed, and keep them
        table = _read_with_extra_fields(buf, data, start, stop, reader)
        if table is None:
            return None
    n = len(metas)
    if table.num_rows != n:  # a line held two values
        return None
    if table.num_columns > 5:
        metas = _with_extra_fields(table, metas)
        if metas is None:
            return None
    doc_ids, texts, sources, added, created = (_single(c) for c in table.columns[:5])
    if doc_ids.null_count or texts.null_count:
        return None
    try:
        for a in (doc_ids, texts, sources, added, created):
            a.validate(full=True)  # UTF-8
    except pa.ArrowException:
        return None
    return _piece(doc_ids, texts, sources, added, created, metas, n, first, forced, fallback)


def _piece(
    doc_ids: pa.Array,
    texts: pa.Array,
    sources: pa.Array | None,
    added: pa.Array,
    created: pa.Array,
    metas: pa.Array,
    n: int,
    first: int,
    forced: str | None,
    fallback: str,
) -> tuple[pa.Table, np.ndarray] | None:
    """A block's columns (strings, valid UTF-8, no null id or text) as a PIECE_SCHEMA table
    and the text bytes before each row; None when an id is empty or white space (the per-line
    path quarantines those lines). Sources: `forced`, else each row's, else `fallback`."""
    off = np.frombuffer(doc_ids.buffers()[1], np.int32, n + 1, doc_ids.offset * 4)
    if (off[1:] == off[:-1]).any():
        return None
    data_ids = doc_ids.buffers()[2]
    heads = np.frombuffer(data_ids, np.uint8)[off[:-1]]
    for k in np.flatnonzero(_MAY_BE_SPACE[heads]):  # the id might be all white space
        if not doc_ids[int(k)].as_py().strip():
            return None
    if forced:
        sources = _repeat(forced, n)
    elif sources.null_count == n:
        sources = _repeat(fallback, n)
    else:  # `source or fallback`: null and "" (both of length 0 here) take the fallback
        given = utf8_spans(sources)[2] > 0
        sources = pc.if_else(_bools(given), sources, _repeat(fallback, n))
    toff = np.frombuffer(texts.buffers()[1], np.int32, n + 1, texts.offset * 4)
    line_numbers = np.arange(first, first + n, dtype=np.int64)
    arrays = [
        doc_ids,
        texts,
        sources,
        added,
        created,
        metas,
        pa.Array.from_buffers(pa.int64(), n, [None, pa.py_buffer(line_numbers)]),
    ]
    return pa.Table.from_arrays(arrays, schema=PIECE_SCHEMA), (toff - toff[0]).astype(np.int64)


def _read_piece(buf, options: pajson.ParseOptions) -> pa.Table | None:
    try:  # Arrow's columns are its own copies: the scratch buffer is free for the next piece
        return pajson.read_json(
            pa.BufferReader(pa.py_buffer(buf)),
            read_options=pajson.ReadOptions(use_threads=False, block_size=len(buf) + 1),
            parse_options=options,
        )
    except pa.ArrowException:
        return None


def _read_with_extra_fields(buf, data: bytes, start: int, stop: int, reader: _BlockReader):
    """The piece read with its extra keys in the schema, typed (string, int64 or bool) as the
    piece's first line has them: the last piece's schema first, then one learned from this
    piece. Never by Arrow's type inference, which recurses into nested values (100,000 nested
    arrays crash it); with every key typed, any other key or type is an error at once."""
    if reader.extra_options is not None:
        table = _read_piece(buf, reader.extra_options)
        if table is not None and not any(c.null_count for c in table.columns[5:]):
            return table
    end = data.find(b"\n", start, stop)
    try:
        first = orjson.loads(memoryview(data)[start : stop if end < 0 else end])
    except orjson.JSONDecodeError:
        return None
    if type(first) is not dict:
        return None
    extra = []
    for name, value in first.items():
        if name in reader.names:
            continue
        if type(value) is str:
            extra.append((name, pa.string()))
        elif type(value) is bool:
            extra.append((name, pa.bool_()))
        elif type(value) is int and -(2**63) <= value < 2**63:
            extra.append((name, pa.int64()))
        else:  # a float, an object, a list, a null: line by line
            return None
    if not extra:
        return None
    options = pajson.ParseOptions(
        explicit_schema=pa.schema(list(reader.schema) + extra), unexpected_field_behavior="error"
    )
    table = _read_piece(buf, options)
    if table is not None:
        reader.extra_options = options
    return table


_EXTRA_TYPES = (pa.string(), pa.int64(), pa.bool_())  # written back exactly as orjson does


def _with_extra_fields(table: pa.Table, metas: pa.Array) -> pa.Array | None:
    """The metadata column with the keys beyond the Dolma fields folded in, as `parse_record`
    does: {**extra (by key), **metadata}, or {**extra, "metadata": value} when the metadata is
    not an object, written by orjson. None (the per-line path) unless every such key is on
    every line with a string, integer or boolean value: Arrow can't tell a missing key from a
    null."""
    names = table.column_names[5:]
    columns = table.columns[5:]
    if any(c.type not in _EXTRA_TYPES or c.null_count for c in columns):
        return None
    try:
        for c in columns:
            if c.type == pa.string():
                for chunk in c.chunks:
                    chunk.validate(full=True)  # UTF-8
    except pa.ArrowException:
        return None
    order = sorted(range(len(names)), key=names.__getitem__)
    keys = [names[i] for i in order]
    rows = zip(*(columns[i].to_pylist() for i in order), strict=True)
    loads, dumps = orjson.loads, orjson.dumps
    merged = []
    for values, text in zip(rows, metas.to_pylist(), strict=True):
        extra = dict(zip(keys, values, strict=True))
        meta = None if text is None else loads(text)
        if meta is None:
            merged.append(dumps(extra))
        elif type(meta) is dict:
            merged.append(dumps({**extra, **meta}))
        else:
            merged.append(dumps({**extra, "metadata": meta}))
    return _utf8(merged)


# ------------------------------------------------------------------------ writing a shard


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
    when it holds ROW_GROUP_ROWS of them (cut at that row). When the buffer holds BUFFER_BYTES
    of text in all (cut at that row, whatever the blocks), the sources holding the most are
    written, largest first, until less than half of it is left: a source of a few documents
    among hundreds waits for more rows (or the end) instead of becoming a row group at every
    flush. Tables go to the writer thread, at most WRITE_AHEAD_BYTES ahead: memory stays
    bounded whatever the shard size, and row groups never depend on how the shard was read.
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
        """Buffer one source's rows; a full row group of them is written at once."""
        size = _text_bytes(part)
        self.pieces.setdefault(source, []).append(part)
        self.source_rows[source] += part.num_rows
        self.source_bytes[source] += size
        self.buffered += size
        while self.source_rows[source] >= ROW_GROUP_ROWS:
            self._write_source(source, ROW_GROUP_ROWS)

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
                        if buffered >= BUFFER_BYTES or len(rows) >= ROW_GROUP_ROWS:
                            out.buffered = buffered
                            if buffered >= BUFFER_BYTES:
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


def _careful(raw: bytes, last_unterminated: bool, forced, fallback, fields: FieldMap, record=None):
    """One line the fast branch did not take: (source, [id, text, added, created, metadata]
    or None, None or the reason it is quarantined). `record`: the object orjson already
    read from the line, if it did (orjson's reading is the first `_loads` tries anyway)."""
    if record is not None:
        reason, slow = None, False
    elif not raw.strip():
        return forced or fallback, None, "empty_line"
    else:
        record, reason, slow = _loads(raw, last_unterminated)
    if reason is None:
        doc, reason = parse_record(record, fields, fields.names, scrub=slow, raw=raw)
    if reason is not None:
        src = forced or (record.get(fields.source) if isinstance(record, dict) else None)
        return (src if isinstance(src, str) and src else fallback), None, reason
    # Any source string is kept as written; its folder is derived safely (schema.source_dir_name).
    doc_id, text, src, added, created, meta = doc
    return forced or src or fallback, [doc_id, text, added, created, meta], None


# ------------------------------------------------------------------------ duplicate ids

ID_FILE_MAGIC = b"MXIDS001"
ID_MERGE_BYTES = 64 << 20  # the most id hashes duplicate_ids holds at once (bytes)


def _ids_path(workdir: Path, index: int) -> Path:
    return _state(workdir) / "ids" / part_name(index, ".ids")


def write_id_file(path: Path, sources: list[str], hi, lo, src) -> None:
    """MAGIC, header length (8 bytes), a JSON header (the sources, the count), padding to 8,
    then n uint64 (high halves, sorted), n uint64 (low halves), n uint32 (source numbers)."""
    header = orjson.dumps({"sources": sources, "n": len(hi)})
    header += b" " * (-(len(ID_FILE_MAGIC) + 8 + len(header)) % 8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(ID_FILE_MAGIC + len(header).to_bytes(8, "little") + header)
        for a, dtype in ((hi, "<u8"), (lo, "<u8"), (src, "<u4")):
            f.write(np.ascontiguousarray(a, dtype=dtype).tobytes())


def read_id_file(path: str | Path):
    """(sources, hi, lo, src), the arrays memory-mapped (nothing is read until used)."""
    with open(path, "rb") as f:
        head = f.read(16)
        if head[:8] != ID_FILE_MAGIC:
            raise MixerError(f"{path}: not an ingest id file")
        size = int.from_bytes(head[8:16], "little")
        meta = orjson.loads(f.read(size))
    n, start = meta["n"], 16 + size
    if n == 0:
        empty = np.zeros(0, np.uint64)
        return meta["sources"], empty, empty, np.zeros(0, np.uint32)
    hi = np.memmap(path, "<u8", "r", start, (n,))
    lo = np.memmap(path, "<u8", "r", start + 8 * n, (n,))
    src = np.memmap(path, "<u4", "r", start + 16 * n, (n,))
    return meta["sources"], hi, lo, src


def duplicate_ids(workdir: str | Path, indices: list[int] | None = None) -> dict[str, int]:
    """Per source: how many documents repeat an id already seen in that source (over every
    ingested part of the workdir, or the part numbers given).

    Each ingest task wrote its documents' 128-bit id hashes, sorted (state/ingest/ids/). The
    hash range is cut into windows holding about ID_MERGE_BYTES in all; each window's slices
    of every file (found by binary search in the memory-mapped files) are sorted together and
    equal (source, hash) neighbours counted. Memory stays bounded whatever the corpus size,
    and no Parquet file is read."""
    workdir = Path(workdir)
    if indices is None:
        indices = sorted(_read_parts(workdir).values())
    files = []
    for index in indices:
        p = _ids_path(workdir, index)
        if p.exists():
            files.append(read_id_file(p))
    names = sorted({s for f in files for s in f[0]})
    number = {s: i for i, s in enumerate(names)}
    total = sum(len(f[1]) for f in files)
    windows = max(1, -(-total * 20 // ID_MERGE_BYTES))
    counts = np.zeros(len(names), np.int64)
    edges = [(w << 64) // windows for w in range(windows)]
    numbers = [np.array([number[s] for s in f[0]], np.int64) for f in files]
    for w, lo_edge in enumerate(edges):
        his, los, srcs = [], [], []
        for (_, hi, lo, src), to_global in zip(files, numbers, strict=True):
            a = int(np.searchsorted(hi, np.uint64(lo_edge)))
            b = int(np.searchsorted(hi, np.uint64(edges[w + 1]))) if w + 1 < windows else len(hi)
            if b > a:
                his.append(np.asarray(hi[a:b]))
                los.append(np.asarray(lo[a:b]))
                srcs.append(to_global[np.asarray(src[a:b])])
        if not his:
            continue
        hi_, lo_, src_ = np.concatenate(his), np.concatenate(los), np.concatenate(srcs)
        order = np.lexsort((lo_, hi_, src_))
        hi_, lo_, src_ = hi_[order], lo_[order], src_[order]
        same = (hi_[1:] == hi_[:-1]) & (lo_[1:] == lo_[:-1]) & (src_[1:] == src_[:-1])
        counts += np.bincount(src_[1:][same], minlength=len(names))
    return {s: int(counts[i]) for i, s in enumerate(names)}


# ------------------------------------------------------------------------ the stage


def _state(workdir: Path) -> Path:
    return state_dir(workdir) / "ingest"


def _record_path(workdir: Path, index: int) -> Path:
    return _state(workdir) / part_name(index, ".json")


def _outputs_of(workdir: Path, record: dict) -> list[Path]:
    """The files an ingest record names (relative to the workdir; absolute in older ones)."""
    return [Path(os.path.abspath(Path(workdir) / p)) for p in record["stats"]["outputs"]]


def _ends_unit(shard: str, size: int, group_below: int) -> bool:
    """Whether a unit of small shards ends after `shard`: with probability size / (2 x
    group_below), decided by a hash of the shard's file name (the same in every run, and
    wherever the folder is)."""
    name = PurePosixPath(shard.split("://", 1)[-1]).name
    h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return h / 2**64 < size / (2 * group_below)


def _record_shards(record: dict) -> list[str] | None:
    """The shards a task record covers (records of older versions name one shard)."""
    if "shards" in record:
        return record["shards"]
    return [record["shard"]] if "shard" in record else None


def _unit_key(source: str | None, shards: list[str]) -> str:
    """parts.json's key of a unit: [source, shard, ...] as JSON."""
    return orjson.dumps([source, *shards]).decode()


PRUNE_MODES = ("inputs", "sources")
INGEST_VERSION = 4  # bump when the output of a task changes for the same input
# Shards smaller than this (bytes on disk) are ingested together, consecutive ones of a source
# up to 4x as many bytes, into one part per source: a thousand files of a few KB are a few
# tasks and parts, not a thousand of each (a part costs about a millisecond in every stage).
GROUP_BELOW_BYTES = 8 << 20
UNIT_SHARDS = 4096  # the most shards one task ingests together


class IngestStage(Stage):
    """Raw shards -> documents/ and quarantine/, one task per unit: a shard, or consecutive
    shards of one source smaller than `group_below` bytes, ingested together into one part per
    source (0: every shard alone). A unit's part number is stable while its shards stay the
    same; a unit whose shards change (one added or removed) is ingested again as a new one.
    Where small shards' units end depends on each shard's own name and size, not on the
    shards before it, so adding or removing one changes its own unit only.

    `prune` says which earlier outputs are stale: "inputs" (the command line's default): a
    shard that an input of this run (the same folder or glob, for the same source) no longer
    yields; "sources" (a recipe, which lists every input of its sources): any shard that a
    source of this run no longer lists. Only files named by ingest's own records are removed.
    """

    name = "ingest"

    def __init__(
        self,
        workdir: str | Path,
        sources: list[IngestSource],
        prune: str = "inputs",
        group_below: int = GROUP_BELOW_BYTES,
    ):
        if prune not in PRUNE_MODES:
            raise ValueError(f"prune must be one of {PRUNE_MODES}")
        if not isinstance(group_below, int) or group_below < 0:
            raise MixerError(f"group_below: {group_below!r} is not a size in bytes (0: off)")
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
        self.group_below = group_below
        self._plan_cache = None
        self._units_cache = None
        self._stamps: dict[str, list[int]] = {}  # shard -> [size, mtime_ns], once per run
        self._run_token = None
        self._skipped = 0

    def __getstate__(self):  # workers get paths and settings only, not the resolved plan
        d = dict(self.__dict__)
        d["_plan_cache"] = d["_units_cache"] = None
        d["_stamps"] = {}
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

    def _units(self) -> list[dict]:
        """The plan cut into units of work, in plan order: {"key", "source", "shards", "stamps"
        ([size, mtime_ns] per shard), "bytes", "fields", "items"}. A shard of `group_below` bytes or more is a unit alone; smaller
        ones of the same source and fields join the open unit, which closes after a shard that
        `_ends_unit` picks (about every 2 x group_below bytes), or before it would pass
        4 x group_below bytes or UNIT_SHARDS shards. Never depends on the workers."""
        if self._units_cache is not None:
            return self._units_cache
        units: list[dict] = []
        open_unit = None  # the unit small shards may still join
        limit = 4 * self.group_below
        for (source, shard), entry in self._plan().items():
            stamp = self._stamp(shard)
            size = stamp[0]
            small = size < self.group_below
            if not (
                small
                and open_unit is not None
                and open_unit["source"] == source
                and open_unit["fields"] == entry["fields"]
                and open_unit["bytes"] + size <= limit
                and len(open_unit["shards"]) < UNIT_SHARDS
            ):
                open_unit = {
                    "source": source,
                    "shards": [],
                    "stamps": [],
                    "bytes": 0,
                    "fields": entry["fields"],
                    "items": [],
                }
                units.append(open_unit)
            open_unit["shards"].append(shard)
            open_unit["stamps"].append(stamp)
            open_unit["bytes"] += size
            open_unit["items"] += [i for i in entry["items"] if i not in open_unit["items"]]
            if not small or _ends_unit(shard, size, self.group_below):
                open_unit = None
        for unit in units:
            unit["key"] = _unit_key(unit["source"], unit["shards"])
        self._units_cache = units
        return units

    def _stamp(self, shard: str) -> list[int]:
        """[size, mtime_ns] of a shard, looked up once per run (planning, tasks, fingerprint)."""
        if shard not in self._stamps:
            fp = _stat(shard)
            self._stamps[shard] = [fp["size"], fp["mtime_ns"]]
        return self._stamps[shard]

    def input_fingerprint(self):
        out = []
        for (source, shard), entry in self._plan().items():
            fields = dataclasses.astuple(entry["fields"])
            out.append([source, shard, *self._stamp(shard), fields])
        return out

    def outputs(self) -> list[Path]:
        parts = _read_parts(self.workdir)
        files = []
        for unit in self._units():
            index = parts.get(unit["key"])
            rec = read_json(_record_path(self.workdir, index)) if index is not None else None
            if rec is None:
                return [_state(self.workdir) / "missing-record"]  # not done: never exists
            files += _outputs_of(self.workdir, rec)
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
        units = self._units()
        parts = _assign_parts(self.workdir, [u["key"] for u in units])
        self._prune(plan, parts, {u["key"] for u in units})
        self._run_token = f"{time.time_ns()}-{os.getpid()}"
        tasks, skipped = [], 0
        for unit in units:
            source, shards, fields = unit["source"], unit["shards"], unit["fields"]
            stamps, index = unit["stamps"], parts[unit["key"]]
            rec = read_json(_record_path(self.workdir, index))
            epoch = 0
            if rec and rec.get("source") == source and _record_shards(rec) == shards:
                epoch = rec.get("epoch", 0)
                complete = all(p.exists() for p in _outputs_of(self.workdir, rec))
                if not complete:
                    epoch += 1  # an output was removed: the task must run again
                elif rec.get("fingerprint") == stamps and rec.get("fields") == dataclasses.asdict(
                    fields
                ):
                    skipped += len(shards)
            tasks.append(
                Task(
                    key=part_name(index, ""),
                    args={
                        "source": source,
                        "shards": shards,
                        "index": index,
                        "fields": fields,
                        "items": unit["items"],
                        "epoch": epoch,
                        "token": self._run_token,
                    },
                    fingerprint={
                        "source": source,
                        "shards": shards,
                        "stamps": stamps,
                        "fields": dataclasses.asdict(fields),
                        "epoch": epoch,
                    },
                    weight=max(1, unit["bytes"]),
                )
            )
        self._skipped = skipped
        return tasks

    def _prune(self, plan: dict, parts: dict, current: set[str]) -> None:
        """Remove the outputs of units (`current`: this run's) that this run's sources no
        longer yield, or that now fall into other units."""
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
            for p in _outputs_of(self.workdir, rec):
                p.unlink(missing_ok=True)
            _record_path(self.workdir, index).unlink(missing_ok=True)
            del parts[key]
        write_json_atomic(_state(self.workdir) / "parts.json", parts)

    # -- the work (any worker)
    def run_task(self, task: Task) -> dict:
        a = task.args
        workdir = str(self.workdir)
        record_path = _record_path(self.workdir, a["index"])
        previous = read_json(record_path)
        stamps = []
        for shard in a["shards"]:
            try:
                fp = file_fingerprint(shard, with_hash=False)
            except OSError as e:
                raise _os_error(e, shard, workdir) from None
            stamps.append([fp["size"], fp["mtime_ns"]])
        stats = ingest_shard(workdir, a["shards"], a["index"], a["source"], a["fields"])
        if previous and _record_shards(previous) == a["shards"]:
            # outputs of an older version of these shards that this run did not rewrite
            now = set(_outputs_of(self.workdir, {"stats": stats}))
            for stale in set(_outputs_of(self.workdir, previous)) - now:
                stale.unlink(missing_ok=True)
        try:
            write_json_atomic(
                record_path,
                {
                    "source": a["source"],
                    "shards": a["shards"],
                    "items": a["items"],
                    "fields": dataclasses.asdict(a["fields"]),
                    "fingerprint": stamps,
                    "epoch": a["epoch"],
                    "stats": stats,
                },
            )
        except OSError as e:
            raise _os_error(e, str(record_path), workdir) from None
        return {**stats, "token": a["token"]}

    # -- the reduce (driver)
    def finish(self, results: list[dict]) -> dict:
        duplicates = duplicate_ids(self.workdir)  # over every part of the workdir, once
        summary = _summary(results, duplicates)
        fresh = sum(len(r["files"]) for r in results if r.get("token") == self._run_token)
        summary["shards_ingested"] = fresh
        summary["shards_skipped"] = summary["shards"] - fresh
        write_json_atomic(
            state_dir(self.workdir) / "ingest.json", summarize(self.workdir, duplicates=duplicates)
        )
        return summary


def _stat(shard: str) -> dict:
    """Size and mtime of a shard; a shard that vanished or can't be read is a one-line error."""
    try:
        return file_fingerprint(shard, with_hash=False)
    except OSError as e:
        raise MixerError(f"can't read {shard}: {e.strerror or type(e).__name__}") from None


def _read_parts(workdir: Path) -> dict[str, int]:
    return read_json(_state(workdir) / "parts.json", {})


def _assign_parts(workdir: Path, keys: list[str]) -> dict[str, int]:
    """Stable part numbers per unit: known units keep theirs, new ones get the next free
    numbers (never one used before in this workdir, even by an older layout)."""
    path = _state(workdir) / "parts.json"
    parts: dict[str, int] = read_json(path, {})
    next_index = max(parts.values(), default=-1) + 1
    for p in _state(workdir).glob("part-*.json") if _state(workdir).is_dir() else []:
        try:  # a record whose pair was pruned from parts.json still holds its number
            next_index = max(next_index, int(p.name.split(".")[0].split("-")[1]) + 1)
        except (IndexError, ValueError):
            continue
    changed = False
    for key in keys:
        if key not in parts:
            parts[key] = next_index
            next_index += 1
            changed = True
    if changed:
        write_json_atomic(path, parts)
    return parts


def _summary(stats: list[dict], duplicates: dict[str, int]) -> dict:
    totals: Counter = Counter()
    reasons: Counter = Counter()
    per_source: dict[str, Counter] = {}
    stream_errors = []
    for s in stats:
        totals.update({k: s[k] for k in ("lines_read", "ingested", "quarantined")})
        reasons.update(s["reasons"])
        for src, c in s["per_source"].items():
            per_source.setdefault(src, Counter()).update(c)
        stream_errors += s.get("stream_errors", [])
        if s.get("stream_error"):  # a record of an older version: one shard per task
            stream_errors.append({"file": s["file"], **s["stream_error"]})
    out = {
        "shards": sum(len(s.get("files") or [s.get("file")]) for s in stats),
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


def summarize(
    workdir: str | Path, indices: list[int] | None = None, duplicates: dict | None = None
) -> dict:
    """Totals over every ingested (source, shard) of the workdir (or the part numbers given).
    Duplicate ids are counted per source over every part of the workdir."""
    workdir = Path(workdir)
    if indices is None:
        indices = sorted(_read_parts(workdir).values())
    stats = []
    for index in indices:
        rec = read_json(_record_path(workdir, index))
        if rec and "stats" in rec:
            stats.append(rec["stats"])
    return _summary(stats, duplicate_ids(workdir) if duplicates is None else duplicates)


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
    group_below: int = GROUP_BELOW_BYTES,
) -> dict:
    """Ingest shards into `workdir` (one source: `source`, or each document's own). Returns the
    summary (this run's inputs; the whole workdir's is in state/ingest.json). Shards under
    `group_below` bytes are ingested together (IngestStage)."""
    from mixer.executor import current_executor

    stage = IngestStage(
        workdir, [IngestSource(source, list(inputs), fields or FieldMap())], prune, group_below
    )
    executor = current_executor(workers)
    ctx = RunContext(Path(workdir), executor, progress, echo or (lambda _msg: None))
    summary = run_stage(stage, ctx)
    if stage._run_token is None:  # the whole stage was up to date
        summary = {**summary, "shards_skipped": summary["shards"], "shards_ingested": 0}
    return summary
