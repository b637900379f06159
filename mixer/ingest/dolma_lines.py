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

import re
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter

import msgspec
import numpy as np
import orjson

from mixer.ingest.records import with_extra

_NULL = msgspec.Raw(b"null")
_ABSENT = msgspec.Raw(b"")  # an extra key missing from a record (a JSON value is never empty)
_FIELDS = ("id", "text", "source", "added", "created", "metadata")
_WHITE = frozenset(b" \t\r")  # JSON white space, but for the line break
_ESCAPED = frozenset('"\\' + "".join(map(chr, range(32))))  # what JSON escapes in a key


@dataclass
class DecodedBlock:
    """The fields of a block's records, in line order (every line one record)."""

    ids: list[str]
    texts: list[str]
    sources: list[str | None]
    added: list[str | None]
    created: list[str | None]
    meta_text: bytes  # the metadata texts that are not null, joined
    meta_lengths: np.ndarray  # per record: its metadata text's length (0 when null)
    meta_present: np.ndarray  # per record: a metadata text that is not null


@dataclass(frozen=True)
class RecordDecoder:
    """msgspec's decoder of Dolma records whose keys are `names` (field -> key in the input):
    id and text required strings, source/added/created strings or null, metadata any JSON
    value, and the keys in `extra` (sorted) as any JSON value, each one optional. Any other
    key is an error."""

    names: dict[str, str]
    extra: tuple[str, ...] = ()
    decoder: msgspec.json.Decoder = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        record = msgspec.defstruct(
            "DolmaRecord",
            [
                ("id", str),
                ("text", str),
                ("source", str | None, None),
                ("added", str | None, None),
                ("created", str | None, None),
                ("metadata", msgspec.Raw, _NULL),
                *((f"extra_{i}", msgspec.Raw, _ABSENT) for i in range(len(self.extra))),
            ],
            rename={f: self.names[f] for f in _FIELDS}
            | {f"extra_{i}": key for i, key in enumerate(self.extra)},
            forbid_unknown_fields=True,
        )
        object.__setattr__(self, "decoder", msgspec.json.Decoder(record))

    def with_key(self, key: str) -> RecordDecoder | None:
        """This decoder taking one more extra key, or None (a Dolma field's key, or one that
        JSON escapes: msgspec takes no such name)."""
        if key in self.names.values() or key in self.extra or _ESCAPED.intersection(key):
            return None
        return RecordDecoder(self.names, tuple(sorted((*self.extra, key))))


class UnknownKey(Exception):
    """A record has a key the decoder does not take (`key`)."""

    def __init__(self, key: str):
        super().__init__(key)
        self.key = key


# msgspec's words for a key its record type lacks (read to learn the key; should they change,
# the piece simply goes to the other readers)
_UNKNOWN = re.compile(r"Object contains unknown field `(.*)` - at `\$[^`]*`", re.DOTALL)


def line_count(data: bytes, start: int, stop: int) -> int | None:
    """The lines of `data[start:stop]` when every line holds whole JSON values: the block
    starts with "{" and every line break sits between a "}" and a "{", with only JSON white
    space between the "}" and the break. Inside one JSON value a "}" is never followed by a
    "{", so no value then spans two lines and no line is blank: if a decoder finds as many
    values as lines, each line is exactly one of them. None otherwise."""
    if stop <= start or data[start] != 0x7B:  # "{"
        return None
    if data.find(b"\n", start, stop) < 0:  # one line (a long one joined across pieces, say)
        return 1
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


def decode_block(data: bytes, start: int, stop: int, decoder: RecordDecoder) -> DecodedBlock | None:
    """The records of the lines `data[start:stop]`, or None unless every line is one record
    and orjson reads and writes every metadata value and extra key's value. UnknownKey names
    a key beyond the decoder's (the caller may retry with `decoder.with_key`)."""
    n = line_count(data, start, stop)
    if n is None:
        return None
    try:
        records = decoder.decoder.decode_lines(memoryview(data)[start:stop])
    except msgspec.ValidationError as e:
        unknown = _UNKNOWN.fullmatch(str(e))
        if unknown:
            raise UnknownKey(unknown.group(1)) from None
        return None
    except (msgspec.MsgspecError, RecursionError):
        return None
    if len(records) != n:
        return None
    raws = list(map(attrgetter("metadata"), records))
    extra = [list(map(attrgetter(f"extra_{i}"), records)) for i in range(len(decoder.extra))]
    try:
        meta = _metadata(raws) if not extra else _metadata_with_extra(raws, decoder.extra, extra)
    except (orjson.JSONDecodeError, TypeError):  # TypeError: orjson's nesting limit
        return None
    return DecodedBlock(
        list(map(attrgetter("id"), records)),
        list(map(attrgetter("text"), records)),
        list(map(attrgetter("source"), records)),
        list(map(attrgetter("added"), records)),
        list(map(attrgetter("created"), records)),
        *meta,
    )


def _metadata(raws: list[msgspec.Raw]) -> tuple[bytes, np.ndarray, np.ndarray]:
    """(the metadata texts that are not null, joined; each one's length; which are not null),
    each text as orjson writes its value (what the per-line path stores). Each raw text is
    exactly one JSON value, so one orjson call reads them all as an array, in order. When
    writing the array back gives the texts joined, they are kept as they are (the usual
    compact case): the commas between them are the array's top-level commas, so equal arrays
    mean equal texts one by one. Else each value is written on its own."""
    joined = b",".join(raws)
    values = orjson.loads(b"[" + joined + b"]")
    texts = raws if orjson.dumps(values)[1:-1] == joined else list(map(orjson.dumps, values))
    return _joined(texts, [v is not None for v in values])


def _metadata_with_extra(
    raws: list[msgspec.Raw], keys: tuple[str, ...], columns: list[list[msgspec.Raw]]
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """`_metadata` with the extra keys (sorted) each record has folded in by `with_extra`, as
    the per-line path folds them; written by orjson."""
    values = orjson.loads(b"[" + b",".join(raws) + b"]")
    # per record: its extra values' texts (empty: the key is missing), all read by one call
    rows = list(zip(*columns, strict=True))
    given = [raw for row in rows for raw in row if len(raw)]
    parsed = iter(orjson.loads(b"[" + b",".join(given) + b"]"))
    dumps = orjson.dumps
    texts, present = [], []
    for value, row in zip(values, rows, strict=True):
        extra = {key: next(parsed) for key, raw in zip(keys, row, strict=True) if len(raw)}
        value = with_extra(extra, value)
        present.append(value is not None)
        texts.append(dumps(value) if value is not None else b"")
    return _joined(texts, present)


def _joined(texts: list, present: list[bool]) -> tuple[bytes, np.ndarray, np.ndarray]:
    mask = np.array(present, bool)
    lengths = np.fromiter(map(len, texts), np.int64, len(texts))
    if mask.all():
        return b"".join(texts), lengths, mask
    lengths[~mask] = 0
    return b"".join(compress(texts, mask)), lengths, mask
