"""The tokenize stage as two stages of the one stage interface (group "tokenize").

    MIX_DIR/part-*.parquet  (id, text, source [, src_file, src_line]; a document repeated k
                             times appears k times)
      -> OUT/part-NNNNN.npy            raw little-endian uint16/uint32, no .npy header
         OUT/part-NNNNN.csv.gz         start,end,id,src,loc per document (OLMo-core/dolma)
         OUT/part-NNNNN.index.parquet  id, source, start, end (token offsets inside that part)
         OUT/tokens.json               dtype, vocab size, eos/bos, engine, totals, seed, parts
      (per_source: OUT/<source dir>/part-NNNNN.* for each source; tokens.json stays in OUT)

1. `tokenize.encode`: one task per slice of a mix row group (sized by text bytes, never by the
   number of workers). It encodes the documents (tiktoken engine or HF tokenizers, checked
   against HF tokenizers on a sample), appends EOS (and BOS first when asked), gives every
   document a seeded 64-bit shuffle key (a bijective hash of the seed and the document's
   number in the mix; the document number itself without shuffle), and writes under
   OUT/.tmp-tokenize/: its tokens, offsets, (id, source, src_file, src_line), its documents'
   rows sorted by (source, key), and a histogram of tokens over 2^14 key bins. `finish` sums
   the histograms and cuts the key space of each source (or of all sources together) into
   buckets of at most `max_tokens_per_part` tokens (a bin larger than that is a bucket alone).
2. `tokenize.write`: one task per bucket. It reads the bucket's documents from every encode
   task (a binary search in each task's sorted keys), orders them by key and writes them in
   bounded chunks into one or more parts (a document never spans two parts). `finish` names
   the parts in bucket order (part-00000, part-00001, ... per folder), removes the part files
   that our previous tokens.json named and this run did not write, and writes tokens.json.

Every byte of the output is a function of the mix, the tokenizer, the settings and the seed:
not of the number of workers, the executor or the task split. Memory per task is bounded by
the task's slice or the bucket's size; the driver holds only the histograms (2^14 numbers per
source).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from mixer.errors import MixerError
from mixer.io import (
    TMP_PREFIX,
    atomic_path,
    config_hash,
    file_sha256,
    parquet_writer_atomic,
    read_json,
    write_json_atomic,
)
from mixer.schema import list_parts, part_name
from mixer.stage import Stage, Task
from mixer.tokenization.engine import (
    ENGINES,
    check_sample,
    choose_engine,
    load_engine,
    save_engine_tables,
)
from mixer.tokenization.metadata import (
    CSV_SUFFIX,
    MetadataWriter,
    source_dirname,
    stored_path,
)
from mixer.tokenization.tokenizer import (
    DEFAULT_EOS,
    DTYPES,
    VocabInfo,
    load_tokenizer,
    read_tokenizer_json,
    resolve_dtype,
    resolve_special,
    vocab_size_of,
)

FORMAT = "mixer-tokens/2"
DEFAULT_MAX_TOKENS_PER_PART = 50_000_000
DEFAULT_BATCH_SIZE = 256  # documents read and encoded at once
DEFAULT_CHECK_EVERY = 100  # 1 document in this many is also encoded by HF tokenizers
TASK_TEXT_BYTES = 32 << 20  # text per encode task (row groups are split to this size)
KEY_BITS = 14  # histogram bins of the shuffle key: 2^14 per source
PACK_CHUNK_TOKENS = 8_000_000  # tokens gathered at once while writing (bounds write memory)
INDEX_ROW_GROUP = 65_536  # rows per row group of part-NNNNN.index.parquet
TMP_NAME = f"{TMP_PREFIX}tokenize"
INPUT_COLUMNS = ("id", "text", "source")
OPTIONAL_COLUMNS = ("src_file", "src_line", "repeat")
INDEX_SCHEMA = pa.schema(
    [("id", pa.string()), ("source", pa.string()), ("start", pa.int64()), ("end", pa.int64())]
)
META_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("src_file", pa.string()),
        ("src_line", pa.int64()),
    ]
)
_U64 = np.uint64
_MASK = (1 << 64) - 1


@dataclass(frozen=True)
class TokenizeConfig:
    """Everything the tokenize stages need, resolved and checked on the driver."""

    mix_dir: str
    tokenizer_path: str
    out_dir: str
    tokenizer_sha256: str
    engine: str  # "tiktoken" | "hf" (resolved from auto)
    engine_reason: str
    vocab_size: int
    dtype: str  # "uint16" | "uint32"
    eos_id: int
    eos_token: str | None
    eos_choice: str
    bos_id: int | None
    bos_token: str | None
    bos_choice: str
    seed: int
    shuffle: bool
    per_source: bool
    max_tokens_per_part: int
    batch_size: int
    check_every: int


def make_config(
    mix_dir: str | Path,
    tokenizer_path: str | Path,
    out_dir: str | Path,
    dtype: str = "auto",
    seed: int = 0,
    max_tokens_per_part: int = DEFAULT_MAX_TOKENS_PER_PART,
    eos: str | None = None,
    eos_id: int | None = None,
    bos: str | None = None,
    bos_id: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shuffle: bool = True,
    per_source: bool = False,
    engine: str = "auto",
    check_every: int = DEFAULT_CHECK_EVERY,
) -> TokenizeConfig:
    """Check every setting before any work (a bad value is a one-line MixerError)."""
    from mixer.remote_workdir import check_local_workdir

    check_local_workdir(out_dir, "tokenize")  # `mixer run --workdir URL` mirrors it instead
    for name, value, least in (
        ("max_tokens_per_part", max_tokens_per_part, 1),
        ("batch_size", batch_size, 1),
        ("check_every", check_every, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise MixerError(f"{name} must be an integer >= {least}, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 1 << 63:
        raise MixerError(f"seed must be an integer in 0..2^63-1, got {seed!r}")
    if engine not in ENGINES:
        raise MixerError(f"engine {engine!r}: use {', '.join(ENGINES)}")
    mix = Path(mix_dir).resolve()  # may not exist yet: the encode stage lists its parts
    tokenizer_path = Path(tokenizer_path).resolve()
    data = read_tokenizer_json(tokenizer_path)
    engine_name, why = choose_engine(tokenizer_path, engine, data)
    try:  # the ids of named tokens, from the JSON (no HF tokenizer built for a fast engine)
        tok = VocabInfo(data) if engine_name != "hf" else load_tokenizer(tokenizer_path)
    except ValueError:
        tok = load_tokenizer(tokenizer_path)
    vocab_size = vocab_size_of(tok)
    np_dtype = resolve_dtype(dtype, vocab_size)
    eos_id, eos, eos_how = resolve_special(tok, vocab_size, eos, eos_id, "eos", DEFAULT_EOS)
    bos_id, bos, bos_how = resolve_special(tok, vocab_size, bos, bos_id, "bos", None)
    return TokenizeConfig(
        mix_dir=str(mix),
        tokenizer_path=str(tokenizer_path),
        out_dir=str(Path(out_dir).resolve()),
        tokenizer_sha256=file_sha256(tokenizer_path),
        engine=engine_name,
        engine_reason=why,
        vocab_size=vocab_size,
        dtype="uint16" if np_dtype == DTYPES["uint16"] else "uint32",
        eos_id=eos_id,
        eos_token=eos,
        eos_choice=eos_how,
        bos_id=bos_id,
        bos_token=bos,
        bos_choice=bos_how,
        seed=int(seed),
        shuffle=bool(shuffle),
        per_source=bool(per_source),
        max_tokens_per_part=int(max_tokens_per_part),
        batch_size=int(batch_size),
        check_every=int(check_every),
    )


# ---------------------------------------------------------------------------- shuffle keys


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a bijection of uint64 (distinct inputs, distinct keys)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> _U64(30))
        x = x * _U64(0xBF58476D1CE4E5B9)
        x = x ^ (x >> _U64(27))
        x = x * _U64(0x94D049BB133111EB)
        return x ^ (x >> _U64(31))


def shuffle_keys(doc_numbers: np.ndarray, seed: int, shuffle: bool, n_docs: int) -> np.ndarray:
    """The sort key of each document: a seeded hash of its number in the mix, or (no shuffle)
    its number spread evenly over the key space (so the key bins stay balanced)."""
    numbers = doc_numbers.astype(_U64)
    if not shuffle:
        return numbers * _U64(max(1, ((1 << 64) - 1) // max(1, n_docs)))
    salt = int(_splitmix64(np.array([seed], _U64))[0])
    with np.errstate(over="ignore"):
        return _splitmix64(numbers * _U64(0x9E3779B97F4A7C15) + _U64(salt))


# ---------------------------------------------------------------------------- the encode stage


def _tmp(config: TokenizeConfig) -> Path:
    return Path(config.out_dir) / TMP_NAME


def _attempt(config: TokenizeConfig) -> str:
    """The current attempt's nonce (records of a removed temporary folder never match)."""
    info = read_json(_tmp(config) / "attempt.json") or {}
    return info.get("nonce", "")


def _encode_paths(tmp: Path, key: str) -> dict[str, Path]:
    stem = tmp / "encode" / key
    return {
        "tokens": stem.with_suffix(".tokens"),
        "offsets": stem.with_suffix(".offsets.npy"),
        "meta": stem.with_suffix(".meta.arrow"),
        "keys": stem.with_suffix(".keys.npy"),  # keys sorted by (source, key)
        "rows": stem.with_suffix(".rows.npy"),  # the rows in that order
        "sources": stem.with_suffix(".sources.json"),  # source -> [first, end) in that order
        "hist": stem.with_suffix(".hist.npy"),  # tokens per (source, key bin)
        "check": stem.with_suffix(".check.parquet"),  # sampled (id, text, ids) for HF
    }


def _mix_fingerprint(mix_dir: str) -> list:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in list_parts(mix_dir)]


class _TokenizeStage(Stage):
    """What both tokenize stages share: they read the mix and the tokenizer, and count as done
    when the whole group is (tokens.json and every file it names)."""

    group = "tokenize"

    def __init__(self, workdir: str | Path, config: TokenizeConfig):
        super().__init__(workdir, config)

    def input_fingerprint(self):
        c = self.config
        return {"mix": _mix_fingerprint(c.mix_dir), "tokenizer": c.tokenizer_sha256}

    def outputs(self) -> list[Path]:
        return _final_outputs(self.config)


class EncodeStage(_TokenizeStage):
    name = "tokenize.encode"
    progress_unit = "B"  # of text

    def setup(self, ctx) -> None:
        self._echo = ctx.echo  # the driver's; not sent to workers (see __getstate__)

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if k != "_echo"}

    def tasks(self) -> list[Task]:
        """Runs only when the stage runs: start (or resume) an attempt, list the slices."""
        c = self.config
        if not Path(c.mix_dir).is_dir():
            raise MixerError(f"mix directory not found: {c.mix_dir}")
        parts = list_parts(c.mix_dir)
        if not parts:
            raise MixerError(f"no part-*.parquet in {c.mix_dir}: run `mixer mix` first")
        tmp = _tmp(c)
        want = config_hash({"config": asdict(c), "inputs": self.input_fingerprint()})
        info = read_json(tmp / "attempt.json") or {}
        if info.get("inputs") != want:  # another attempt's files: start a fresh one
            shutil.rmtree(tmp, ignore_errors=True)
            (tmp / "encode").mkdir(parents=True)
            (tmp / "write").mkdir()
            write_json_atomic(tmp / "attempt.json", {"inputs": want, "nonce": secrets.token_hex(8)})
        if c.engine == "tiktoken" and not (tmp / "engine.npz").is_file():
            save_engine_tables(c.tokenizer_path, tmp / "engine.npz")  # built once, not per worker
        nonce = _attempt(c)
        check = (
            f"; ids checked against HF tokenizers on 1 document in {c.check_every}"
            if c.engine != "hf" and c.check_every
            else ""
        )
        getattr(self, "_echo", print)(f"[tokenize] engine: {c.engine} ({c.engine_reason}{check})")
        slices, first = [], 0
        for part in parts:
            try:
                meta = pq.ParquetFile(part).metadata
            except Exception as e:
                raise MixerError(f"{part}: not a readable Parquet file ({e})") from e
            names = meta.schema.names
            missing = [col for col in INPUT_COLUMNS if col not in names]
            if missing:
                raise MixerError(f"{part}: missing column(s) {', '.join(missing)}")
            text = names.index("text")
            st = part.stat()
            for g in range(meta.num_row_groups):
                rg = meta.row_group(g)
                rows, size = rg.num_rows, rg.column(text).total_uncompressed_size
                pieces = max(1, min(rows, -(-size // TASK_TEXT_BYTES)))
                bounds = np.linspace(0, rows, pieces + 1).round().astype(int).tolist()
                for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                    if b > a:
                        slices.append(
                            (part, st, g, a, b, first + a, size * (b - a) // max(1, rows))
                        )
                first += rows
        n_docs = first
        tasks = []
        for part, st, g, a, b, doc0, est in slices:
            key = f"{part.stem}-g{g:05d}-r{a:09d}"
            args = {
                "part": str(part),
                "row_group": g,
                "start": a,
                "stop": b,
                "first_doc": doc0,
                "n_docs": n_docs,
                "key": key,
            }
            fp = [part.name, st.st_size, st.st_mtime_ns, g, a, b, doc0, n_docs, nonce]
            tasks.append(Task(key, args, fp, weight=max(1, est)))
        return tasks

    def run_task(self, task: Task) -> dict:
        return encode_slice(self.config, task.args)

    def finish(self, results: list) -> dict:
        check_against_hf(self.config, [r["key"] for r in results])
        return plan_buckets(self.config, results)


def _read_slice(path: str, row_group: int, start: int, stop: int, batch_size: int):
    """Record batches of rows [start, stop) of one row group (bounded memory)."""
    pf = pq.ParquetFile(path)
    names = pf.schema_arrow.names
    columns = [*INPUT_COLUMNS, *(col for col in OPTIONAL_COLUMNS if col in names)]
    row = 0
    for batch in pf.iter_batches(batch_size=batch_size, row_groups=[row_group], columns=columns):
        a, b = max(start - row, 0), min(stop - row, batch.num_rows)
        first = row
        row += batch.num_rows
        if b > a:
            yield first + a, batch.slice(a, b - a)
        if row >= stop:
            break


def _meta_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    names, n = batch.schema.names, batch.num_rows

    def col(name, typ):
        return batch.column(name).cast(typ) if name in names else pa.nulls(n, typ)

    return pa.record_batch(
        [
            col("id", pa.string()),
            col("source", pa.string()),
            col("src_file", pa.string()),
            col("src_line", pa.int64()),
        ],
        schema=META_SCHEMA,
    )


def encode_slice(config: TokenizeConfig, args: dict) -> dict:
    """Encode one slice of a mix row group and write its files under the temporary folder."""
    c = config
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # parallelism is the workers'
    engine = load_engine(c.tokenizer_path, c.engine, _tmp(c) / "engine.npz")
    dtype = DTYPES[c.dtype]
    paths = _encode_paths(_tmp(c), args["key"])
    pre = np.array([c.bos_id] if c.bos_id is not None else [], np.uint32)
    eos = np.array([c.eos_id], np.uint32)
    lengths_all, sources_all, checks = [], [], []
    with (
        atomic_path(paths["tokens"]) as tokens_tmp,
        open(tokens_tmp, "wb") as out,
        atomic_path(paths["meta"]) as meta_tmp,
        pa.OSFile(str(meta_tmp), "wb") as meta_file,
        ipc.new_file(meta_file, META_SCHEMA) as meta,
    ):
        previous = None  # (id, text, ids) of the row before: a repeated copy is not re-encoded
        for first_row, batch in _read_slice(
            args["part"], args["row_group"], args["start"], args["stop"], c.batch_size
        ):
            for col in INPUT_COLUMNS:
                column = batch.column(col)
                if column.null_count:
                    pos = first_row + column.is_null().to_pylist().index(True)
                    raise MixerError(
                        f"{args['part']}: row group {args['row_group']}, row {pos}: {col} is null"
                    )
            texts = batch.column("text").to_pylist()
            ids = batch.column("id").cast(pa.string()).to_pylist()
            # The mix writes the k copies of a repeated document next to each other: encode once.
            before = [(previous[0], previous[1]) if previous else None]
            before += list(zip(ids[:-1], texts[:-1], strict=True))
            todo = [i for i in range(len(texts)) if before[i] != (ids[i], texts[i])]
            encoded = engine.encode([texts[i] for i in todo])
            per_doc: list = [None] * len(texts)
            for i, e in zip(todo, encoded, strict=True):
                per_doc[i] = e
            for i in range(len(texts)):
                if per_doc[i] is None:  # a copy of the row before
                    per_doc[i] = per_doc[i - 1] if i > 0 else previous[2]
            previous = (ids[-1], texts[-1], per_doc[-1])
            if c.check_every and engine.name != "hf":
                # A sample for the driver to encode again with HF tokenizers (finish).
                doc0 = args["first_doc"] + first_row - args["start"]
                for i in todo:
                    if (doc0 + i) % c.check_every == 0:
                        checks.append((ids[i], texts[i], per_doc[i]))
            pieces = []
            for e in per_doc:
                pieces += [pre, e, eos]
            flat = np.concatenate(pieces) if pieces else np.zeros(0, np.uint32)
            if len(flat) and int(flat.max()) >= c.vocab_size:  # never a silent wrap-around
                raise MixerError(f"{c.tokenizer_path}: the engine produced an id >= vocab size")
            out.write(flat.astype(dtype, copy=False).tobytes())
            lengths_all.append(
                np.fromiter((len(e) for e in per_doc), np.int64, len(per_doc)) + len(pre) + 1
            )
            sources_all += batch.column("source").cast(pa.string()).to_pylist()
            meta.write_batch(_meta_batch(batch))
    lengths = np.concatenate(lengths_all) if lengths_all else np.zeros(0, np.int64)
    offsets = np.zeros(len(lengths) + 1, np.int64)
    np.cumsum(lengths, out=offsets[1:])
    with atomic_path(paths["offsets"]) as p, open(p, "wb") as f:
        np.save(f, offsets)

    # Shuffle keys, sorted by (source, key); a histogram of tokens over key bins per source.
    numbers = np.arange(args["first_doc"], args["first_doc"] + len(lengths), dtype=np.int64)
    keys = shuffle_keys(numbers, c.seed, c.shuffle, args["n_docs"])
    if c.per_source:
        names = sorted(set(sources_all))
        position = {s: i for i, s in enumerate(names)}
        code = np.fromiter((position[s] for s in sources_all), np.int64, len(sources_all))
    else:
        names = [""]
        code = np.zeros(len(keys), np.int64)
    order = np.lexsort((keys, code))
    # Tokens per (source, key bin), only the bins that hold documents: rows (code, bin, tokens).
    cell = code * (1 << KEY_BITS) + (keys >> _U64(64 - KEY_BITS)).astype(np.int64)
    cells, inverse = np.unique(cell, return_inverse=True)
    hist = (
        np.stack(
            [
                cells >> KEY_BITS,
                cells & ((1 << KEY_BITS) - 1),
                np.bincount(inverse, lengths).astype(np.int64),
            ],
            axis=1,
        )
        if len(cells)
        else np.zeros((0, 3), np.int64)
    )
    bounds = np.searchsorted(code[order], np.arange(len(names) + 1))
    for name, arr in (("keys", keys[order]), ("rows", order.astype(np.int64)), ("hist", hist)):
        with atomic_path(paths[name]) as p, open(p, "wb") as f:
            np.save(f, arr)
    write_json_atomic(
        paths["sources"],
        {s: [int(bounds[i]), int(bounds[i + 1])] for i, s in enumerate(names)},
    )
    with atomic_path(paths["check"]) as p:
        pq.write_table(
            pa.table(
                {
                    "id": pa.array([x[0] for x in checks], pa.string()),
                    "text": pa.array([x[1] for x in checks], pa.string()),
                    "ids": pa.array([x[2] for x in checks], pa.list_(pa.uint32())),
                }
            ),
            p,
        )
    tokens_per_source: dict[str, int] = {}
    docs_per_source: dict[str, int] = {}
    for s, n in zip(sources_all, lengths.tolist(), strict=True):
        tokens_per_source[s] = tokens_per_source.get(s, 0) + n
        docs_per_source[s] = docs_per_source.get(s, 0) + 1
    return {
        "key": args["key"],
        "documents": len(lengths),
        "tokens": int(offsets[-1]),
        "checked": len(checks),
        "engine": engine.name,
        "tokens_per_source": tokens_per_source,
        "documents_per_source": docs_per_source,
    }


def check_against_hf(config: TokenizeConfig, keys: list[str]) -> None:
    """Encode the tasks' sampled documents with HF tokenizers (the reference) on the driver; a
    difference stops the run before anything is written, naming the document."""
    if config.engine == "hf" or not config.check_every:
        return
    tmp = _tmp(config)
    tables = [pq.read_table(_encode_paths(tmp, k)["check"]) for k in keys]
    table = pa.concat_tables(tables) if tables else None
    if table is None or not table.num_rows:
        return
    got = [np.asarray(x, np.uint32) for x in table.column("ids").to_pylist()]
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    check_sample(
        config.engine,
        config.tokenizer_path,
        table.column("text").to_pylist(),
        got,
        table.column("id").to_pylist(),
    )


def plan_buckets(config: TokenizeConfig, results: list[dict]) -> dict:
    """Sum the histograms; cut each source's (or the one mixed) key space into buckets of at
    most max_tokens_per_part tokens. Written to the temporary folder for the write stage."""
    c = config
    tmp = _tmp(c)
    names: dict[str, int] = {}
    cells, counts = [], []
    for r in results:
        paths = _encode_paths(tmp, r["key"])
        hist = np.load(paths["hist"])
        local = [names.setdefault(s, len(names)) for s in read_json(paths["sources"])]
        if len(hist):
            cells.append(np.array(local, np.int64)[hist[:, 0]] * (1 << KEY_BITS) + hist[:, 1])
            counts.append(hist[:, 2])
    summed: dict[int, tuple] = {}
    if cells:
        cell, inverse = np.unique(np.concatenate(cells), return_inverse=True)
        tokens = np.bincount(inverse, np.concatenate(counts)).astype(np.int64)
        code = cell >> KEY_BITS
        for i in np.unique(code).tolist():
            sel = code == i
            summed[i] = ((cell[sel] & ((1 << KEY_BITS) - 1)).tolist(), tokens[sel].tolist())
    buckets = []
    for s in sorted(names):
        bins, tokens = summed.get(names[s], ([], []))
        lo, acc = 0, 0
        for b, t in zip(bins, tokens, strict=True):
            if acc and acc + t > c.max_tokens_per_part:
                buckets.append({"source": s, "lo": lo, "hi": b, "tokens": acc})
                lo, acc = b, 0
            acc += t
        if acc:
            buckets.append({"source": s, "lo": lo, "hi": 1 << KEY_BITS, "tokens": acc})
    tokens_per_source: dict[str, int] = {}
    docs_per_source: dict[str, int] = {}
    for r in results:
        for s, n in r["tokens_per_source"].items():
            tokens_per_source[s] = tokens_per_source.get(s, 0) + n
        for s, n in r["documents_per_source"].items():
            docs_per_source[s] = docs_per_source.get(s, 0) + n
    plan = {
        "tasks": [r["key"] for r in results],
        "buckets": buckets,
        "documents": sum(r["documents"] for r in results),
        "total_tokens": sum(r["tokens"] for r in results),
        "checked": sum(r["checked"] for r in results),
        "tokens_per_source": dict(sorted(tokens_per_source.items())),
        "documents_per_source": dict(sorted(docs_per_source.items())),
    }
    write_json_atomic(tmp / "plan.json", plan)
    return {k: plan[k] for k in ("documents", "total_tokens", "checked")} | {
        "buckets": len(buckets)
    }


# ---------------------------------------------------------------------------- the write stage


class _PartWriter:
    """Writes one part's .npy, .index.parquet and .csv.gz atomically; tracks its sha256."""

    def __init__(self, stem: Path, dtype: np.dtype):
        self.stem, self.dtype = stem, dtype
        self.tokens = self.documents = 0
        self.sha = hashlib.sha256()
        self._npy_ctx = atomic_path(stem.with_suffix(".npy"))
        self._npy = open(self._npy_ctx.__enter__(), "wb")
        self._idx_ctx = parquet_writer_atomic(stem.with_suffix(".index.parquet"), INDEX_SCHEMA)
        self._idx = self._idx_ctx.__enter__()
        self._csv_ctx = atomic_path(stem.with_suffix(CSV_SUFFIX))
        self._csv_raw = open(self._csv_ctx.__enter__(), "wb")
        self._csv = MetadataWriter(self._csv_raw)
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def write(self, tokens: np.ndarray, meta: pa.Table, lengths: np.ndarray) -> None:
        data = tokens.astype(self.dtype, copy=False).tobytes()
        self._npy.write(data)
        self.sha.update(data)
        ends = self.tokens + np.cumsum(lengths)
        starts = ends - lengths
        self._csv.write(
            starts.tolist(),
            ends.tolist(),
            meta.column("id").to_pylist(),
            [s or "" for s in meta.column("src_file").to_pylist()],
            meta.column("src_line").to_pylist(),
        )
        self._pending.append(
            pa.table(
                {
                    "id": meta.column("id"),
                    "source": meta.column("source"),
                    "start": pa.array(starts, pa.int64()),
                    "end": pa.array(ends, pa.int64()),
                },
                schema=INDEX_SCHEMA,
            )
        )
        self._pending_rows += len(lengths)
        self.tokens += int(lengths.sum())
        self.documents += len(lengths)
        if self._pending_rows >= INDEX_ROW_GROUP:
            self._flush_index(final=False)

    def _flush_index(self, final: bool) -> None:
        """Full row groups only (the rest too when final): the index bytes never depend on
        the chunking of the writes."""
        table = pa.concat_tables(self._pending) if self._pending else INDEX_SCHEMA.empty_table()
        full = table.num_rows if final else table.num_rows // INDEX_ROW_GROUP * INDEX_ROW_GROUP
        for a in range(0, full, INDEX_ROW_GROUP):
            self._idx.write_table(table.slice(a, min(INDEX_ROW_GROUP, full - a)).combine_chunks())
        rest = table.slice(full)
        self._pending, self._pending_rows = [rest], rest.num_rows

    def close(self) -> dict:
        self._flush_index(final=True)
        self._npy.close()
        self._npy_ctx.__exit__(None, None, None)
        self._idx_ctx.__exit__(None, None, None)
        self._csv.close()
        self._csv_raw.close()
        self._csv_ctx.__exit__(None, None, None)
        return {"tokens": self.tokens, "documents": self.documents, "sha256": self.sha.hexdigest()}

    def abort(self, exc: BaseException) -> None:
        self._npy.close()
        self._csv_raw.close()
        for ctx in (self._npy_ctx, self._idx_ctx, self._csv_ctx):
            try:
                ctx.__exit__(type(exc), exc, None)
            except BaseException:  # the context re-raises exc after cleaning up
                pass


def _bucket_docs(tmp: Path, tasks: list[str], bucket: dict, per_source: bool) -> tuple:
    """(task number, row, key) of every document in a bucket, ordered by key."""
    lo = _U64(bucket["lo"] << (64 - KEY_BITS))
    top = bucket["hi"] >= 1 << KEY_BITS
    hi = None if top else _U64(bucket["hi"] << (64 - KEY_BITS))
    found_task, found_row, found_key = [], [], []
    source = bucket["source"] if per_source else ""
    for t, key in enumerate(tasks):
        paths = _encode_paths(tmp, key)
        span = read_json(paths["sources"]).get(source)
        if not span or span[0] == span[1]:
            continue
        keys = np.load(paths["keys"], mmap_mode="r")[span[0] : span[1]]
        a = int(np.searchsorted(keys, lo, "left"))
        b = len(keys) if top else int(np.searchsorted(keys, hi, "left"))
        if b > a:
            rows = np.load(paths["rows"], mmap_mode="r")[span[0] + a : span[0] + b]
            found_task.append(np.full(b - a, t, np.int64))
            found_row.append(np.asarray(rows))
            found_key.append(np.asarray(keys[a:b]))
    if not found_key:
        z = np.zeros(0, np.int64)
        return z, z, np.zeros(0, _U64)
    task_of, rows, keys = (np.concatenate(x) for x in (found_task, found_row, found_key))
    order = np.argsort(keys, kind="stable")  # keys are distinct: a bijective hash
    return task_of[order], rows[order], keys[order]


class _TaskFiles:
    """Memory maps of the encode tasks' tokens, offsets and metadata, opened once per bucket."""

    def __init__(self, tmp: Path, tasks: list[str], dtype: np.dtype):
        self.tmp, self.tasks, self.dtype, self.open = tmp, tasks, dtype, {}

    def get(self, t: int) -> tuple:
        if t not in self.open:
            paths = _encode_paths(self.tmp, self.tasks[t])
            size = paths["tokens"].stat().st_size
            tokens = (
                np.memmap(paths["tokens"], dtype=self.dtype, mode="r")
                if size
                else np.zeros(0, self.dtype)
            )
            offsets = np.load(paths["offsets"], mmap_mode="r")
            meta = ipc.open_file(pa.memory_map(str(paths["meta"]))).read_all()
            self.open[t] = (tokens, offsets, meta)
        return self.open[t]


def write_bucket(config: TokenizeConfig, index: int, bucket: dict, tasks: list[str]) -> dict:
    """Write one bucket's documents, in key order, into temporary parts of bounded size."""
    c = config
    tmp, dtype = _tmp(c), DTYPES[c.dtype]
    task_of, rows, _ = _bucket_docs(tmp, tasks, bucket, c.per_source)
    files = _TaskFiles(tmp, tasks, dtype)
    starts = np.empty(len(rows), np.int64)
    lengths = np.empty(len(rows), np.int64)
    for t, sel in _by_task(task_of):
        offsets = files.get(t)[1]
        r = rows[sel]
        starts[sel] = offsets[r]
        lengths[sel] = offsets[r + 1] - offsets[r]
    parts: list[dict] = []
    writer: _PartWriter | None = None
    stem = tmp / "write" / f"bucket-{index:06d}"
    try:
        pos = 0
        while pos < len(rows):
            # A chunk of documents with at most PACK_CHUNK_TOKENS tokens (at least one).
            ends = np.cumsum(lengths[pos:])
            n = max(1, int(np.searchsorted(ends, PACK_CHUNK_TOKENS, "right")))
            sl = slice(pos, pos + n)
            tokens, meta = _gather(files, task_of[sl], rows[sl], starts[sl], lengths[sl])
            done = 0
            while done < n:
                if writer is None:
                    writer = _PartWriter(stem.with_name(f"{stem.name}-{len(parts):04d}"), dtype)
                room = c.max_tokens_per_part - writer.tokens
                fits = int(np.searchsorted(np.cumsum(lengths[pos + done : pos + n]), room, "right"))
                if fits == 0 and writer.tokens == 0:
                    fits = 1  # a document longer than a part gets a part of its own
                if fits == 0:
                    parts.append(writer.close())
                    writer = None
                    continue
                a = int(lengths[pos : pos + done].sum())
                b = a + int(lengths[pos + done : pos + done + fits].sum())
                writer.write(
                    tokens[a:b], meta.slice(done, fits), lengths[pos + done : pos + done + fits]
                )
                done += fits
            pos += n
        if writer is not None:
            parts.append(writer.close())
            writer = None
    except BaseException as e:
        if writer is not None:
            writer.abort(e)
        raise
    return {"index": index, "source": bucket["source"], "parts": parts}


def _by_task(task_of: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(task, positions) for each task that the documents come from."""
    order = np.argsort(task_of, kind="stable")
    cuts = np.flatnonzero(np.diff(task_of[order])) + 1
    return [(int(task_of[g[0]]), g) for g in np.split(order, cuts) if len(g)]


def _gather(files: _TaskFiles, task_of, rows, starts, lengths) -> tuple:
    """Tokens and metadata of the documents (task, row), in the order given."""
    dest = np.zeros(len(rows), np.int64)
    np.cumsum(lengths[:-1], out=dest[1:])
    out = np.empty(int(lengths.sum()), files.dtype)
    metas, positions = [], []
    for t, sel in _by_task(task_of):
        tokens, _, meta = files.get(t)
        for d, s, n in zip(
            dest[sel].tolist(), starts[sel].tolist(), lengths[sel].tolist(), strict=True
        ):
            out[d : d + n] = tokens[s : s + n]
        metas.append(meta.take(pa.array(rows[sel])))
        positions.append(sel)
    if not metas:
        return out, META_SCHEMA.empty_table()
    order = np.concatenate(positions)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return out, pa.concat_tables(metas).take(pa.array(inverse))


def _part_files(part: dict) -> list[str]:
    return [part[k] for k in ("file", "index", "metadata") if part.get(k)]


def _final_outputs(config: TokenizeConfig) -> list[Path]:
    """tokens.json and every file it names, when it is ours and readable."""
    out = Path(config.out_dir)
    info = _read_info(out)
    if info is None:
        return [out / "tokens.json"]
    files = [out / f for p in info.get("parts", []) for f in _part_files(p)]
    return [out / "tokens.json", *files]


def _read_info(out: Path) -> dict | None:
    try:
        info = read_json(out / "tokens.json")
    except ValueError:
        return None
    if not isinstance(info, dict) or not isinstance(info.get("parts"), list):
        return None
    if not all(isinstance(p, dict) for p in info["parts"]):
        return None
    return info


def _safe_name(name: str) -> bool:
    parts = name.split("/")
    return not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


class WriteStage(_TokenizeStage):
    name = "tokenize.write"
    progress_unit = "tok"

    def _plan(self) -> dict:
        plan = read_json(_tmp(self.config) / "plan.json")
        if not plan:
            raise MixerError(
                f"{_tmp(self.config)}: the encode pass's plan is missing; rerun with "
                "--force tokenize"
            )
        return plan

    def tasks(self) -> list[Task]:
        plan, nonce = self._plan(), _attempt(self.config)
        return [
            Task(
                f"bucket-{i:06d}",
                (i, b, plan["tasks"]),
                [nonce, i, b, len(plan["tasks"])],
                weight=b["tokens"],
            )
            for i, b in enumerate(plan["buckets"])
        ]

    def run_task(self, task: Task) -> dict:
        return write_bucket(self.config, *task.args)

    def finish(self, results: list) -> dict:
        return publish(self.config, self._plan(), results, root=self.workdir)


def publish(config: TokenizeConfig, plan: dict, results: list[dict], root=None) -> dict:
    """Name the parts in bucket order, remove what our previous tokens.json named and this
    run did not write, write tokens.json, remove the temporary folder. The mix and the
    tokenizer are named relative to tokens.json's folder when they lie inside `root` (the
    workdir), so the same run in another workdir writes the same bytes."""
    c = config
    out, tmp = Path(c.out_dir), _tmp(c)
    # The previous record is kept in the temporary folder until the end, so a publish that is
    # interrupted still knows what the run before wrote.
    previous = read_json(tmp / "previous.json")
    if previous is None:
        old = _read_info(out)
        previous = {"parts": old["parts"] if old else []}
        write_json_atomic(tmp / "previous.json", previous)
    (out / "tokens.json").unlink(missing_ok=True)
    parts, source_dirs, counters = [], {}, {}
    for r in results:
        source = r["source"]
        sub = source_dirname(source) if c.per_source else ""
        if c.per_source:
            source_dirs[source] = sub
        for k, p in enumerate(r["parts"]):
            n = counters.get(sub, 0)
            counters[sub] = n + 1
            prefix = f"{sub}/" if sub else ""
            entry = {
                "file": prefix + part_name(n, ".npy"),
                "index": prefix + part_name(n, ".index.parquet"),
                "metadata": prefix + part_name(n, CSV_SUFFIX),
                **({"source": source} if c.per_source else {}),
                **p,
            }
            stem = tmp / "write" / f"bucket-{r['index']:06d}-{k:04d}"
            for suffix, key in (
                (".npy", "file"),
                (".index.parquet", "index"),
                (CSV_SUFFIX, "metadata"),
            ):
                src, dst = stem.with_suffix(suffix), out / entry[key]
                if src.exists():
                    dst.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(src, dst)
                elif not dst.exists():  # neither: the temporary files are gone
                    raise MixerError(f"{src} is missing: rerun with --force tokenize")
            parts.append(entry)
    keep = {f for p in parts for f in _part_files(p)}
    for part in previous.get("parts", []):
        for name in _part_files(part):
            if isinstance(name, str) and name not in keep and _safe_name(name):
                (out / name).unlink(missing_ok=True)
                parent = (out / name).parent
                if parent != out and parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
    info = {
        "format": FORMAT,
        "dtype": c.dtype,
        "byte_order": "little",
        "header": None,
        "vocab_size": c.vocab_size,
        "eos_id": c.eos_id,
        "eos_token": c.eos_token,
        "eos_choice": c.eos_choice,
        "bos_id": c.bos_id,
        "bos_token": c.bos_token,
        "bos_choice": c.bos_choice,
        "special_tokens_in_text": "encoded as text",
        "tokenizer": {
            "path": stored_path(c.tokenizer_path, out, root),
            "sha256": c.tokenizer_sha256,
        },
        "engine": {
            "name": c.engine,
            "why": c.engine_reason,
            "checked_against_hf": plan["checked"],
        },
        "mix_dir": stored_path(c.mix_dir, out, root),
        "seed": c.seed,
        "shuffle": c.shuffle,
        "max_tokens_per_part": c.max_tokens_per_part,
        "layout": "per_source" if c.per_source else "mixed",
        "source_dirs": source_dirs,
        "metadata_format": "csv.gz: start,end,id,src,loc (no header)",
        "documents": plan["documents"],
        "total_tokens": plan["total_tokens"],
        "tokens_per_source": plan["tokens_per_source"],
        "documents_per_source": plan["documents_per_source"],
        "parts": parts,
    }
    if sum(p["tokens"] for p in parts) != plan["total_tokens"]:
        raise MixerError("tokenize: the parts do not hold every encoded token (internal error)")
    write_json_atomic(out / "tokens.json", info)
    shutil.rmtree(tmp, ignore_errors=True)
    return {k: info[k] for k in ("documents", "total_tokens", "dtype")} | {
        "parts": len(parts),
        "engine": c.engine,
    }


# ---------------------------------------------------------------------------- entry points


def tokenize_stages(
    mix_dir: str | Path,
    tokenizer_path: str | Path,
    out_dir: str | Path,
    workdir: str | Path | None = None,
    **options,
) -> list[Stage]:
    """The tokenize stages (group "tokenize") for `run_stages`. `options` are make_config's:
    dtype, seed, max_tokens_per_part, eos, eos_id, bos, bos_id, batch_size, shuffle,
    per_source, engine, check_every. `workdir` holds the stage records (default: a hidden
    folder in out_dir). Settings are checked here (one-line MixerError); the tokenizer file
    must exist (build these stages after a `tokenizer` stage that trains it), the mix folder
    need not exist yet."""
    config = make_config(mix_dir, tokenizer_path, out_dir, **options)
    wd = Path(workdir) if workdir is not None else Path(config.out_dir) / ".mixer-state"
    return [EncodeStage(wd, config), WriteStage(wd, config)]


def tokenize_mix(
    mix_dir: str | Path,
    tokenizer_path: str | Path,
    out_dir: str | Path,
    dtype: str = "auto",
    seed: int = 0,
    workers: int | None = None,
    max_tokens_per_part: int = DEFAULT_MAX_TOKENS_PER_PART,
    eos: str | None = None,
    eos_id: int | None = None,
    bos: str | None = None,
    bos_id: int | None = None,
    progress: bool = True,
    batch_size: int = DEFAULT_BATCH_SIZE,
    shuffle: bool = True,
    per_source: bool = False,
    engine: str = "auto",
    check_every: int = DEFAULT_CHECK_EVERY,
    executor=None,
    workdir: str | Path | None = None,
    echo=None,
) -> dict:
    """Tokenize a mix into shuffled, packed token arrays; returns the tokens.json content.

    A thin wrapper: the two stages of `tokenize_stages` on a local process pool (or the
    executor given). A rerun with the same mix parts, tokenizer and settings does nothing."""
    from mixer.executor import LocalExecutor
    from mixer.stage import RunContext, run_stages

    stages = tokenize_stages(
        mix_dir,
        tokenizer_path,
        out_dir,
        workdir=workdir,
        dtype=dtype,
        seed=seed,
        max_tokens_per_part=max_tokens_per_part,
        eos=eos,
        eos_id=eos_id,
        bos=bos,
        bos_id=bos_id,
        batch_size=batch_size,
        shuffle=shuffle,
        per_source=per_source,
        engine=engine,
        check_every=check_every,
    )
    ctx = RunContext(
        workdir=stages[0].workdir,
        executor=executor or LocalExecutor(max(1, int(workers or os.cpu_count() or 1))),
        progress=progress,
        echo=echo or (lambda _msg: None),
    )
    run_stages(stages, ctx)
    return read_json(Path(stages[0].config.out_dir) / "tokens.json")
