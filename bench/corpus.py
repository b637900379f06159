"""Build a benchmark corpus of real text from files present on any machine with Python.

Documents are cut from the standard library's sources and docstrings and from /usr/share/doc
and man pages when present; nothing third-party is committed, everything is read at run time.
"""

from __future__ import annotations

import gzip
import hashlib
import sysconfig
from pathlib import Path

import orjson
import zstandard


def read_local_text(path: Path) -> str | None:
    """A local file's text (gunzipped when .gz), or None when it is not readable UTF-8."""
    try:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile):
        return None


def iter_texts(min_chars: int = 200):
    """Yield text blocks (about one to a few KB each) from local files, deterministically."""
    roots = [Path(sysconfig.get_paths()["stdlib"]), Path("/usr/share/doc"), Path("/usr/share/man")]
    for root in roots:
        if not root.is_dir():
            continue
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.stat().st_size > 2_000_000:
                continue
            try:
                if p.suffix == ".gz":
                    text = gzip.decompress(p.read_bytes()).decode("utf-8")
                elif p.suffix in (".py", ".txt", ".rst", ".md", "") or "copyright" in p.name:
                    text = p.read_text("utf-8")
                else:
                    continue
            except (UnicodeDecodeError, OSError, EOFError, gzip.BadGzipFile):
                continue
            for block in text.split("\n\n\n"):
                if len(block) >= min_chars:
                    yield str(p), block


def write_corpus(
    out_dir: str | Path, target_bytes: int, shards: int = 4, repeat_ok: bool = True
) -> list[Path]:
    """Write about `target_bytes` of raw Dolma JSONL, split over `shards` .jsonl.zst files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"shard-{i:04d}.jsonl.zst" for i in range(shards)]
    if all(p.exists() for p in paths):
        return paths
    per_shard = target_bytes // shards
    texts = iter_texts()
    cache: list[tuple[str, str]] = []
    n = 0
    for path in paths:
        lines, size = [], 0
        while size < per_shard:
            try:
                src, text = next(texts)
                cache.append((src, text))
            except StopIteration:
                if not repeat_ok or not cache:
                    break
                src, text = cache[n % len(cache)]
            n += 1
            rec = {
                "id": hashlib.sha1(f"{n}".encode()).hexdigest()[:16],
                "text": text,
                "source": "bench",
                "added": "2024-01-01T00:00:00Z",
                "created": None,
                "metadata": {"path": src},
            }
            line = orjson.dumps(rec)
            lines.append(line)
            size += len(line) + 1
        path.write_bytes(zstandard.ZstdCompressor(level=3).compress(b"\n".join(lines) + b"\n"))
    return paths
