"""Tokenize stage: packing, shuffle, EOS handling, the OLMo memmap layout, verify, train."""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import mixer.tokenization.stages as stages_module
from mixer.cli import main
from mixer.errors import MixerError
from mixer.io import read_json
from mixer.tokenization import load_tokenizer, tokenize_mix
from mixer.tokenization.metadata import read_metadata
from mixer.train_tokenizer import train_tokenizer
from mixer.verify_tokens import verify_tokens

SHARED = Path(os.environ.get("MIXER_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
NEOX = SHARED / "tokenizers" / "allenai_eleuther-ai-gpt-neox-20b-pii-special.json"
DOLMA2 = SHARED / "tokenizers" / "allenai_dolma2.json"
needs_real = pytest.mark.skipif(not NEOX.is_file(), reason="shared tokenizers not present")

WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "data model token mixer shard parquet memmap seed shuffle recipe olmo café naïve 数据 ∑ 🙂"
).split()


def make_docs(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(0, 120))]
        text = " ".join(words)
        if i % 7 == 3:
            text += "\n\n  indented\tline  "
        docs.append({"id": f"doc-{i:04d}", "text": text, "source": ("web", "math", "code")[i % 3]})
    docs[5]["text"] = "before <|endoftext|> after <|pad|>"
    docs[6]["text"] = ""
    return docs


def write_mix(mix: Path, docs: list[dict], parts: int = 3, row_group_size: int = 40) -> Path:
    mix.mkdir(parents=True, exist_ok=True)
    per = -(-len(docs) // parts)
    for p in range(parts):
        chunk = docs[p * per : (p + 1) * per]
        table = pa.table(
            {
                "id": [d["id"] for d in chunk],
                "text": [d["text"] for d in chunk],
                "source": [d["source"] for d in chunk],
                "repeat": pa.array([0] * len(chunk), pa.int32()),
                **(
                    {
                        "src_file": [d["src_file"] for d in chunk],
                        "src_line": pa.array([d["src_line"] for d in chunk], pa.int64()),
                    }
                    if chunk and "src_file" in chunk[0]
                    else {}
                ),
            }
        )
        pq.write_table(table, mix / f"part-{p:05d}.parquet", row_group_size=row_group_size)
    return mix


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok")
    docs = make_docs(300)
    mix = write_mix(root / "mix", docs)
    tok_path = root / "tokenizer.json"
    train_tokenizer([mix], tok_path, vocab_size=400)
    return {"root": root, "docs": docs, "mix": mix, "tokenizer": tok_path}


def read_index(out: Path) -> list[dict]:
    rows = []
    for p in sorted(out.glob("part-*.index.parquet")):
        for r in pq.read_table(p).to_pylist():
            r["part"] = p.name.replace(".index.parquet", ".npy")
            rows.append(r)
    return rows


def expected_ids(tok, text: str, eos: int) -> list[int]:
    return tok.encode(text, add_special_tokens=False).ids + [eos]


def olmo_instances(out: Path, dtype: str, seq_len: int) -> list[np.ndarray]:
    """What OLMo's MemMapDataset serves: per file, len // seq_len fixed windows."""
    instances = []
    for path in sorted(out.glob("part-*.npy")):
        mm = np.memmap(path, dtype=np.dtype(dtype), mode="r")
        for i in range(mm.shape[0] // seq_len):
            instances.append(np.asarray(mm[i * seq_len : (i + 1) * seq_len]))
    return instances


def test_round_trip_through_olmo_memmap_reader(corpus, tmp_path):
    out = tmp_path / "tokens"
    info = tokenize_mix(
        corpus["mix"],
        corpus["tokenizer"],
        out,
        seed=3,
        workers=1,
        max_tokens_per_part=2000,
        progress=False,
    )
    tok = load_tokenizer(corpus["tokenizer"])
    eos = tok.token_to_id("<|endoftext|>")
    assert info["dtype"] == "uint16" and info["eos_id"] == eos == 0
    assert info["documents"] == len(corpus["docs"]) and len(info["parts"]) > 3
    assert all(p["tokens"] <= 2000 for p in info["parts"])
    by_id = {d["id"]: d for d in corpus["docs"]}
    stream = []
    index = read_index(out)
    assert [r["id"] for r in index] != [d["id"] for d in corpus["docs"]]  # shuffled
    assert sorted(r["id"] for r in index) == sorted(by_id)
    for r in index:
        want = expected_ids(tok, by_id[r["id"]]["text"], eos)
        mm = np.memmap(out / r["part"], dtype=np.uint16, mode="r")
        got = mm[r["start"] : r["end"]].tolist()
        assert got == want
        assert tok.decode(got[:-1], skip_special_tokens=False) == by_id[r["id"]]["text"]
        assert r["source"] == by_id[r["id"]]["source"]
    for path in sorted(out.glob("part-*.npy")):
        assert path.read_bytes()[:6] != b"\x93NUMPY"  # raw memmap, no header
        stream.append(np.fromfile(path, dtype="<u2"))
    seq_len = 64
    instances = olmo_instances(out, "uint16", seq_len)
    expected = [
        w
        for part in stream
        for w in np.split(part[: len(part) // seq_len * seq_len], len(part) // seq_len)
    ]
    assert len(instances) == len(expected) > 0
    assert all(np.array_equal(a, b) for a, b in zip(instances, expected, strict=True))
    assert (
        sum(info["tokens_per_source"].values())
        == info["total_tokens"]
        == sum(len(s) for s in stream)
    )
    assert verify_tokens(out, samples=50, progress=False)["samples_compared"] == 50


def test_literal_special_token_in_text_stays_text(corpus, tmp_path):
    out = tmp_path / "tokens"
    tokenize_mix(corpus["mix"], corpus["tokenizer"], out, workers=1, progress=False)
    row = next(r for r in read_index(out) if r["id"] == "doc-0005")
    ids = np.memmap(out / row["part"], dtype=np.uint16, mode="r")[
        row["start"] : row["end"]
    ].tolist()
    assert ids.count(0) == 1 and ids[-1] == 0  # only the appended EOS
    assert 1 not in ids  # "<|pad|>" typed in the text is not the pad token
    empty = next(r for r in read_index(out) if r["id"] == "doc-0006")
    assert empty["end"] - empty["start"] == 1  # an empty document is just its EOS


def test_seed_changes_order_not_multiset(corpus, tmp_path):
    a = tokenize_mix(
        corpus["mix"], corpus["tokenizer"], tmp_path / "a", seed=1, workers=1, progress=False
    )
    b = tokenize_mix(
        corpus["mix"], corpus["tokenizer"], tmp_path / "b", seed=2, workers=1, progress=False
    )
    order_a = [r["id"] for r in read_index(tmp_path / "a")]
    order_b = [r["id"] for r in read_index(tmp_path / "b")]
    assert order_a != order_b and sorted(order_a) == sorted(order_b)
    tokens_a = np.concatenate(
        [np.fromfile(p, "<u2") for p in sorted((tmp_path / "a").glob("*.npy"))]
    )
    tokens_b = np.concatenate(
        [np.fromfile(p, "<u2") for p in sorted((tmp_path / "b").glob("*.npy"))]
    )
    assert Counter(tokens_a.tolist()) == Counter(tokens_b.tolist())
    assert a["tokens_per_source"] == b["tokens_per_source"]


def test_deterministic_across_workers_and_rerun_skips(corpus, tmp_path, monkeypatch):
    kw = dict(seed=7, max_tokens_per_part=3000, progress=False)
    # One worker in this process, many small encode tasks, tiny write chunks; two spawned workers with the defaults: the same bytes.
    monkeypatch.setattr(stages_module, "TASK_TEXT_BYTES", 500)
    monkeypatch.setattr(stages_module, "PACK_CHUNK_TOKENS", 300)
    one = tokenize_mix(corpus["mix"], corpus["tokenizer"], tmp_path / "w1", workers=1, **kw)
    monkeypatch.undo()
    two = tokenize_mix(corpus["mix"], corpus["tokenizer"], tmp_path / "w2", workers=2, **kw)
    assert one == two and len(one["parts"]) > 2
    for part in one["parts"]:
        for f in (part["file"], part["index"], part["metadata"]):
            assert (tmp_path / "w1" / f).read_bytes() == (tmp_path / "w2" / f).read_bytes(), f
    assert (tmp_path / "w1/tokens.json").read_bytes() == (tmp_path / "w2/tokens.json").read_bytes()
    stamp = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "w1").iterdir()}
    again = tokenize_mix(corpus["mix"], corpus["tokenizer"], tmp_path / "w1", workers=1, **kw)
    assert again == one
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "w1").iterdir()} == stamp
    # Other settings: fewer, larger parts; stale parts of the previous run are removed.
    fewer = tokenize_mix(
        corpus["mix"],
        corpus["tokenizer"],
        tmp_path / "w1",
        workers=1,
        seed=7,
        max_tokens_per_part=10**6,
        progress=False,
    )
    assert len(fewer["parts"]) == 1
    assert sorted(p.name for p in (tmp_path / "w1").glob("part-*")) == [
        "part-00000.csv.gz",
        "part-00000.index.parquet",
        "part-00000.npy",
    ]
    assert not list((tmp_path / "w1").glob(".tmp-*"))


def check_metadata_matches_index(out: Path, info: dict, provenance: dict) -> int:
    """Every part's csv.gz has one row per index row: start,end,id,src,loc, no header."""
    rows = 0
    for part in info["parts"]:
        meta = read_metadata(out / part["metadata"])
        index = pq.read_table(out / part["index"]).to_pylist()
        assert len(meta) == len(index) == part["documents"]
        for m, r in zip(meta, index, strict=True):
            src, loc = provenance[r["id"]]
            assert m == [str(r["start"]), str(r["end"]), r["id"], src, str(loc)]
        rows += len(meta)
        raw = (out / part["metadata"]).read_bytes()
        assert raw[:2] == b"\x1f\x8b" and raw[4:8] == b"\0\0\0\0"  # gzip, mtime 0
    return rows


def with_provenance(docs: list[dict]) -> list[dict]:
    out = []
    for i, d in enumerate(docs):
        src = f"s3://bucket/{d['source']}/shard,{i % 4}.jsonl.zst" if i % 5 else 'a "quoted",\nname'
        out.append({**d, "src_file": src, "src_line": i + 1})
    out[1]["id"] = 'id,with "comma"'
    return out


def test_metadata_csv_beside_every_part(corpus, tmp_path):
    docs = with_provenance(make_docs(120, seed=3))
    mix = write_mix(tmp_path / "mix", docs, parts=2)
    out = tmp_path / "t"
    info = tokenize_mix(
        mix, corpus["tokenizer"], out, seed=3, max_tokens_per_part=1500, workers=1, progress=False
    )
    assert len(info["parts"]) > 2 and info["layout"] == "mixed"
    provenance = {d["id"]: (d["src_file"], d["src_line"]) for d in docs}
    assert check_metadata_matches_index(out, info, provenance) == 120
    # Byte-deterministic: the same run elsewhere gives the same gzip bytes.
    again = tokenize_mix(
        mix,
        corpus["tokenizer"],
        tmp_path / "u",
        seed=3,
        max_tokens_per_part=1500,
        workers=2,
        progress=False,
    )
    for part in again["parts"]:
        assert (out / part["metadata"]).read_bytes() == (
            tmp_path / "u" / part["metadata"]
        ).read_bytes()
    # A mix without provenance columns: src empty, loc empty.
    bare = write_mix(tmp_path / "bare", make_docs(10, seed=4), parts=1)
    info = tokenize_mix(bare, corpus["tokenizer"], tmp_path / "b", workers=1, progress=False)
    assert all(r[3:] == ["", ""] for r in read_metadata(tmp_path / "b" / "part-00000.csv.gz"))


def test_per_source_layout(corpus, tmp_path):
    docs = with_provenance(make_docs(150, seed=8))
    for i, d in enumerate(docs):
        d["source"] = ("web", "s2/pes2o", "olmoe:c4")[i % 3]
    mix = write_mix(tmp_path / "mix", docs, parts=2)
    out = tmp_path / "t"
    kw = dict(seed=1, max_tokens_per_part=1200, progress=False, per_source=True)
    info = tokenize_mix(mix, corpus["tokenizer"], out, workers=1, **kw)
    assert info["layout"] == "per_source"
    dirs = info["source_dirs"]
    assert set(dirs) == {"web", "s2/pes2o", "olmoe:c4"} and dirs["web"] == "web"
    assert len(set(dirs.values())) == 3 and all(
        "/" not in d and ":" not in d for d in dirs.values()
    )
    for source, sub in dirs.items():
        parts = [p for p in info["parts"] if p["source"] == source]
        assert [p["file"] for p in parts] == [f"{sub}/part-{i:05d}.npy" for i in range(len(parts))]
        for p in parts:
            assert set(pq.read_table(out / p["index"]).column("source").to_pylist()) == {source}
        assert sum(p["tokens"] for p in parts) == info["tokens_per_source"][source]
    provenance = {d["id"]: (d["src_file"], d["src_line"]) for d in docs}
    assert check_metadata_matches_index(out, info, provenance) == 150
    assert not list(out.glob("part-*"))  # nothing at the top level but tokens.json
    verify_tokens(out, samples=20, progress=False)
    # Same documents, same seed, mixed layout: the same multiset of tokens.
    mixed = tokenize_mix(
        mix, corpus["tokenizer"], tmp_path / "m", workers=2, **{**kw, "per_source": False}
    )
    assert mixed["total_tokens"] == info["total_tokens"]
    # Switching the layout in place removes the per-source files this run's records named.
    (out / "web" / "notes.txt").write_text("not ours")
    tokenize_mix(mix, corpus["tokenizer"], out, workers=1, **{**kw, "per_source": False})
    assert sorted(p.name for p in (out / "web").iterdir()) == ["notes.txt"]
    assert not (out / dirs["s2/pes2o"]).exists()


def test_repeated_documents_and_bos(tmp_path, corpus):
    docs = make_docs(20, seed=5)
    mix = write_mix(tmp_path / "mix", docs + docs[:4], parts=1)
    info = tokenize_mix(
        mix, corpus["tokenizer"], tmp_path / "t", bos_id=1, workers=1, progress=False
    )
    assert info["documents"] == 24 and info["bos_id"] == 1 and info["bos_token"] == "<|pad|>"
    index = read_index(tmp_path / "t")
    assert Counter(r["id"] for r in index)["doc-0000"] == 2
    mm = np.memmap(tmp_path / "t" / "part-00000.npy", dtype=np.uint16, mode="r")
    assert all(mm[r["start"]] == 1 and mm[r["end"] - 1] == 0 for r in index)
    verify_tokens(tmp_path / "t", samples=24, progress=False)


def test_verify_catches_corruption(corpus, tmp_path):
    out = tmp_path / "tokens"
    tokenize_mix(corpus["mix"], corpus["tokenizer"], out, workers=1, progress=False)
    part = out / "part-00000.npy"
    original = part.read_bytes()
    row = read_index(out)[0]
    data = bytearray(original)
    pos = (row["end"] - 1) * 2
    data[pos : pos + 2] = (5).to_bytes(2, "little")  # overwrite the first document's EOS
    part.write_bytes(bytes(data))
    with pytest.raises(MixerError, match="EOS"):
        verify_tokens(out, progress=False)
    part.write_bytes(original[:-2])
    with pytest.raises(MixerError, match="bytes"):
        verify_tokens(out, progress=False)
    part.write_bytes(original)
    verify_tokens(out, progress=False)
    # A mix whose text changed after tokenizing no longer matches the decoded samples.
    changed = [dict(d, text=d["text"] + " extra") for d in corpus["docs"]]
    write_mix(tmp_path / "changed", changed)
    with pytest.raises(MixerError, match="differ from the mix text"):
        verify_tokens(out, mix_dir=tmp_path / "changed", samples=20, progress=False)


def test_eos_choice_and_errors(corpus, tmp_path):
    no_eos = tmp_path / "no_eos.json"
    train_tokenizer([corpus["mix"]], no_eos, vocab_size=300, special_tokens="<|pad|>")
    with pytest.raises(MixerError, match="--eos"):
        tokenize_mix(corpus["mix"], no_eos, tmp_path / "x", workers=1, progress=False)
    info = tokenize_mix(
        corpus["mix"], no_eos, tmp_path / "x", eos="<|pad|>", workers=1, progress=False
    )
    assert info["eos_id"] == 0 and "looked up" in info["eos_choice"]
    with pytest.raises(MixerError, match="not a token"):
        tokenize_mix(corpus["mix"], no_eos, tmp_path / "y", eos="<eos>", workers=1, progress=False)
    with pytest.raises(MixerError, match="outside the vocabulary"):
        tokenize_mix(corpus["mix"], no_eos, tmp_path / "y", eos_id=10**6, workers=1, progress=False)
    with pytest.raises(MixerError, match="dtype"):
        tokenize_mix(corpus["mix"], no_eos, tmp_path / "y", dtype="int8", workers=1, progress=False)
    assert not (tmp_path / "y").exists()


def test_cli_commands(corpus, tmp_path):
    runner = CliRunner()
    out = tmp_path / "tokens"
    args = [
        "tokenize",
        str(corpus["mix"]),
        "--tokenizer",
        str(corpus["tokenizer"]),
        "--out",
        str(out),
    ]
    r = runner.invoke(main, [*args, "--workers", "1", "--quiet", "--eos-id", "0"])
    assert r.exit_code == 0, r.output
    assert "300 documents" in r.output
    r = runner.invoke(main, ["verify-tokens", str(out), "--quiet", "--samples", "5"])
    assert r.exit_code == 0 and "5 sampled documents match" in r.output, r.output
    r = runner.invoke(
        main,
        [
            "tokenize",
            str(tmp_path / "nope"),
            "--tokenizer",
            str(corpus["tokenizer"]),
            "--out",
            str(out),
        ],
    )
    assert r.exit_code == 2 and "mix directory not found" in r.output
    r = runner.invoke(main, ["verify-tokens", str(tmp_path)])
    assert r.exit_code == 2 and "no tokens.json" in r.output
    tok = tmp_path / "t.json"
    r = runner.invoke(
        main,
        [
            "train-tokenizer",
            str(corpus["mix"]),
            "--out",
            str(tok),
            "--vocab-size",
            "300",
            "--max-docs",
            "100",
        ],
    )
    assert r.exit_code == 0 and "from 100 documents" in r.output, r.output
    for cmd in ("tokenize", "verify-tokens", "train-tokenizer"):
        assert runner.invoke(main, [cmd, "--help"]).exit_code == 0


def test_train_tokenizer_is_deterministic(corpus, tmp_path):
    a = train_tokenizer([corpus["mix"]], tmp_path / "a.json", vocab_size=500, seed=1, max_docs=200)
    b = train_tokenizer([corpus["mix"]], tmp_path / "b.json", vocab_size=500, seed=1, max_docs=200)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert a["special_tokens"] == {"<|endoftext|>": 0, "<|pad|>": 1} and a["documents"] == 200
    assert a["sha256"] == b["sha256"] and a["vocab_size"] <= 500
    tok = load_tokenizer(tmp_path / "a.json")
    text = "naïve café 🙂 <|endoftext|> \t x"
    assert tok.decode(tok.encode(text, add_special_tokens=False).ids) == text
    with pytest.raises(MixerError, match="vocab_size"):
        train_tokenizer([corpus["mix"]], tmp_path / "c.json", vocab_size=100)


@needs_real
def test_gpt_neox_tokenizer_uint16(corpus, tmp_path):
    out = tmp_path / "neox"
    info = tokenize_mix(
        corpus["mix"], NEOX, out, workers=1, max_tokens_per_part=4000, progress=False
    )
    assert info["dtype"] == "uint16" and info["vocab_size"] == 50280
    assert (
        info["eos_id"] == 0 and info["eos_token"] == "<|endoftext|>"
    )  # this file's id, not OLMo 1's 50279
    tok = load_tokenizer(NEOX)
    by_id = {d["id"]: d["text"] for d in corpus["docs"]}
    for r in read_index(out)[:80]:
        mm = np.memmap(out / r["part"], dtype=np.uint16, mode="r")
        assert mm[r["start"] : r["end"]].tolist() == expected_ids(tok, by_id[r["id"]], 0)
    verify_tokens(out, samples=40, progress=False)
    olmo1 = tokenize_mix(
        corpus["mix"], NEOX, tmp_path / "olmo1", eos_id=50279, workers=1, progress=False
    )
    assert olmo1["eos_id"] == 50279 and "explicitly" in olmo1["eos_choice"]
    verify_tokens(tmp_path / "olmo1", samples=10, progress=False)


@needs_real
def test_dolma2_tokenizer_uint32(corpus, tmp_path):
    with pytest.raises(MixerError, match="uint16 cannot hold"):
        tokenize_mix(corpus["mix"], DOLMA2, tmp_path / "bad", dtype="uint16", progress=False)
    assert not (tmp_path / "bad").exists()
    out = tmp_path / "dolma2"
    info = tokenize_mix(corpus["mix"], DOLMA2, out, workers=1, progress=False)
    assert info["dtype"] == "uint32" and info["vocab_size"] == 100278 and info["eos_id"] == 100257
    assert sum(p["tokens"] for p in info["parts"]) * 4 == sum(
        f.stat().st_size for f in out.glob("*.npy")
    )
    tok = load_tokenizer(DOLMA2)
    instances = olmo_instances(out, "uint32", 32)
    assert instances and max(int(i.max()) for i in instances) < 100278
    by_id = {d["id"]: d["text"] for d in corpus["docs"]}
    for r in read_index(out)[:80]:
        mm = np.memmap(out / r["part"], dtype=np.uint32, mode="r")
        assert mm[r["start"] : r["end"]].tolist() == expected_ids(tok, by_id[r["id"]], 100257)
    verify_tokens(out, samples=40, progress=False)


def test_train_tokenizer_from_workdir_documents(tmp_path):
    docs = make_docs(60, seed=9)
    write_mix(tmp_path / "work" / "documents" / "web", docs[:30], parts=1)
    write_mix(tmp_path / "work" / "documents" / "math", docs[30:], parts=2)
    info = train_tokenizer(
        [tmp_path / "work"], tmp_path / "tok.json", vocab_size=300, max_bytes=2000
    )
    assert info["files"] == 3 and 0 < info["documents"] < 60
    (tmp_path / "empty").mkdir()
    with pytest.raises(MixerError, match="no part-"):
        train_tokenizer([tmp_path / "empty"], tmp_path / "x.json")
    with pytest.raises(MixerError, match="not found"):
        train_tokenizer([tmp_path / "missing"], tmp_path / "x.json")


def test_bad_mix_inputs_are_one_line_errors(corpus, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    pq.write_table(pa.table({"id": ["a"], "text": ["x"]}), bad / "part-00000.parquet")
    with pytest.raises(MixerError, match="missing column.*source"):
        tokenize_mix(bad, corpus["tokenizer"], tmp_path / "o", workers=1, progress=False)
    table = pa.table({"id": ["a", "b"], "text": ["x", None], "source": ["web", "web"]})
    pq.write_table(table, bad / "part-00000.parquet")
    with pytest.raises(MixerError, match="row 1: text is null"):
        tokenize_mix(bad, corpus["tokenizer"], tmp_path / "o", workers=1, progress=False)
    assert not (tmp_path / "o" / "tokens.json").exists()
    # The temporary folder stays for a resume; fixed input, a rerun finishes and removes it.
    pq.write_table(table.drop_null(), bad / "part-00000.parquet")
    info = tokenize_mix(bad, corpus["tokenizer"], tmp_path / "o", workers=1, progress=False)
    assert info["documents"] == 1
    assert not list((tmp_path / "o").glob(".tmp-*"))
    (bad / "part-00000.parquet").write_bytes(b"not parquet")
    with pytest.raises(MixerError, match="not a readable Parquet"):
        tokenize_mix(bad, corpus["tokenizer"], tmp_path / "o", workers=1, progress=False)


def test_verify_tokens_corrupt_files_are_one_line_errors(corpus, tmp_path):
    out = tmp_path / "tokens"
    tokenize_mix(corpus["mix"], corpus["tokenizer"], out, workers=1, progress=False)
    meta = out / "tokens.json"
    good_meta = meta.read_bytes()
    index = out / "part-00000.index.parquet"
    good_index = index.read_bytes()
    csv_gz = out / "part-00000.csv.gz"
    good_csv = csv_gz.read_bytes()
    runner = CliRunner()
    cases = [
        (meta, b"{not json", "not valid JSON"),
        (meta, b"[1, 2]", "expected a JSON object"),
        (meta, good_meta.replace(b'"parts": [', b'"parts": [7, '), r"parts\[0\]"),
        (index, good_index[: len(good_index) // 2], "unreadable index"),
        (index, b"PAR1garbage", "unreadable index"),
        (csv_gz, good_csv[:20], "part-00000.csv.gz"),
    ]
    for path, data, message in cases:
        path.write_bytes(data)
        r = runner.invoke(main, ["verify-tokens", str(out), "--quiet"])
        assert r.exit_code == 2, (message, r.output, r.exception)
        assert r.exception is None or isinstance(r.exception, SystemExit)
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert len(lines) == 1 and re.search(message, lines[0]), (message, r.output)
        assert "Traceback" not in r.output
        meta.write_bytes(good_meta)
        index.write_bytes(good_index)
        csv_gz.write_bytes(good_csv)
    assert runner.invoke(main, ["verify-tokens", str(out), "--quiet"]).exit_code == 0


def test_stages_resume_after_a_failed_task(corpus, tmp_path, monkeypatch):
    """tokenize_stages on the stage runner: a task that fails leaves finished tasks recorded;
    the rerun does only the rest and gives the bytes of a clean run. Files of ours that the
    new run does not write are removed, files we never wrote stay."""
    from mixer.executor import LocalExecutor
    from mixer.stage import RunContext, run_stages
    from mixer.tokenization import tokenize_stages

    kw = dict(seed=3, max_tokens_per_part=2000)
    clean = tokenize_mix(
        corpus["mix"], corpus["tokenizer"], tmp_path / "clean", workers=2, progress=False, **kw
    )
    out, wd = tmp_path / "t", tmp_path / "wd"
    stages = tokenize_stages(corpus["mix"], corpus["tokenizer"], out, workdir=wd, **kw)
    assert [s.name for s in stages] == ["tokenize.encode", "tokenize.write"]
    assert {s.group for s in stages} == {"tokenize"}
    out.mkdir()
    (out / "part-00099.npy").write_bytes(b"not ours")
    calls = []
    real = stages_module.write_bucket

    def flaky(config, index, bucket, tasks):
        calls.append(index)
        if index == 2 and calls.count(2) == 1:
            raise RuntimeError("killed")
        return real(config, index, bucket, tasks)

    monkeypatch.setattr(stages_module, "write_bucket", flaky)
    ctx = RunContext(wd, LocalExecutor(1), progress=False, echo=lambda m: None)
    with pytest.raises(RuntimeError, match="killed"):
        run_stages(stages, ctx)
    assert not (out / "tokens.json").exists()
    done = list(calls)
    run_stages(tokenize_stages(corpus["mix"], corpus["tokenizer"], out, workdir=wd, **kw), ctx)
    assert calls[len(done) :][0] == 2  # buckets 0 and 1 were not written again
    info = read_json(out / "tokens.json")
    assert {k: v for k, v in info.items() if k != "mix_dir"} == {
        k: v for k, v in clean.items() if k != "mix_dir"
    }
    for part in info["parts"]:
        for f in (part["file"], part["index"], part["metadata"]):
            assert (out / f).read_bytes() == (tmp_path / "clean" / f).read_bytes()
    assert (out / "part-00099.npy").read_bytes() == b"not ours"
    assert not list(out.glob(".tmp-*"))
    # Fewer parts: the parts our previous record named are removed; the foreign file stays.
    fewer = run_stages(
        tokenize_stages(
            corpus["mix"], corpus["tokenizer"], out, workdir=wd, seed=3, max_tokens_per_part=10**6
        ),
        ctx,
    )[-1]
    assert fewer["parts"] == 1
    assert sorted(p.name for p in out.glob("part-*")) == [
        "part-00000.csv.gz",
        "part-00000.index.parquet",
        "part-00000.npy",
        "part-00099.npy",
    ]


def test_engine_recorded_and_mismatch_stops_the_run(corpus, tmp_path, monkeypatch):
    from mixer.tokenization import engine as engine_module

    info = tokenize_mix(
        corpus["mix"], corpus["tokenizer"], tmp_path / "a", workers=1, progress=False
    )
    assert info["engine"]["name"] == "tiktoken" and info["engine"]["checked_against_hf"] >= 3
    hf = tokenize_mix(
        corpus["mix"], corpus["tokenizer"], tmp_path / "b", workers=1, progress=False, engine="hf"
    )
    assert hf["engine"]["name"] == "hf"
    for part in info["parts"]:
        assert (tmp_path / "a" / part["file"]).read_bytes() == (
            tmp_path / "b" / part["file"]
        ).read_bytes()
    # An engine that gets one document wrong: the sample check stops the run, naming it.
    real = engine_module.TiktokenEngine._one
    wrong = corpus["docs"][200]["text"]

    def broken(self, text):
        ids = real(self, text)
        return ids[::-1].copy() if text == wrong and len(ids) > 1 else ids

    monkeypatch.setattr(engine_module.TiktokenEngine, "_one", broken)
    engine_module._ENGINES.clear()
    r = CliRunner().invoke(
        main,
        [
            "tokenize",
            str(corpus["mix"]),
            "--tokenizer",
            str(corpus["tokenizer"]),
            "--out",
            str(tmp_path / "c"),
            "--workers",
            "1",
            "--quiet",
            "--no-shuffle",
        ],
    )
    assert r.exit_code == 2 and "document doc-0200" in r.output and "engine" in r.output, r.output
    engine_module._ENGINES.clear()


def test_tokens_json_names_paths_inside_the_workdir_relative_to_its_folder(tmp_path):
    """Inside the workdir: relative to tokens.json's folder (the same bytes in any workdir);
    outside it, or with no workdir (standalone `mixer tokenize`): absolute, as before."""
    from mixer.tokenization.metadata import resolve_stored, stored_path

    wd, out = tmp_path / "wd", tmp_path / "wd" / "tokens" / "m"
    assert stored_path(wd / "mixes" / "m", out, wd) == "../../mixes/m"
    assert stored_path(wd / "tokenizer.json", out, wd) == "../../tokenizer.json"
    shared = tmp_path / "shared" / "tok.json"
    assert stored_path(shared, out, wd) == str(shared)
    assert stored_path(wd / "mixes" / "m", out, None) == str(wd / "mixes" / "m")
    assert resolve_stored(out, "../../mixes/m").resolve() == (wd / "mixes" / "m").resolve()
    assert resolve_stored(out, str(shared)) == shared and resolve_stored(out, None) is None
