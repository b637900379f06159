"""Duplicate ids: each task writes its documents' 128-bit id hashes, sorted, to
state/ingest/ids/part-N.ids; `duplicate_ids` merges them on the driver in bounded memory,
without reading any Parquet file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from mixer.errors import MixerError
from mixer.io import (
    atomic_path,
    read_json,
)
from mixer.schema import (
    part_name,
    state_dir,
)


def _read_parts(workdir: Path) -> dict[str, int]:
    return read_json(_state(workdir) / "parts.json", {})


def _state(workdir: Path) -> Path:
    return state_dir(workdir) / "ingest"


ID_FILE_MAGIC = b"MXIDS001"
ID_MERGE_BYTES = 64 << 20  # the most id hashes duplicate_ids holds at once (bytes)


def _ids_path(workdir: Path, index: int) -> Path:
    return _state(workdir) / "ids" / part_name(index, ".ids")


def write_id_file(path: Path, sources: list[str], hi, lo, src) -> None:
    """MAGIC, header length (8 bytes), a JSON header (the sources, the count), padding to 8,
    then n uint64 (high halves, sorted), n uint64 (low halves), n uint32 (source numbers)."""
    header = orjson.dumps({"sources": sources, "n": len(hi)})
    header += b" " * (-(len(ID_FILE_MAGIC) + 8 + len(header)) % 8)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(ID_FILE_MAGIC + len(header).to_bytes(8, "little") + header)
        for a, dtype in ((hi, "<u8"), (lo, "<u8"), (src, "<u4")):
            f.write(np.ascontiguousarray(a, dtype=dtype).tobytes())


def read_id_file(path: str | Path):
    """(sources, hi, lo, src), the arrays memory-mapped (nothing is read until used)."""
    with open(path, "rb") as f:
        head = f.read(16)
        if head[:8] != ID_FILE_MAGIC:
            raise MixerError(f"{path}: not an ingest id file")
        size = int.from_bytes(head[8:16], "little")
        meta = orjson.loads(f.read(size))
    n, start = meta["n"], 16 + size
    if n == 0:
        empty = np.zeros(0, np.uint64)
        return meta["sources"], empty, empty, np.zeros(0, np.uint32)
    hi = np.memmap(path, "<u8", "r", start, (n,))
    lo = np.memmap(path, "<u8", "r", start + 8 * n, (n,))
    src = np.memmap(path, "<u4", "r", start + 16 * n, (n,))
    return meta["sources"], hi, lo, src


def duplicate_ids(workdir: str | Path, indices: list[int] | None = None) -> dict[str, int]:
    """Per source: how many documents repeat an id already seen in that source (over every
    ingested part of the workdir, or the part numbers given).

    Each ingest task wrote its documents' 128-bit id hashes, sorted (state/ingest/ids/). The
    hash range is cut into windows holding about ID_MERGE_BYTES in all; each window's slices
    of every file (found by binary search in the memory-mapped files) are sorted together and
    equal (source, hash) neighbours counted. Memory stays bounded whatever the corpus size,
    and no Parquet file is read."""
    workdir = Path(workdir)
    if indices is None:
        indices = sorted(_read_parts(workdir).values())
    files = []
    for index in indices:
        p = _ids_path(workdir, index)
        if p.exists():
            files.append(read_id_file(p))
    names = sorted({s for f in files for s in f[0]})
    number = {s: i for i, s in enumerate(names)}
    total = sum(len(f[1]) for f in files)
    windows = max(1, -(-total * 20 // ID_MERGE_BYTES))
    counts = np.zeros(len(names), np.int64)
    edges = [(w << 64) // windows for w in range(windows)]
    numbers = [np.array([number[s] for s in f[0]], np.int64) for f in files]
    for w, lo_edge in enumerate(edges):
        his, los, srcs = [], [], []
        for (_, hi, lo, src), to_global in zip(files, numbers, strict=True):
            a = int(np.searchsorted(hi, np.uint64(lo_edge)))
            b = int(np.searchsorted(hi, np.uint64(edges[w + 1]))) if w + 1 < windows else len(hi)
            if b > a:
                his.append(np.asarray(hi[a:b]))
                los.append(np.asarray(lo[a:b]))
                srcs.append(to_global[np.asarray(src[a:b])])
        if not his:
            continue
        hi_, lo_, src_ = np.concatenate(his), np.concatenate(los), np.concatenate(srcs)
        order = np.lexsort((lo_, hi_, src_))
        hi_, lo_, src_ = hi_[order], lo_[order], src_[order]
        same = (hi_[1:] == hi_[:-1]) & (lo_[1:] == lo_[:-1]) & (src_[1:] == src_[:-1])
        counts += np.bincount(src_[1:][same], minlength=len(names))
    return {s: int(counts[i]) for i, s in enumerate(names)}
