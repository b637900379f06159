"""Write a documents/ part straight from texts, for tests that start after ingest (not a test
module itself)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mixer.schema import DOCUMENT_SCHEMA, documents_dir


def write_part(
    workdir: Path,
    source: str,
    texts: list[str],
    index: int = 0,
    ids: list[str] | None = None,
    added: str | None = "2024-01-01",
) -> Path:
    """documents/<source>/part-<index>.parquet holding `texts` (ids `<source>-<i>` unless
    given), as ingest would write it; returns its path."""
    n = len(texts)
    table = pa.table(
        {
            "id": ids if ids is not None else [f"{source}-{i}" for i in range(n)],
            "text": texts,
            "source": [source] * n,
            "added": [added] * n,
            "created": [None] * n,
            "metadata": [None] * n,
            "src_file": ["x.jsonl"] * n,
            "src_line": list(range(1, n + 1)),
        },
        schema=DOCUMENT_SCHEMA,
    )
    path = documents_dir(workdir, source) / f"part-{index:05d}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path
