"""One JSON record -> the Dolma columns [id, text, source, added, created, metadata], or the
reason it is quarantined (`parse_record`, `_careful`): the per-line path, and the reference
every block reader is tested against. `FieldMap` names the fields of non-Dolma JSONL."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import orjson


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


def with_extra(extra: dict, metadata):
    """The metadata with the keys beyond the Dolma fields folded in (`extra`, sorted by key):
    {**extra, **metadata} when the metadata is an object, {**extra, "metadata": value} when it
    is another value, `extra` when there is none. Every reader folds them this way."""
    if not extra:
        return metadata
    if isinstance(metadata, dict):
        return {**extra, **metadata}
    return extra if metadata is None else {**extra, "metadata": metadata}


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
    if extra_keys:
        metadata = with_extra({k: record[k] for k in sorted(extra_keys)}, metadata)
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
