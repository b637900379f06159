"""Readers for raw shards, atomic writers and small JSON manifests.

Nothing a later stage reads is ever half-written: every output goes to a temporary name in
the same directory and is renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import secrets
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from mixer.schema import PARQUET_COMPRESSION

TMP_PREFIX = ".tmp-"
READ_CHUNK = 1 << 20


# ---------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


_TMP_COUNTER = itertools.count()
_TMP_TOKEN: list = [None, ""]  # (pid, token): a fresh token in every process (fork included)


def _new_temporary(path: Path) -> str:
    """Create an empty file `.tmp-<name>.<token>-<n>` beside `path` (mode 0666 less the umask)
    and return its name. Cheaper than mkstemp (no random name per file, no chmod): the token is
    random per process, the counter unique within it, and O_EXCL refuses any clash."""
    if _TMP_TOKEN[0] != os.getpid():
        _TMP_TOKEN[:] = [os.getpid(), f"{os.getpid()}{secrets.token_hex(4)}"]
    while True:
        tmp = os.path.join(
            path.parent, f"{TMP_PREFIX}{path.name}.{_TMP_TOKEN[1]}-{next(_TMP_COUNTER)}"
        )
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_json_atomic(path: str | Path, obj) -> None:
    write_bytes_atomic(
        path, orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"
    )


def read_json(path: str | Path, default=None):
    try:
        return orjson.loads(Path(path).read_bytes())
    except FileNotFoundError:
        return default


def write_parquet_atomic(path: str | Path, table: pa.Table, row_group_size: int = 65536) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=PARQUET_COMPRESSION, row_group_size=row_group_size)


@contextlib.contextmanager
def parquet_writer_atomic(path: str | Path, schema: pa.Schema, **options):
    """A ParquetWriter on a temporary file, renamed onto `path` only when the block completes."""
    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(tmp, schema, compression=PARQUET_COMPRESSION, **options)
        try:
            yield writer
        finally:
            writer.close()


def clean_temporaries(directory: str | Path) -> None:
    """Remove temporary files left by a killed run."""
    d = Path(directory)
    if d.is_dir():
        for p in d.rglob(TMP_PREFIX + "*"):
            with contextlib.suppress(OSError):
                p.unlink()


# ---------------------------------------------------------------------------- fingerprints


def is_url(path: str | Path) -> bool:
    """Object-storage and other fsspec URLs (s3://, gs://, ...): read through fsspec."""
    return "://" in str(path)


def _fs(url: str):
    try:
        import fsspec
    except ImportError:
        from mixer.errors import MixerError

        raise MixerError(f"{url}: URLs need fsspec (pip install 'mixer[s3]')") from None
    return fsspec.core.url_to_fs(url)


def open_binary(path: str | Path):
    """Open a local path or an fsspec URL for binary reading."""
    if is_url(path):
        fs, p = _fs(str(path))
        return fs.open(p, "rb")
    return open(path, "rb")


def glob_urls(pattern: str) -> list[str]:
    """Files under an fsspec URL (a file, a folder, or a glob), as URLs."""
    fs, p = _fs(pattern)
    proto = pattern.split("://", 1)[0]
    if any(c in p for c in "*?["):
        found = fs.glob(p)
    elif fs.isdir(p):
        found = fs.find(p)
    elif fs.exists(p):
        found = [p]
    else:
        found = []
    return sorted(f"{proto}://{f}" for f in found if fs.isfile(f))


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open_binary(path) as f:
        for chunk in iter(lambda: f.read(READ_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def file_fingerprint(path: str | Path, with_hash: bool = True) -> dict:
    """Size, mtime and (optionally) content hash: what a rerun compares to skip finished work."""
    if is_url(path):
        fs, p = _fs(str(path))
        info = fs.info(p)
        modified = info.get("LastModified") or info.get("mtime") or info.get("updated")
        fp = {"size": info.get("size"), "mtime_ns": str(modified)}
        if with_hash:  # the store's own content tag, else the content itself
            tag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
            fp["sha256"] = str(tag) if tag else file_sha256(path)
        return fp
    st = os.stat(path)
    fp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if with_hash:
        fp["sha256"] = file_sha256(path)
    return fp


def config_hash(obj) -> str:
    """A stable hash of a JSON-able configuration."""
    return hashlib.sha256(orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


# ---------------------------------------------------------------------------- raw shards

SHARD_SUFFIXES = (
    ".jsonl",
    ".json",
    ".jsonl.gz",
    ".json.gz",
    ".jsonl.zst",
    ".json.zst",
    ".jsonl.zstd",
)


def is_shard(path: str | Path) -> bool:
    return str(path).endswith(SHARD_SUFFIXES)


class StreamError(Exception):
    """A compressed stream is corrupt or truncated.

    `line_no` is the number of the damaged line, `partial` what was decoded of it, `offset`
    the byte offset in the (compressed) file where decoding failed."""

    def __init__(self, message: str, line_no: int = 0, partial: bytes = b"", offset: int = 0):
        super().__init__(message)
        self.message = message
        self.line_no = line_no
        self.partial = partial
        self.offset = offset


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
FINE_STEP = 4096  # recovery: re-decode a failing piece in steps this large, then 1 byte


def _raw_chunks(f) -> Iterator[bytes]:
    return iter(lambda: f.read(READ_CHUNK), b"")


def sniff_codec(path: str | Path, head: bytes) -> str:
    """ "gzip", "zstd" or "plain", from the first bytes (the name only breaks ties).

    A `.zst` or `.gz` file that holds plain text is read as plain text; one that holds neither
    its format nor text is a corrupt stream."""
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(ZSTD_MAGIC) or (
        len(head) >= 4 and 0x184D2A50 <= int.from_bytes(head[:4], "little") <= 0x184D2A5F
    ):
        return "zstd"
    p = str(path)
    if p.endswith((".gz", ".zst", ".zstd")) and head and not _looks_like_text(head):
        return "gzip-bad" if p.endswith(".gz") else "zstd-bad"
    return "plain"


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # a character cut by the end of the sample is fine
            return False
    return b"\x00" not in head


class _Zstd:
    name = "zstd"
    errors = (zstandard.ZstdError,)

    def __init__(self):
        self._dctx = zstandard.ZstdDecompressor()

    def new(self):
        return self._dctx.decompressobj()


class _Gzip:
    name = "gzip"
    errors = (zlib.error,)

    def new(self):
        return zlib.decompressobj(wbits=31)


def _decode(path: str, f, codec) -> Iterator[bytes]:
    """Decompress a (multi-member / multi-frame) stream, yielding everything decodable.

    Input is fed in READ_CHUNK pieces (fast). When a piece raises, the output of that call is
    lost, so the member is decoded again from its start and the failing piece fed in small
    steps: every byte the decoder can produce before the damage is yielded, then StreamError
    names the offset of the step that failed."""
    dec, fed = codec.new(), False
    member_start = 0  # offset where the current member (frame) starts
    member_out = 0  # bytes yielded from the current member
    pos = 0  # offset of `data`
    for data in _raw_chunks(f):
        while data:
            try:
                out = dec.decompress(data)
            except codec.errors as e:
                at = yield from _recover(path, codec, member_start, pos, len(data), member_out)
                raise StreamError(
                    f"corrupt {codec.name} stream at byte {at} ({_short(e)})", offset=at
                ) from None
            fed = True
            if out:
                member_out += len(out)
                yield out
            if dec.eof:  # a member ended: the rest may be another member
                rest = dec.unused_data
                pos += len(data) - len(rest)
                data = rest
                dec, fed = codec.new(), False
                member_start, member_out = pos, 0
            else:
                pos += len(data)
                data = b""
    if fed and not dec.eof:
        raise StreamError(
            f"truncated {codec.name} stream (ends at byte {pos} inside a "
            f"{'frame' if codec.name == 'zstd' else 'member'})",
            offset=pos,
        )


def _short(e: Exception) -> str:
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def _replay(path: str, codec, start: int, good_end: int, fine_end: int, step: int):
    """Decode [start, good_end) in big pieces, then [good_end, fine_end) in `step`-byte pieces.
    Yields output; returns the offset of the piece that failed (None if none did)."""
    dec = codec.new()
    with open_binary(path) as f:
        f.seek(start)
        pos = start
        while pos < good_end:
            data = f.read(min(READ_CHUNK, good_end - pos))
            if not data:
                return None
            out = dec.decompress(data)
            pos += len(data)
            if out:
                yield out
        while pos < fine_end:
            data = f.read(min(step, fine_end - pos))
            if not data:
                return None
            try:
                out = dec.decompress(data)
            except codec.errors:
                return pos
            pos += len(data)
            if out:
                yield out
            if dec.eof:
                return None
    return None


def _recover(path: str, codec, member_start: int, pos: int, size: int, already: int):
    """Yield what a careful decoder gets of the piece [pos, pos+size) that failed; return the
    offset where decoding failed."""

    def drain(gen):
        n = 0
        try:
            while True:
                n += len(next(gen))
        except StopIteration as stop:
            return stop.value, n

    # Pass 1: find the FINE_STEP-byte step that fails (outputs are only counted).
    coarse, _ = drain(_replay(path, codec, member_start, pos, pos + size, FINE_STEP))
    if coarse is None:
        return pos
    # Pass 2: decode up to that step, then byte by byte; yield what was not yielded before.
    gen = _replay(path, codec, member_start, coarse, coarse + FINE_STEP, 1)
    skip = already
    try:
        while True:
            out = next(gen)
            if skip >= len(out):
                skip -= len(out)
                continue
            yield out[skip:]
            skip = 0
    except StopIteration as stop:
        return stop.value if stop.value is not None else coarse


def iter_lines(path: str | Path, with_terminated: bool = False) -> Iterator[tuple]:
    """Yield (1-based line number, line bytes without the newline), streaming in chunks.

    With `with_terminated`, yield (line number, bytes, whether a newline ended the line).
    A line-at-a-time view of `iter_line_blocks` (same formats, same errors).
    """
    for first, lines, terminated in iter_line_blocks(path):
        last = len(lines) - 1
        for i, line in enumerate(lines):
            if with_terminated:
                yield first + i, line, terminated or i < last
            else:
                yield first + i, line


def iter_line_blocks(path: str | Path) -> Iterator[tuple[int, list[bytes], bool]]:
    """Yield (number of the block's first line, its lines without newlines, whether its last
    line ended with a newline): one block per decompressed piece, so callers loop over lines
    without a generator step per line.

    The format is taken from the file's first bytes (a `.zst` that holds plain text is read as
    plain text). A corrupt or truncated compressed stream ends the iteration with StreamError
    (carrying the number of the damaged line, its partial bytes and the byte offset where
    decoding failed) after every complete line decodable before the damage was yielded. A
    last line without a newline is yielded as is (in a block whose flag is False).
    """
    line_no = 0
    try:
        for data, start, stop in iter_line_chunks(path):
            terminated = stop < len(data)
            if start:
                lines = data[start:stop].split(b"\n")
            else:  # data[stop + 1:] is not this block's: split it off with the rest and drop it
                lines = data.split(b"\n")
                if terminated:
                    lines.pop()
            first = line_no + 1
            line_no += len(lines)
            yield first, lines, terminated
    except StreamError as e:
        e.line_no = line_no + 1
        raise


def iter_line_chunks(path: str | Path) -> Iterator[tuple[bytes, int, int]]:
    """Yield (data, start, stop): `data[start:stop]` is whole lines joined by newlines (the
    newline that ended the last of them is data[stop]), in file order, not split into lines:
    what `iter_line_blocks` splits. Each decompressed piece is yielded as it came (no copy),
    from just after its first newline when a line runs into it from earlier pieces: that line
    is joined and comes first, alone. A last line without a newline comes alone, with
    stop == len(data). Same formats and errors as `iter_line_blocks`, but the StreamError's
    `line_no` is left for the caller, who counts the lines."""
    p = str(path)
    pending: list[bytes] = []  # pieces of the line not ended yet (joined once: no quadratic copy)
    with open_binary(p) as f:
        head = f.read(4096)
        kind = sniff_codec(p, head)
        f.seek(0)
        if kind == "gzip":
            chunks = _decode(p, f, _Gzip())
        elif kind == "zstd":
            chunks = _decode(p, f, _Zstd())
        elif kind.endswith("-bad"):
            chunks = _bad(kind.split("-")[0])
        else:
            chunks = _raw_chunks(f)
        try:
            for chunk in chunks:
                stop = chunk.rfind(b"\n")
                if stop < 0:
                    pending.append(chunk)
                    continue
                start = 0
                if pending:  # the line that ran on from earlier pieces ends here: it alone
                    start = chunk.find(b"\n") + 1
                    pending.append(chunk[:start])
                    line = b"".join(pending)
                    pending = []
                    yield line, 0, len(line) - 1
                pending = [chunk[stop + 1 :]] if stop + 1 < len(chunk) else []
                if start <= stop:
                    yield chunk, start, stop
        except StreamError as e:
            e.partial = b"".join(pending)
            raise
    if pending:
        last = b"".join(pending)
        yield last, 0, len(last)


def _bad(name: str) -> Iterator[bytes]:
    raise StreamError(f"not a {name} stream (no {name} header, and not text)", offset=0)
    yield b""  # pragma: no cover
