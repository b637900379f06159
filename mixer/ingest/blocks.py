"""A whole decompressed piece read at once, or None (the per-line path then reads it).

`_fast_block` tries msgspec first (`_msgspec_block`, dolma_lines.py), then Arrow's JSON reader
(`_arrow_block`: each line's metadata value cut off first, `_cut_metadata_at_once`, as Arrow
cannot keep a nested value as JSON text). Each gives a piece only when its rows are exactly
what the per-line path (records.py) makes of those lines: docs/ingest.md, "How a shard is
read"."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from mixer.hashing import utf8_spans
from mixer.ingest import columns
from mixer.ingest.columns import (
    PIECE_SCHEMA,
    _bools,
    _offsets,
    _repeat,
    _single,
    _strings,
    _utf8,
    _utf8_lengths,
    _utf8_or_null,
)
from mixer.ingest.dolma_lines import RecordDecoder, UnknownKey, decode_block
from mixer.ingest.records import FieldMap, with_extra

MAX_SKIP = 64  # a reader refused time after time is tried again after at most this many turns
MAX_KEYS_LEARNT = 32  # keys beyond the Dolma fields msgspec learns per piece


_JSON_SPACE = frozenset(b" \t\r")
_META_TRIES = 4  # matches of the metadata key tried from the end of a line
_SPACES = memoryview(b" " * (1 << 20))  # metadata longer than this: the per-line path
_MAY_BE_SPACE = np.zeros(256, bool)  # first bytes of the characters str.isspace() accepts
_MAY_BE_SPACE[list(range(33)) + list(range(0x80, 0x100))] = True


@dataclass
class Backoff:
    """When to try a reader that keeps refusing: after a refusal the next 2, 4, 8, ... turns
    (at most MAX_SKIP) skip it; a turn it takes resets the count."""

    misses: int = 0
    skip: int = 0

    def ready(self) -> bool:
        """Whether to try the reader this turn (a turn skipped counts down)."""
        if self.skip:
            self.skip -= 1
            return False
        return True

    def record(self, taken: bool) -> None:
        if taken:
            self.misses = 0
        else:
            self.misses += 1
            self.skip = min(1 << self.misses, MAX_SKIP)


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
    # the schema with the extra keys of the last piece that had some (`_read_with_extra_fields`)
    extra_options: pajson.ParseOptions | None = None
    # after pieces msgspec refused, how many go straight to Arrow (a bad line deep in every
    # piece would otherwise cost two parses per piece)
    msgspec_backoff: Backoff = field(default_factory=Backoff)


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
    decoder = RecordDecoder(dataclasses.asdict(fields))
    return _BlockReader(decoder, schema, options, meta_key, keys, frozenset(allowed))


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
    if reader.msgspec_backoff.ready():
        block = _msgspec_block(data, start, stop, first, forced, fallback, reader)
        reader.msgspec_backoff.record(block is not None)
        if block is not None:
            return block
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
    """`_arrow_block`'s result, from msgspec's decoding of the block (dolma_lines.py),
    or None. The records are exactly what the per-line path reads, so the rows are too. Keys
    beyond the Dolma fields are learnt as msgspec meets them (kept for the shard's later
    pieces), and folded into the metadata as the per-line path folds them."""
    if stop - start > columns.MAX_ARRAY_BYTES:
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
    off = _offsets(doc_ids)
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
    toff = _offsets(texts)
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
        meta = None if text is None else loads(text)
        merged.append(dumps(with_extra(dict(zip(keys, values, strict=True)), meta)))
    return _utf8(merged)
