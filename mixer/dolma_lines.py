"""A block of Dolma JSON lines decoded by msgspec into the record's fields, one call per block.

msgspec decodes straight into typed records: the five string fields checked as it goes (a
number where a string belongs, a missing id or text, any key beyond the six, bad UTF-8, a lone
surrogate or a malformed line is an error), and the metadata value kept as its raw JSON text.
It reads the realistic corpus about 1.6x faster than orjson line by line and, unlike Arrow's
reader, needs no pass that cuts the metadata off each line first. `decode_block` returns None
for anything it cannot read exactly as orjson reads the block line by line; the caller then
tries the other readers, so what is kept or quarantined never depends on this one.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import compress
from operator import attrgetter

import msgspec
import numpy as np
import orjson

_NULL = msgspec.Raw(b"null")
_FIELDS = ("id", "text", "source", "added", "created", "metadata")
_WHITE = frozenset(b" \t\r")  # JSON white space, but for the line break


@dataclass
class DecodedBlock:
    """The fields of a block's records, in line order (every line one record)."""

    ids: list[str]
    texts: list[str]
    sources: list[str | None]
    added: list[str | None]
    created: list[str | None]
    meta_text: bytes  # the metadata values that are not null, their JSON texts joined
    meta_lengths: np.ndarray  # per record: its metadata text's length (0 when null)
    meta_present: np.ndarray  # per record: a metadata value that is not null


def record_decoder(names: dict[str, str]) -> msgspec.json.Decoder:
    """A decoder of Dolma records whose keys are `names` (field -> key in the input): id and
    text required strings, source/added/created strings or null, metadata any JSON value,
    and no other key."""
    record = msgspec.defstruct(
        "DolmaRecord",
        [
            ("id", str),
            ("text", str),
            ("source", str | None, None),
            ("added", str | None, None),
            ("created", str | None, None),
            ("metadata", msgspec.Raw, _NULL),
        ],
        rename={f: names[f] for f in _FIELDS},
        forbid_unknown_fields=True,
    )
    return msgspec.json.Decoder(record)


def line_count(data: bytes, start: int, stop: int) -> int | None:
    """The lines of `data[start:stop]` when every line holds whole JSON values: the block
    starts with "{" and every line break sits between a "}" and a "{", with only JSON white
    space between the "}" and the break. Inside one JSON value a "}" is never followed by a
    "{", so no value then spans two lines and no line is blank: if a decoder finds as many
    values as lines, each line is exactly one of them. None otherwise."""
    if stop <= start or data[start] != 0x7B:  # "{"
        return None
    block = np.frombuffer(data, np.uint8, stop - start, start)
    breaks = np.flatnonzero(block == 0x0A)  # never the first byte: that is "{"
    if len(breaks) and breaks[-1] == len(block) - 1:  # the last line is empty
        return None
    if not (block[breaks + 1] == 0x7B).all():
        return None
    odd = breaks[block[breaks - 1] != 0x7D]  # no "}" just before the break
    if len(odd):  # "}\r" (CRLF files) at once; "} " and the like one by one
        crlf = (block[odd - 1] == 0x0D) & (block[odd - 2] == 0x7D)  # odd >= 2: block[0] is "{"
        for i in odd[~crlf].tolist():
            j = i - 1
            while block[j] in _WHITE:  # stops at the first line's "{" at the latest
                j -= 1
            if block[j] != 0x7D:
                return None
    return len(breaks) + 1


def decode_block(
    data: bytes, start: int, stop: int, decoder: msgspec.json.Decoder
) -> DecodedBlock | None:
    """The records of the lines `data[start:stop]`, or None unless every line is one record
    and orjson reads and writes every metadata value."""
    n = line_count(data, start, stop)
    if n is None:
        return None
    try:
        records = decoder.decode_lines(memoryview(data)[start:stop])
    except (msgspec.MsgspecError, RecursionError):
        return None
    if len(records) != n:
        return None
    raws = list(map(attrgetter("metadata"), records))
    meta = _metadata(raws)
    if meta is None:
        return None
    return DecodedBlock(
        list(map(attrgetter("id"), records)),
        list(map(attrgetter("text"), records)),
        list(map(attrgetter("source"), records)),
        list(map(attrgetter("added"), records)),
        list(map(attrgetter("created"), records)),
        *meta,
    )


def _metadata(raws: list[msgspec.Raw]) -> tuple[bytes, np.ndarray, np.ndarray] | None:
    """(the metadata texts that are not null, joined; each one's length; which are not null),
    each text as orjson writes its value (what the per-line path stores); None when orjson
    can't read or write a value. Each raw text is exactly one JSON value, so one orjson call
    reads them all as an array, in order. When writing the array back gives the texts joined,
    they are kept as they are (the usual compact case): the commas between them are the
    array's top-level commas, so equal arrays mean equal texts one by one. Else each value
    is written on its own."""
    joined = b",".join(raws)
    try:
        values = orjson.loads(b"[" + joined + b"]")
        texts = raws if orjson.dumps(values)[1:-1] == joined else list(map(orjson.dumps, values))
    except (orjson.JSONDecodeError, TypeError):  # TypeError: orjson's nesting limit
        return None
    present = np.fromiter((v is not None for v in values), bool, len(values))
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    if present.all():
        return b"".join(texts), lengths, present
    lengths[~present] = 0
    return b"".join(compress(texts, present)), lengths, present
