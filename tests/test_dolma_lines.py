"""msgspec's block reader (mixer/ingest/dolma_lines.py): it reads a block only when every line is one
record it reads exactly as the per-line path does; anything else is left to the other readers."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pyarrow.parquet as pq
import pytest
from ingest_outputs import ingest_line_by_line, outputs

from mixer.ingest import FieldMap, ingest
from mixer.ingest import blocks as ing_blocks
from mixer.ingest.dolma_lines import RecordDecoder, decode_block, line_count

DECODER = RecordDecoder({f: f for f in ("id", "text", "source", "added", "created", "metadata")})


@pytest.mark.parametrize(
    "block, lines",
    [
        (b"{}", 1),
        (b"{}\n{}", 2),
        (b"{}\r\n{}\r", 2),
        (b"{} \t\r\n{}", 2),
        (b"{\n}", None),  # a value across two lines
        (b'{"a":1,\n"b":{}}\n{}', None),
        (b"{}\n\n{}", None),  # a blank line
        (b"{}\n", None),  # an empty last line
        (b"{}\n {}", None),  # white space before the brace: Arrow refuses it too
        (b" {}", None),
        (b"", None),
        (b"[]\n{}", None),
        (b"{}x\n{}", None),
    ],
)
def test_line_count_needs_every_break_between_two_values(block: bytes, lines):
    assert line_count(block, 0, len(block)) == lines


def test_a_block_is_read_only_when_each_line_is_one_record():
    """decode_lines reads a stream of values: a value across two lines and two values on one
    line make as many records as lines, in the wrong places. The line check refuses it."""
    block = b'{"id":"a",\n"text":"b"} {"id":"c","text":"d"}'
    assert len(DECODER.decoder.decode_lines(block)) == 2  # what the check is for
    assert decode_block(block, 0, len(block), DECODER) is None
    block = b'{"id":"a","text":"b"}\n\n{"id":"c","text":"d"} {"id":"e","text":"f"}'
    assert decode_block(block, 0, len(block), DECODER) is None


def test_metadata_is_written_as_orjson_writes_it():
    lines = [
        b'{"id":"a","text":"x","metadata":{"k":[1,"\xc3\xa9"]}}',
        b'{"id": "b", "text": "y", "metadata": {"k": 1.0e0, "u": "\\u00e9"}}',
        b'{"id":"c","text":"z","metadata":null}',
        b'{"id":"d","text":"w"}',
        b'{"metadata":[ 1 , 2 ],"text":"v","id":"e"}\r',
    ]
    block = b"\n".join(lines)
    got = decode_block(block, 0, len(block), DECODER)
    assert got.ids == ["a", "b", "c", "d", "e"]
    assert got.meta_present.tolist() == [True, True, False, False, True]
    texts = [orjson.loads(x).get("metadata") for x in lines]
    want = [orjson.dumps(t) for t in texts if t is not None]
    assert got.meta_text == b"".join(want)
    assert got.meta_lengths.tolist() == [len(want[0]), len(want[1]), 0, 0, len(want[2])]


def test_records_orjson_cannot_read_leave_the_block():
    for meta in (b"[" * 1100 + b"]" * 1100, b"NaN", b"[1,]"):
        block = b'{"id":"a","text":"t"}\n{"id":"b","text":"t","metadata":' + meta + b"}"
        assert decode_block(block, 0, len(block), DECODER) is None


ODD_LINES = [
    b'{"id": 5, "text": "numeric id"}',
    b'{"id": "x", "text": "extra", "more": {"metadata": 1}}',
    b'{"id": "x", "text": "\\ud800 lone"}',
    b'{"id": "x", "text": "\\ud83d\\ude00 a pair"}',
    b'{"id": "   ", "text": "blank id"}',
    b'{"id": "\\u2003", "text": "b"}',
    b'{"id": "x", "text": "two", "text": "keys"}',
    b'{"id": "a", "text": "b", "te\\u0078t": "c"}',
    b'{"id": "x", "text": "bad \xff utf8"}',
    b'{"id": "x", "metadata": {"a": 1}}',
    b'{"id": "x", "text": "a", "metadata": {"a": 1}, "metadata": null}',
    b'{"id": "x", "text": "a", "metadata": -0}',
    b'{"id": "x", "text": "a", "metadata": {"n": 12345678901234567890123}}',
    b'{"id": "x", "text": "a", "metadata": 1e400}',
    b'{"id": "x", "text": "a", "metadata": "\\u00e9\\/"}',
    b'{"id": "x", "text": "a\\u0000", "source": "", "added": null, "created": "2020"}',
    b'{"id": "x", "text": "a", "source": 3}',
    b'{"id": "a", "text": "b"}  ',
    b'{"id": "a", "text": "b"}\x00',
    b'{"id": "a", "text": "b",}',
    b'{"id": "a", "text": "b"} {"id": "c", "text": "d"}',
    b'{"id": "a",',
    b'"text": "b"}',
    b"",
    b"null",
    b"[]",
]


@pytest.mark.parametrize("odd", range(len(ODD_LINES)))
def test_odd_lines_give_what_the_per_line_path_gives(tmp_path: Path, monkeypatch, odd: int):
    """Each odd line between two plain ones: msgspec (alone: Arrow switched off) reads the
    piece exactly as the per-line path does, or leaves it to that path."""
    raw = tmp_path / "raw"
    raw.mkdir()
    plain = [
        orjson.dumps({"id": f"p{i}", "text": f"plain {i}", "metadata": {"i": i}}) for i in range(2)
    ]
    (raw / "s.jsonl").write_bytes(b"\n".join([plain[0], ODD_LINES[odd], plain[1]]) + b"\n")
    monkeypatch.setattr(ing_blocks, "_arrow_block", lambda *a: None)
    ingest([str(raw)], tmp_path / "msgspec", progress=False, workers=1)
    ingest_line_by_line(monkeypatch, raw, tmp_path / "lines")
    assert outputs(tmp_path / "msgspec") == outputs(tmp_path / "lines")


def test_field_names_of_another_schema(tmp_path: Path, monkeypatch):
    """A field map (non-Dolma keys) is read by msgspec under its own names."""
    fields = FieldMap(id="doc_id", text="content", source="origin", metadata="meta")
    lines = [
        json.dumps({"doc_id": f"d{i}", "content": f"text {i}", "origin": "web", "meta": {"i": i}})
        for i in range(20)
    ]
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "s.jsonl").write_text("\n".join(lines) + "\n")
    taken = []
    real = ing_blocks._msgspec_block
    monkeypatch.setattr(
        ing_blocks, "_msgspec_block", lambda *a: taken.append(real(*a)) or taken[-1]
    )
    ingest([str(raw)], tmp_path / "wd", progress=False, workers=1, fields=fields)
    assert [b[0].num_rows for b in taken] == [20]
    rows = pq.read_table(tmp_path / "wd" / "documents" / "web").to_pylist()
    assert [(r["id"], r["text"], r["metadata"]) for r in rows[:2]] == [
        ("d0", "text 0", '{"i":0}'),
        ("d1", "text 1", '{"i":1}'),
    ]


def test_extra_keys_of_any_json_value_are_folded_into_metadata(tmp_path: Path, monkeypatch):
    """Web records carry keys beyond the Dolma fields (a url, nested WARC info, float scores,
    nulls), not always all of them: msgspec learns each key as it meets it and folds them
    into the metadata exactly as the per-line path does; a key JSON escapes sends the piece
    on to the other readers."""
    import random

    rng = random.Random(3)
    metas = [None, {"url": "inner wins", "k": 1}, ["a"], "s", {}, 2.5]
    lines = []
    for i in range(300):
        rec = {"id": f"d{i}", "text": f"web page {i} é", "url": f"https://x/{i}"}
        rec["warcinfo"] = {"ip": "1.2.3.4", "lens": [i, i + 1.5]}
        rec["score"] = rng.choice([0.25, 1e-9, 3, None])
        if rng.random() < 0.8:
            rec["a_first"] = rng.choice([True, "x", [1, {"y": None}]])
        if rng.random() < 0.7:
            rec["metadata"] = rng.choice(metas)
        keys = list(rec)
        rng.shuffle(keys)
        lines.append(orjson.dumps({k: rec[k] for k in keys}))
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "web.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (raw / "later.jsonl").write_bytes(lines[1] + b"\n" + lines[2][:-1] + b',"new":1}\n')
    (raw / "quoted.jsonl").write_bytes(lines[3][:-1] + b',"q\\"k":1}\n')
    taken = []
    real = ing_blocks._msgspec_block
    monkeypatch.setattr(
        ing_blocks, "_msgspec_block", lambda *a: taken.append(real(*a)) or taken[-1]
    )
    monkeypatch.setattr(ing_blocks, "_arrow_block", lambda *a: None)
    ingest([str(raw)], tmp_path / "msgspec", progress=False, workers=1, group_below=0)
    assert [None if b is None else b[0].num_rows for b in taken] == [2, None, 300]
    ingest_line_by_line(monkeypatch, raw, tmp_path / "lines", group_below=0)
    assert outputs(tmp_path / "msgspec") == outputs(tmp_path / "lines")
    rows = pq.read_table(tmp_path / "msgspec" / "documents" / "raw").to_pylist()
    d0 = orjson.loads(lines[0])
    meta = orjson.loads(next(r["metadata"] for r in rows if r["id"] == "d0"))
    extra = sorted(k for k in d0 if k not in ("id", "text", "metadata"))
    assert list(meta)[: len(extra)] == extra and meta["warcinfo"] == d0["warcinfo"]


def test_keys_learnt_are_kept_even_when_a_piece_needs_more(monkeypatch):
    """A piece with more new keys than one piece learns (MAX_KEYS_LEARNT) is refused, but
    the keys learnt are kept: the next piece goes on from there."""
    monkeypatch.setattr(ing_blocks, "MAX_KEYS_LEARNT", 3)
    reader = ing_blocks._block_reader(FieldMap())
    rec = {"id": "a", "text": "t"} | {f"k{i}": i for i in range(5)}
    block = orjson.dumps(rec) + b"\n" + orjson.dumps(rec | {"id": "b"})
    assert ing_blocks._msgspec_block(block, 0, len(block), 1, None, "web", reader) is None
    assert reader.decoder.extra == ("k0", "k1", "k2")
    table, _ = ing_blocks._msgspec_block(block, 0, len(block), 1, None, "web", reader)
    assert len(reader.decoder.extra) == 5
    assert table.column("metadata").to_pylist()[0] == '{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4}'


_PIECES = ["a", "é", "日本", "🙂", '"', "\\", "\t", "\n", "\x00", "}{", "\u2028", "\ud800"]


def _random_value(rng, depth: int = 0):
    r = rng.random()
    if depth > 3 or r < 0.4:
        return rng.choice(["s", "é", "", 'a"b', 0, -1, 2**63, 2**64 + 5, 1.5, 1e300, True, None])
    if r < 0.7:
        keys = ["a", "id", "text", "metadata", "source", "x y"]
        return {rng.choice(keys): _random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randint(0, 3))]


def _random_line(rng, i: int, valid: bool, extra: bool) -> bytes:
    """A record of any shape (keys in any order, any spacing; with `extra`, keys beyond the
    Dolma fields, some with JSON escapes in their names); unless `valid`, fields missing,
    mistyped or blank and now and then the line damaged."""
    bad = 0.0 if valid else 1.0
    rec = {}
    if rng.random() < 1 - 0.03 * bad:
        ids = [f"d{i}", f" d{i}", f"d{i}\u00a0"] + ["  ", "\u3000", i] * int(bad)
        rec["id"] = rng.choice(ids)
    if rng.random() < 1 - 0.03 * bad:
        rec["text"] = (
            "".join(rng.choice(_PIECES[: len(_PIECES) - 1 + int(bad)]) for _ in range(12))
            if rng.random() < 1 - 0.05 * bad
            else rng.choice([5, None, ["x"]])
        )
    for key in ("source", "added", "created"):
        if rng.random() < 0.5:
            rec[key] = rng.choice(["web", "", None, "a/b"] + [3] * int(bad))
    if rng.random() < 0.7:
        rec["metadata"] = _random_value(rng)
    for key in ("url", "score", "warc", 'q"k')[: (3 + int(bad)) * extra]:  # q"k: left to Arrow
        if rng.random() < 0.15:
            rec[key] = _random_value(rng)
    keys = list(rec)
    rng.shuffle(keys)
    rec = {k: rec[k] for k in keys}
    style = rng.random()
    try:
        if style < 0.5:
            line = orjson.dumps(rec)
        elif style < 0.8:
            line = json.dumps(rec, ensure_ascii=rng.random() < 0.5).encode()
        else:
            line = json.dumps(rec, separators=(", ", " : ")).encode()
    except (TypeError, UnicodeEncodeError):  # what orjson or UTF-8 won't write: escaped
        line = json.dumps(rec).encode()
    damage = rng.random() + 1 - bad
    if damage < 0.03:
        line = line[: rng.randint(0, len(line))]
    elif damage < 0.05:
        line = line.replace(b'"text"', b'"text","text"', 1)
    elif damage < 0.07:
        line += rng.choice([b" ", b"\r", b" \t"])
    elif damage < 0.08:
        line = b" " + line
    elif damage < 0.09:
        line = b""
    elif damage < 0.10:
        line = line + b" " + line
    elif damage < 0.11 and line:
        k = rng.randrange(len(line))
        line = line[:k] + bytes([rng.randrange(256)]) + line[k + 1 :]
    elif damage < 0.12:
        line = line.replace(b",", b",\n", 1)  # a record across two lines
    return line


@pytest.mark.parametrize("seed", range(12))
def test_random_records_give_what_the_per_line_path_gives(tmp_path: Path, monkeypatch, seed):
    """Random shards of records of every shape, some damaged: msgspec alone (Arrow switched
    off) keeps and quarantines exactly what the per-line path does, line by line."""
    import random

    rng = random.Random(seed)
    raw = tmp_path / "raw"
    raw.mkdir()
    for f in range(rng.randint(2, 5)):  # the first shard valid, the others either way
        valid, extra = f == 0 or rng.random() < 0.4, rng.random() < 0.5
        lines = [_random_line(rng, i, valid, extra) for i in range(rng.randint(1, 80))]
        (raw / f"s{f}.jsonl").write_bytes(
            b"\n".join(lines) + (b"\n" if rng.random() < 0.9 else b"")
        )
    taken, real = [], ing_blocks._msgspec_block
    with monkeypatch.context() as patch:
        patch.setattr(ing_blocks, "_arrow_block", lambda *a: None)
        patch.setattr(ing_blocks, "_msgspec_block", lambda *a: taken.append(real(*a)) or taken[-1])
        ingest([str(raw)], tmp_path / "msgspec", progress=False, workers=1, group_below=0)
    ingest_line_by_line(monkeypatch, raw, tmp_path / "lines", group_below=0)
    assert outputs(tmp_path / "msgspec") == outputs(tmp_path / "lines")
    assert any(b is not None for b in taken)
