"""The one input resolver: files, folders, globs and URLs -> the list of raw shards to read.

Every stage that reads user-given inputs (ingest, decon-index, the pipeline's fingerprints)
expands them here, so they all agree on what an input means:

- a file is itself (whatever its name);
- a folder is every shard under it, recursively (`.jsonl`, `.json`, `.gz`, `.zst` forms;
  hidden files such as `.tmp-*` are skipped);
- a glob (`*`, `?`, `[...]`, and `**` for any number of folders) is every shard it matches, and
  every shard under each folder it matches;
- an fsspec URL (`s3://bucket/prefix/*.jsonl.zst`) is expanded by its file system.

Shards are de-duplicated by their resolved path (a shard given as a relative and an absolute
path, or reached twice through a symlink, is read once), and symlink loops are walked once.
A missing input, an input that holds no shards, and an unreadable file or folder are each a
one-line MixerError naming it: nothing is skipped silently.
"""

from __future__ import annotations

import os
import re
import stat
from functools import lru_cache

from mixer.errors import MixerError
from mixer.io import SHARD_SUFFIXES, glob_urls, is_shard, is_url

_MAGIC = re.compile(r"[*?\[]")


class InputError(MixerError):
    """An input that can't be read or yields nothing: `input 'ITEM': REASON`."""

    def __init__(self, item: str, reason: str):
        super().__init__(f"input {item!r}: {reason}")
        self.item, self.reason = item, reason

    def __reduce__(self):  # crosses process and Ray boundaries intact
        return (InputError, (self.item, self.reason))


def has_magic(item: str) -> bool:
    return bool(_MAGIC.search(item))


def resolve_inputs(items: list[str] | tuple[str, ...]) -> list[str]:
    """Expand inputs into a sorted, de-duplicated list of shards (resolved local paths, then
    URLs)."""
    local: set[str] = set()
    urls: set[str] = set()
    for shards in resolve_each(items).values():
        for s in shards:
            (urls if is_url(s) else local).add(s)
    return sorted(local) + sorted(urls)


def resolve_each(items: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """{item_key(item): its shards} for each input, in the order given. A shard reached by two
    items appears under both (callers that count use `resolve_inputs`)."""
    if isinstance(items, str):
        items = [items]
    out: dict[str, list[str]] = {}
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise InputError(item, "empty input path")
        key = item_key(item)
        if key not in out:
            out[key] = _resolve_one(item)
    return out


def item_key(item: str) -> str:
    """One spelling per input: URLs as given, local paths absolute and normalised (the same
    folder given as `data/` and `/abs/data` has one key)."""
    if is_url(item):
        return item
    base, rest = _split_magic(item)
    base = os.path.realpath(base) if base else os.path.realpath(".")
    return os.path.join(base, rest) if rest else base


def _resolve_one(item: str) -> list[str]:
    if is_url(item):
        found = [u for u in glob_urls(item) if is_shard(u)]
        if not found:
            raise InputError(item, f"no {_kinds()} shards there")
        return sorted(set(found))
    if has_magic(item):
        base, rest = _split_magic(item)
        root = base or "."
        if not os.path.isdir(root):
            raise InputError(item, f"no files match ({root} is not a folder)")
        regex = _glob_regex(rest)
        found: set[str] = set()
        matched = False
        for rel, path in _walk(root, item, hidden=False):
            parts = rel.split("/")
            for k in range(1, len(parts) + 1):
                if regex.fullmatch("/".join(parts[:k])):
                    matched = True
                    # a matched file is taken whatever its name; under a matched folder only shards
                    if k == len(parts) or is_shard(path):
                        found.add(_check_file(path, item))
                    break
        if not matched:
            raise InputError(item, "no files match")
        if not found:
            raise InputError(item, f"matches no {_kinds()} shards")
        return sorted(found)
    if os.path.isdir(item):
        found = {_check_file(p, item) for rel, p in _walk(item, item, hidden=False) if is_shard(p)}
        if not found:
            raise InputError(item, f"folder holds no {_kinds()} shards")
        return sorted(found)
    if os.path.isfile(item):
        return [_check_file(item, item)]
    if os.path.lexists(item):
        raise InputError(item, "not a file or folder (a broken link?)")
    raise InputError(item, "no such file or folder")


def _kinds() -> str:
    return ".jsonl/.json(.gz/.zst)"


def _split_magic(item: str) -> tuple[str, str]:
    """'data/web/**/*.zst' -> ('data/web', '**/*.zst'); no magic -> (item, '')."""
    parts = item.split("/")
    for i, p in enumerate(parts):
        if has_magic(p):
            base = "/".join(parts[:i])
            if item.startswith("/") and not base:
                base = "/"
            return base, "/".join(parts[i:])
    return item, ""


@lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern:
    """A glob over '/'-separated relative paths: `**` is any number of folders (zero too),
    `*` and `?` stay inside one name and never match a leading dot."""
    out = []
    comps = [c for c in pattern.split("/") if c not in ("", ".")]
    for i, comp in enumerate(comps):
        last = i == len(comps) - 1
        if comp == "**":
            out.append(r"(?:[^/.][^/]*/)*" if not last else r"(?:[^/.][^/]*(?:/[^/.][^/]*)*)?")
            continue
        rx = []
        j = 0
        while j < len(comp):
            c = comp[j]
            if c == "*":
                rx.append("[^/]*")
            elif c == "?":
                rx.append("[^/]")
            elif c == "[":
                end = comp.find("]", j + 2 if comp[j + 1 : j + 2] in ("!", "]") else j + 1)
                if end < 0:
                    rx.append(re.escape(c))
                else:
                    body = comp[j + 1 : end]
                    neg = body.startswith("!")
                    body = body[1:] if neg else body
                    rx.append("[" + ("^" if neg else "") + body.replace("\\", "\\\\") + "]")
                    j = end
            else:
                rx.append(re.escape(c))
            j += 1
        piece = "".join(rx)
        if not comp.startswith("."):
            piece = "(?!\\.)" + piece
        out.append(piece + ("" if last else "/"))
    return re.compile("".join(out), re.DOTALL)


def _walk(root: str, item: str, hidden: bool):
    """Yield (relative path with '/', path) of every file under `root`, following symlinks, each
    real folder once (a symlink loop is walked once). An unreadable folder is an error."""
    seen: set[tuple[int, int]] = set()
    stack = [(root, "")]
    while stack:
        folder, rel = stack.pop()
        try:
            st = os.stat(folder)
        except OSError as e:
            raise InputError(item, f"can't read folder {folder}: {e.strerror}") from None
        if (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            raise InputError(item, f"can't read folder {folder}: {e.strerror}") from None
        subdirs = []
        for e in entries:
            if not hidden and e.name.startswith("."):
                continue
            r = f"{rel}/{e.name}" if rel else e.name
            try:
                is_dir = e.is_dir()  # follows symlinks
                is_file = not is_dir and e.is_file()
            except OSError as err:
                raise InputError(item, f"can't read {e.path}: {err.strerror}") from None
            if is_dir:
                subdirs.append((e.path, r))
            elif is_file:
                yield r, e.path
        stack.extend(reversed(subdirs))


def _check_file(path: str, item: str) -> str:
    """The resolved path of a shard, after checking that it can be opened for reading."""
    real = os.path.realpath(path)
    try:
        st = os.stat(real)
        if not stat.S_ISREG(st.st_mode):
            raise InputError(item, f"{path} is not a regular file")
        _probe_readable(real)
    except OSError as e:
        raise InputError(item, f"can't read {path}: {e.strerror}") from None
    return real


def _probe_readable(path: str) -> None:
    with open(path, "rb"):
        pass


__all__ = ["SHARD_SUFFIXES", "has_magic", "item_key", "resolve_each", "resolve_inputs"]
