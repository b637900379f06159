"""The per-part document metadata that OLMo-core and dolma read: part-NNNNN.csv.gz.

One row per document, in the order of the part, no header (a header row makes OLMo-core fail):

    start,end,id,src,loc

`start`/`end` are token offsets inside the part (end exclusive), `id` the document id, `src` the
file the document was ingested from (`src_file`), `loc` its line in that file (`src_line`,
1-based; empty when unknown). Fields are quoted the CSV way when they hold a comma, a quote or
a line break. The gzip stream has mtime 0 and no file name, so equal rows give equal bytes.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
from pathlib import Path

import pyarrow as pa

CSV_SUFFIX = ".csv.gz"
GZIP_LEVEL = 6
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")


class MetadataWriter:
    """Streams rows into a deterministic gzip CSV file object (opened by the caller)."""

    def __init__(self, raw):
        self._gz = gzip.GzipFile(
            filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=GZIP_LEVEL
        )
        self._text = io.StringIO()
        self._csv = csv.writer(self._text, lineterminator="\n")

    def write(self, starts, ends, ids: list, srcs: list, locs: list) -> None:
        self._csv.writerows(
            zip(starts, ends, ids, srcs, ("" if v is None else v for v in locs), strict=False)
        )
        self._gz.write(self._text.getvalue().encode("utf-8"))
        self._text.seek(0)
        self._text.truncate()

    def close(self) -> None:
        self._gz.close()


def read_metadata(path: str | Path) -> list[list[str]]:
    """Rows of a part-NNNNN.csv.gz as lists of strings (for tests and checks)."""
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return list(csv.reader(f))


def source_dirname(source: str) -> str:
    """A directory name for a source string: the string itself when it is a plain safe name,
    else a readable slug plus a hash of the exact string (so `a:b`, `a/b` and `a b` never alias,
    and nothing can escape the folder)."""
    if _SAFE.match(source) and ".." not in source:
        return source
    slug = re.sub(r"[^A-Za-z0-9_.\-]+", "_", source).strip("._-")[:60] or "source"
    return f"{slug}-{hashlib.sha256(source.encode('utf-8')).hexdigest()[:10]}"


def metadata_columns(table: pa.Table) -> tuple[list, list]:
    """(src, loc) lists of a table with optional src_file/src_line columns."""
    n = table.num_rows
    src = table.column("src_file").to_pylist() if "src_file" in table.column_names else [""] * n
    loc = table.column("src_line").to_pylist() if "src_line" in table.column_names else [None] * n
    return ["" if s is None else s for s in src], loc


# ---------------------------------------------------------------------------- tokens.json paths


def stored_path(target: str | Path, tokens_dir: str | Path, root: str | Path | None) -> str:
    """How tokens.json names a file or folder it refers to (the mix, the tokenizer): relative
    to tokens.json's own folder when `target` lies inside `root` (the run's workdir), so two
    workdirs (or a bucket's mirrors) write the same bytes; else absolute, as given."""
    import os

    target = Path(target).resolve()
    if root is not None and target.is_relative_to(Path(root).resolve()):
        return Path(os.path.relpath(target, Path(tokens_dir).resolve())).as_posix()
    return str(target)


def resolve_stored(tokens_dir: str | Path, value) -> Path | None:
    """The path a tokens.json entry names (relative entries are relative to its folder),
    or None when it names none."""
    if not value or not isinstance(value, str):
        return None
    return Path(tokens_dir) / value  # an absolute value stays as it is
