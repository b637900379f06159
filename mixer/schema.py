"""The on-disk tables of a workdir: Arrow schemas and the paths inside a workdir.

Every stage finds its inputs and places its outputs through these helpers, so the layout of
DESIGN.md lives in one place.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import pyarrow as pa

DOCUMENT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("source", pa.string()),
        ("added", pa.string()),
        ("created", pa.string()),
        ("metadata", pa.string()),  # JSON text of the record's metadata object (or null)
        ("src_file", pa.string()),
        ("src_line", pa.int64()),  # 1-based line number in src_file
    ]
)

QUARANTINE_FIELDS = ("src_file", "src_line", "reason", "raw")

PARQUET_COMPRESSION = "zstd"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
MAX_PLAIN_NAME = 100  # longer names get a slug and a hash (file names stop at 255 bytes)
_SLUG_LEN = 48
_HASH_SEP = "~"  # never in a plain name, so a derived name can't equal a plain one


def is_plain_name(name: str) -> bool:
    """Letters, digits, '_', '-', '.', starting with a letter or digit, no '..', short."""
    return bool(
        isinstance(name, str)
        and name
        and len(name) <= MAX_PLAIN_NAME
        and _SAFE_NAME.match(name)
        and ".." not in name
        and not name.endswith(".")
    )


def source_dir_name(source: str) -> str:
    """The directory name of a source string, stable, safe and injective.

    A plain name (`web`, `c4_en`, `pes2o.v2`) is its own directory name, so simple layouts stay
    as they are. Any other string (`olmoe-routing-sample:c4`, `s2/pes2o`, `a b`, a 300-character
    or non-ASCII name, `..`, a trailing newline) becomes a readable ASCII slug, `~`, and 12 hex
    digits of the SHA-256 of the string: `s2_pes2o~1b6a...`. Plain names never contain `~`, so
    a derived name never equals a plain one, and two strings share a derived name only if
    their hashes (48 bits) and slugs collide. Path separators, `..` and control characters
    never reach the file system.
    """
    if not isinstance(source, str):
        raise TypeError(f"source must be a string, not {type(source).__name__}")
    if is_plain_name(source):
        return source
    ascii_ = unicodedata.normalize("NFKD", source).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^A-Za-z0-9_.\-]+", "_", ascii_)
    slug = re.sub(r"\.{2,}", "_", slug).strip("._-")[:_SLUG_LEN].strip("._-")
    digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{slug or 'source'}{_HASH_SEP}{digest}"


def check_name(name: str, what: str = "source") -> str:
    """Refuse names that could escape the workdir or make odd paths (separators, '..').

    Used for names that are directory names as given (mixes, taggers). Sources take any
    string: see `source_dir_name`."""
    if not is_plain_name(name):
        from mixer.errors import MixerError

        raise MixerError(
            f"invalid {what} name {name!r}: use letters, digits, '_', '-', '.' "
            f"(at most {MAX_PLAIN_NAME} characters, no path separators or '..')"
        )
    return name


def part_name(index: int, suffix: str = ".parquet") -> str:
    return f"part-{index:05d}{suffix}"


def part_index(path: str | Path) -> int:
    """part-00012.parquet -> 12 (also for part-00012.index.parquet and .npy)."""
    return int(Path(path).name.split(".")[0].split("-")[1])


def documents_dir(workdir: str | Path, source: str | None = None) -> Path:
    """documents/, or documents/<directory of `source`> (`source` is the source string)."""
    d = Path(workdir) / "documents"
    return d / source_dir_name(source) if source else d


def quarantine_dir(workdir: str | Path, source: str | None = None) -> Path:
    d = Path(workdir) / "quarantine"
    return d / source_dir_name(source) if source else d


def attributes_dir(
    workdir: str | Path, tagger: str | None = None, source: str | None = None
) -> Path:
    d = Path(workdir) / "attributes"
    if tagger:
        d = d / tagger
        if source:
            d = d / source_dir_name(source)
    return d


def mix_dir(workdir: str | Path, mix: str) -> Path:
    return Path(workdir) / "mixes" / mix


def mix_manifest_path(workdir: str | Path, mix: str) -> Path:
    """The mix manifest sits beside its folder of Parquet parts, never inside it, so that every
    Parquet reader opens mixes/<mix>/ as a dataset."""
    return Path(workdir) / "mixes" / f"{mix}.manifest.json"


def tokens_dir(workdir: str | Path, mix: str) -> Path:
    return Path(workdir) / "tokens" / mix


def state_dir(workdir: str | Path) -> Path:
    return Path(workdir) / "state"


def report_dir(workdir: str | Path) -> Path:
    return Path(workdir) / "report"


def list_sources(workdir: str | Path) -> list[str]:
    """Source strings (as written in the `source` column) that have ingested documents, sorted.

    Pass them to documents_dir / attributes_dir, which derive the directory. A plain directory
    name is its own source; a derived one (`slug~hash`) holds documents of one source string,
    read back from the first row of its first part."""
    d = documents_dir(workdir)
    if not d.is_dir():
        return []
    out = []
    for p in d.iterdir():
        if not p.is_dir():
            continue
        parts = list_parts(p)
        if not parts:
            continue
        out.append(p.name if is_plain_name(p.name) else source_of_dir(p, parts))
    return sorted(out)


def source_of_dir(directory: Path, parts: list[Path]) -> str:
    """The source string of a documents directory with a derived name."""
    import pyarrow.parquet as pq

    for part in parts:
        f = pq.ParquetFile(part)
        for i in range(f.num_row_groups):
            col = f.read_row_group(i, columns=["source"]).column("source")
            if len(col):
                source = col[0].as_py()
                if source is not None and source_dir_name(source) == directory.name:
                    return source
    from mixer.errors import MixerError

    raise MixerError(f"{directory}: can't tell which source this folder holds (no rows name it)")


def list_parts(directory: str | Path) -> list[Path]:
    """Finished parts of a directory (temporary files are never matched), sorted by index."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted(
        (p for p in d.glob("part-*.parquet") if not p.name.endswith(".index.parquet")),
        key=part_index,
    )


def list_taggers(workdir: str | Path) -> list[str]:
    d = attributes_dir(workdir)
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.is_dir())
