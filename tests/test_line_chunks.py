"""iter_line_chunks yields decompressed pieces in place: every line exactly once, in order,
whatever the piece boundaries (lines across several pieces, empty lines at a boundary)."""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest
import zstandard

import mixer.io
from mixer.io import iter_line_blocks, iter_line_chunks


def _content(seed: int, final_newline: bool) -> bytes:
    rng = random.Random(seed)
    lines = []
    for _ in range(300):
        r = rng.random()
        if r < 0.1:
            lines.append(b"")
        elif r < 0.15:
            lines.append(b"x" * rng.randint(100, 400))  # across several pieces
        else:
            lines.append(bytes(rng.choice(b"ab\r") for _ in range(rng.randint(1, 40))))
    return b"\n".join(lines) + (b"\n" if final_newline else b"")


@pytest.mark.parametrize("codec", ["plain", "gzip", "zstd"])
@pytest.mark.parametrize("final_newline", [True, False])
@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_every_line_once_in_order(tmp_path: Path, monkeypatch, codec, final_newline, chunk):
    content = _content(chunk + final_newline, final_newline)
    path = tmp_path / f"s.jsonl{'' if codec == 'plain' else '.gz' if codec == 'gzip' else '.zst'}"
    if codec == "gzip":
        path.write_bytes(gzip.compress(content))
    elif codec == "zstd":
        path.write_bytes(zstandard.ZstdCompressor().compress(content))
    else:
        path.write_bytes(content)
    monkeypatch.setattr(mixer.io, "READ_CHUNK", chunk)
    want = content.split(b"\n")
    if final_newline:
        want.pop()
    got = []
    for data, start, stop in iter_line_chunks(path):
        assert 0 <= start <= stop <= len(data)
        assert stop == len(data) or data[stop : stop + 1] == b"\n"
        got.extend(data[start:stop].split(b"\n"))
    assert got == want
    lines, flags = [], []
    for first, block, terminated in iter_line_blocks(path):
        assert first == len(lines) + 1
        lines.extend(block)
        flags.append(terminated)
    assert lines == want
    assert all(flags[:-1]) and flags[-1] == final_newline
