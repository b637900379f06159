"""Readers for raw shards, atomic writers and small JSON manifests.

Nothing a later stage reads is ever half-written: every output goes to a temporary name in
the same directory and is renamed into place when complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from mixer.schema import PARQUET_COMPRESSION

TMP_PREFIX = ".tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)
READ_CHUNK = 1 << 20


# ---------------------------------------------------------------------------- atomic writes


@contextlib.contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to `path`; rename it onto `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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
    """A compressed stream is corrupt or truncated at `line_no`; `partial` is what was read of it."""

    def __init__(self, message: str, line_no: int = 0, partial: bytes = b""):
        super().__init__(message)
        self.line_no = line_no
        self.partial = partial


def _raw_chunks(f) -> Iterator[bytes]:
    return iter(lambda: f.read(READ_CHUNK), b"")


def _gzip_chunks(f) -> Iterator[bytes]:
    """Decompress (multi-member) gzip, yielding everything readable before any damage."""
    dec, fed = zlib.decompressobj(wbits=31), False
    for data in _raw_chunks(f):
        while data:
            try:
                out = dec.decompress(data)
            except zlib.error as e:
                raise StreamError(f"corrupt gzip stream ({e})") from e
            fed = True
            if out:
                yield out
            if dec.eof:  # a member ended: the rest may be another member
                data = dec.unused_data
                dec, fed = zlib.decompressobj(wbits=31), False
            else:
                data = b""
    if fed and not dec.eof:
        raise StreamError("truncated gzip stream (no end-of-stream marker)")


def _zstd_chunks(f) -> Iterator[bytes]:
    """Decompress (multi-frame) zstd, yielding everything readable before any damage."""
    dctx = zstandard.ZstdDecompressor()
    dec, fed = dctx.decompressobj(), False
    for data in _raw_chunks(f):
        while data:
            try:
                out = dec.decompress(data)
            except zstandard.ZstdError as e:
                raise StreamError(f"corrupt zstd stream ({e})") from e
            fed = True
            if out:
                yield out
            if dec.eof:
                data = dec.unused_data
                dec, fed = dctx.decompressobj(), False
            else:
                data = b""
    if fed and not dec.eof:
        raise StreamError("truncated zstd stream (frame not finished)")


def iter_lines(path: str | Path, with_terminated: bool = False) -> Iterator[tuple]:
    """Yield (1-based line number, line bytes without the newline), streaming in chunks.

    With `with_terminated`, yield (line number, bytes, whether a newline ended the line).

    A corrupt or truncated compressed stream ends the iteration with StreamError (carrying the
    number of the damaged line and its partial bytes) after every complete line before the
    damage was yielded. A last line without a newline is yielded as is.
    """
    p = str(path)
    line_no = 0
    tail = b""
    with open_binary(p) as f:
        if p.endswith(".gz"):
            chunks = _gzip_chunks(f)
        elif p.endswith((".zst", ".zstd")):
            chunks = _zstd_chunks(f)
        else:
            chunks = _raw_chunks(f)
        try:
            for chunk in chunks:
                lines = (tail + chunk).split(b"\n")
                tail = lines.pop()
                for line in lines:
                    line_no += 1
                    yield (line_no, line, True) if with_terminated else (line_no, line)
        except StreamError as e:
            e.line_no, e.partial = line_no + 1, tail
            raise
    if tail:
        yield (line_no + 1, tail, False) if with_terminated else (line_no + 1, tail)
