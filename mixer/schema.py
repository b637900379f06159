"""The on-disk tables of a workdir: Arrow schemas and the paths inside a workdir.

Every stage finds its inputs and places its outputs through these helpers, so the layout of
DESIGN.md lives in one place.
"""

from __future__ import annotations

import re
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


def check_name(name: str, what: str = "source") -> str:
    """Refuse names that could escape the workdir or make odd paths (separators, '..')."""
    if not name or not _SAFE_NAME.match(name) or ".." in name:
        from mixer.errors import MixerError

        raise MixerError(
            f"invalid {what} name {name!r}: use letters, digits, '_', '-', '.' (no path separators or '..')"
        )
    return name


def part_name(index: int, suffix: str = ".parquet") -> str:
    return f"part-{index:05d}{suffix}"


def part_index(path: str | Path) -> int:
    """part-00012.parquet -> 12 (also for part-00012.index.parquet and .npy)."""
    return int(Path(path).name.split(".")[0].split("-")[1])


def documents_dir(workdir: str | Path, source: str | None = None) -> Path:
    d = Path(workdir) / "documents"
    return d / source if source else d


def quarantine_dir(workdir: str | Path, source: str | None = None) -> Path:
    d = Path(workdir) / "quarantine"
    return d / source if source else d


def attributes_dir(
    workdir: str | Path, tagger: str | None = None, source: str | None = None
) -> Path:
    d = Path(workdir) / "attributes"
    if tagger:
        d = d / tagger
        if source:
            d = d / source
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
    """Sources that have ingested documents, sorted."""
    d = documents_dir(workdir)
    if not d.is_dir():
        return []
    return sorted(p.name for p in d.iterdir() if p.is_dir() and any(p.glob("part-*.parquet")))


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
