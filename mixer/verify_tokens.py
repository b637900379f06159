"""Check a tokens directory against its index, its tokens.json and (sampled) the mix text.

Structural checks cover every part: file size = tokens x itemsize, sha256, index offsets that
tile the part, EOS (and BOS) at every document boundary, every id below the vocabulary size,
totals per source. Sampled documents are decoded and compared with the mix text (after the
tokenizer's normalizer, e.g. NFC for GPT-NeoX). Any mismatch raises MixerError.
"""

from __future__ import annotations

import csv
import hashlib
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from mixer.errors import MixerError
from mixer.io import read_json
from mixer.schema import list_parts

SCAN_TOKENS = 1 << 24  # tokens checked at once for the id range


def _check_part(out: Path, part: dict, info: dict, dtype: np.dtype, problems: list) -> dict:
    """Check one part; returns its per-source totals and index table (for sampling)."""
    npy, idx = out / part["file"], out / part["index"]
    if not npy.is_file() or not idx.is_file():
        problems.append(f"{npy.name}: missing file or index")
        return {}
    size = npy.stat().st_size
    if size != part["tokens"] * dtype.itemsize:
        problems.append(
            f"{npy.name}: {size} bytes, expected {part['tokens']} tokens x {dtype.itemsize} bytes"
        )
        return {}
    try:
        index = pq.read_table(idx)
    except Exception as e:  # pyarrow raises several kinds for a damaged file
        problems.append(f"{idx.name}: unreadable index ({str(e).splitlines()[0]})")
        return {}
    missing = [c for c in ("id", "source", "start", "end") if c not in index.column_names]
    if missing:
        problems.append(f"{idx.name}: index lacks column(s) {', '.join(missing)}")
        return {}
    if index.num_rows != part["documents"]:
        problems.append(f"{idx.name}: {index.num_rows} rows, tokens.json says {part['documents']}")
    starts = index.column("start").to_numpy()
    ends = index.column("end").to_numpy()
    if len(starts) and (
        starts[0] != 0
        or ends[-1] != part["tokens"]
        or np.any(starts[1:] != ends[:-1])
        or np.any(ends <= starts)
    ):
        problems.append(f"{idx.name}: offsets do not tile the part (0..{part['tokens']})")
        return {}
    tokens = np.memmap(npy, dtype=dtype, mode="r") if size else np.zeros(0, dtype)
    sha = hashlib.sha256()
    top = -1
    for a in range(0, len(tokens), SCAN_TOKENS):
        chunk = np.asarray(tokens[a : a + SCAN_TOKENS])
        sha.update(chunk.tobytes())
        top = max(top, int(chunk.max()))
    if top >= info["vocab_size"]:
        problems.append(
            f"{npy.name}: id {top} is not below the vocabulary size {info['vocab_size']}"
        )
    if len(ends):
        bad = np.flatnonzero(tokens[ends - 1] != info["eos_id"])
        if len(bad):
            problems.append(
                f"{idx.name}: document {index.column('id')[int(bad[0])]} (row {bad[0]}) does not end "
                f"with EOS {info['eos_id']} ({len(bad)} such documents)"
            )
        if info.get("bos_id") is not None:
            bad = np.flatnonzero(tokens[starts] != info["bos_id"])
            if len(bad):
                problems.append(f"{idx.name}: {len(bad)} documents do not start with BOS")
    if part.get("sha256") and sha.hexdigest() != part["sha256"]:
        problems.append(f"{npy.name}: sha256 differs from tokens.json")
    if part.get("metadata"):
        _check_metadata(out / part["metadata"], index, problems)
    totals: dict[str, list[int]] = {}
    lengths = ends - starts
    sources = index.column("source").to_pylist()
    for s, n in zip(sources, lengths.tolist(), strict=True):
        t = totals.setdefault(s, [0, 0])
        t[0] += n
        t[1] += 1
    return totals


def _check_metadata(path: Path, index: pa.Table, problems: list) -> None:
    """part-NNNNN.csv.gz (OLMo-core's metadata) must hold start,end,id of every index row."""
    from mixer.tokenization.metadata import read_metadata

    try:
        rows = read_metadata(path)
    except (OSError, EOFError, UnicodeDecodeError, zlib.error, csv.Error) as e:
        problems.append(f"{path.name}: unreadable ({e})")
        return
    if len(rows) != index.num_rows:
        problems.append(f"{path.name}: {len(rows)} rows, the index has {index.num_rows}")
        return
    expected = zip(
        index.column("start").to_pylist(),
        index.column("end").to_pylist(),
        index.column("id").to_pylist(),
        strict=True,
    )
    for n, (row, (s, e, i)) in enumerate(zip(rows, expected, strict=True)):
        if len(row) != 5 or row[:3] != [str(s), str(e), i]:
            problems.append(f"{path.name}: row {n + 1} does not match the index ({row[:3]})")
            return


PART_SUFFIXES = (".npy", ".index.parquet", ".csv.gz")
_INT_KEYS = ("vocab_size", "eos_id", "total_tokens", "documents")


def _read_info(out: Path) -> dict:
    """tokens.json, checked enough that every later step can trust its shape."""
    path = out / "tokens.json"
    try:
        info = read_json(path)
    except ValueError as e:
        raise MixerError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
    except OSError as e:
        raise MixerError(f"{path}: unreadable ({e.strerror or e})") from None
    if info is None:
        raise MixerError(f"no tokens.json in {out}: not a finished tokens directory")
    if not isinstance(info, dict):
        raise MixerError(f"{path}: expected a JSON object")
    for key in ("dtype", "vocab_size", "eos_id", "parts", "total_tokens", "documents"):
        if key not in info:
            raise MixerError(f"{path}: missing key {key!r}")
    for key in _INT_KEYS:
        if isinstance(info[key], bool) or not isinstance(info[key], int) or info[key] < 0:
            raise MixerError(f"{path}: key {key!r} must be a non-negative integer")
    if not isinstance(info["parts"], list):
        raise MixerError(f"{path}: key 'parts' must be a list")
    for n, part in enumerate(info["parts"]):
        ok = isinstance(part, dict) and all(
            isinstance(part.get(k), str) and _safe_name(part[k]) for k in ("file", "index")
        )
        ok = ok and all(
            isinstance(part.get(k), int) and not isinstance(part.get(k), bool)
            for k in ("tokens", "documents")
        )
        if ok and "metadata" in part:
            ok = isinstance(part["metadata"], str) and _safe_name(part["metadata"])
        if not ok:
            raise MixerError(f"{path}: parts[{n}] is not a valid part entry")
    return info


def _safe_name(name: str) -> bool:
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in name.split("/"))


def _mix_texts(mix_dir: Path, ids: set[str]) -> dict[str, str]:
    """Text of each wanted id, read from the mix parts (only the row groups that hold them)."""
    found: dict[str, str] = {}
    wanted = pa.array(sorted(ids), pa.string())
    for part in list_parts(mix_dir):
        pf = pq.ParquetFile(part)
        for g in range(pf.metadata.num_row_groups):
            id_col = pf.read_row_group(g, columns=["id"]).column("id")
            rows = np.flatnonzero(pc.is_in(id_col, value_set=wanted).to_numpy(zero_copy_only=False))
            if not len(rows):
                continue
            table = pf.read_row_group(g, columns=["id", "text"]).take(pa.array(rows))
            for i, t in zip(
                table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True
            ):
                found.setdefault(i, t)
    return found


def verify_tokens(
    tokens_dir: str | Path,
    mix_dir: str | Path | None = None,
    samples: int = 32,
    tokenizer_path: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Verify every part of `tokens_dir`; decode `samples` documents against the mix text.

    Returns a summary; raises MixerError naming the first problem (and how many there were).
    """
    from mixer.io import file_sha256
    from mixer.tokenization import DTYPES, load_tokenizer, vocab_size_of
    from mixer.tokenization.metadata import resolve_stored

    out = Path(tokens_dir)
    info = _read_info(out)
    if info["dtype"] not in DTYPES:
        raise MixerError(f"{out / 'tokens.json'}: unknown dtype {info['dtype']!r}")
    dtype = DTYPES[info["dtype"]]
    problems: list[str] = []
    if info["vocab_size"] - 1 > np.iinfo(dtype).max:
        problems.append(f"dtype {info['dtype']} cannot hold a vocabulary of {info['vocab_size']}")

    listed = {p[k] for p in info["parts"] for k in ("file", "index", "metadata") if k in p}
    extra = sorted(
        str(p.relative_to(out))
        for p in [*out.glob("part-*"), *out.glob("*/part-*")]
        if str(p.relative_to(out)) not in listed and p.name.endswith(PART_SUFFIXES)
    )
    if extra:
        problems.append(f"{out}: {extra[0]} is not listed in tokens.json ({len(extra)} such files)")

    totals: dict[str, list[int]] = {}
    for part in tqdm(info["parts"], desc="verify", unit="part", disable=not progress):
        for s, (n_tok, n_doc) in _check_part(out, part, info, dtype, problems).items():
            t = totals.setdefault(s, [0, 0])
            t[0] += n_tok
            t[1] += n_doc
    tokens_total = sum(t[0] for t in totals.values())
    docs_total = sum(t[1] for t in totals.values())
    if not problems:
        if tokens_total != info["total_tokens"] or docs_total != info["documents"]:
            problems.append(
                f"index totals {tokens_total} tokens / {docs_total} documents differ from "
                f"tokens.json {info['total_tokens']} / {info['documents']}"
            )
        if (
            "tokens_per_source" in info
            and {s: t[0] for s, t in totals.items()} != info["tokens_per_source"]
        ):
            problems.append("tokens per source in the index differ from tokens.json")

    # Decode sampled documents and compare them with the mix.
    compared, note = 0, None
    # tokens.json names them relative to its folder (or absolute, when outside the workdir)
    tok_path = (
        Path(tokenizer_path)
        if tokenizer_path
        else resolve_stored(out, info.get("tokenizer", {}).get("path")) or Path("")
    )
    mix = Path(mix_dir) if mix_dir else resolve_stored(out, info.get("mix_dir")) or Path("")
    if samples > 0 and not problems and docs_total:
        if not tok_path.is_file():
            note = f"text check skipped: tokenizer {tok_path} not found (give --tokenizer)"
        elif not (mix_dir or info.get("mix_dir")) or not list_parts(mix):
            note = f"text check skipped: no mix parts in {mix} (give --mix)"
        else:
            tok = load_tokenizer(tok_path)
            sha = info.get("tokenizer", {}).get("sha256")
            if sha and file_sha256(tok_path) != sha:
                problems.append(f"tokenizer {tok_path} is not the one the tokens were made with")
            elif vocab_size_of(tok) != info["vocab_size"]:
                problems.append(f"tokenizer {tok_path} has another vocabulary size")
            else:
                mix_rows = sum(pq.ParquetFile(p).metadata.num_rows for p in list_parts(mix))
                if mix_rows != info["documents"]:
                    problems.append(
                        f"mix {mix} has {mix_rows} documents, tokens.json {info['documents']}"
                    )
                compared = _compare_samples(out, info, dtype, tok, mix, samples, seed, problems)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise MixerError(f"{out}: {problems[0]}{more}")
    return {
        "dir": str(out),
        "parts": len(info["parts"]),
        "documents": docs_total,
        "total_tokens": tokens_total,
        "samples_compared": compared,
        "note": note,
    }


def _compare_samples(
    out: Path, info: dict, dtype, tok, mix: Path, samples: int, seed: int, problems: list
) -> int:
    counts = [p["documents"] for p in info["parts"]]
    total = sum(counts)
    picks = np.sort(np.random.default_rng(seed).choice(total, min(samples, total), replace=False))
    first = np.cumsum([0, *counts])
    chosen = []  # (id, token ids without BOS/EOS)
    skip_bos = 1 if info.get("bos_id") is not None else 0
    for p, part in enumerate(info["parts"]):
        local = picks[(picks >= first[p]) & (picks < first[p + 1])] - first[p]
        if not len(local):
            continue
        index = pq.read_table(out / part["index"]).take(pa.array(local))
        tokens = np.memmap(out / part["file"], dtype=dtype, mode="r")
        for i, s, e in zip(
            index.column("id").to_pylist(),
            index.column("start").to_pylist(),
            index.column("end").to_pylist(),
            strict=True,
        ):
            chosen.append((i, tokens[s + skip_bos : e - 1].tolist()))
    texts = _mix_texts(mix, {i for i, _ in chosen})
    normalize = tok.normalizer.normalize_str if tok.normalizer is not None else (lambda t: t)
    for doc_id, ids in chosen:
        if doc_id not in texts:
            problems.append(f"document {doc_id} is not in the mix {mix}")
            continue
        decoded = tok.decode(ids, skip_special_tokens=False)
        if decoded != normalize(texts[doc_id]):
            problems.append(f"document {doc_id}: decoded tokens differ from the mix text")
    return len(chosen)
