"""A workdir on object storage (`mixer run RECIPE --workdir s3://bucket/run`).

Every stage works on a local POSIX path (DuckDB, memmapped token arrays and atomic renames want
one): the run's workdir is a node-local *mirror* of the URL, and `RemoteWorkdir` keeps the
mirror and the bucket in step around the runner's steps (mixer/stage.py, `run_stage`):

- before a stage, and again before its `finish`, the driver pulls what changed in the bucket;
- each task pulls (once per node and stage) before it runs, and pushes what it wrote after;
- a push uploads data first and `state/` (the task and stage records) last, so a record in the
  bucket is the commit marker of the work it records: a run killed at any point leaves work
  without a record, which the next run does again.

A pull or push compares three views of every file: the bucket (listed: size, ETag, time), the
mirror (stat: size, mtime) and the mirror's index (.mixer-sync/index.sqlite: what both held
at the last sync). A file changed in the bucket since the last sync is downloaded, one changed
only in the mirror is uploaded, one deleted on one side (and unchanged on the other) is deleted
on the other. A synced file's mtime is set from its object (the store's time in seconds, plus
a sub-second part taken from its ETag), so every mirror of the bucket, on any node or after
the cache is wiped, shows the same sizes and mtimes, and the runner's fingerprints (names,
sizes, mtimes) agree: a rerun from a fresh mirror skips finished stages.

Files named `.tmp-*` (the atomic writers' temporaries) and `state/.lock` never sync; `mixer.log`
is uploaded by the driver at the end of the run (pulled like any file, so the log goes on). Pulls and pushes into one mirror are
serialised by a file lock (.mixer-sync/lock), so the workers of a node share one mirror.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
import re
import secrets
import sqlite3
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mixer.errors import MixerError

SYNC_DIR = ".mixer-sync"  # in the mirror: the index, the lock, the pulled generation
NEVER_SYNCED = {"state/.lock"}  # the lock guards this mirror only
DRIVER_PUSHES = {"mixer.log"}  # appended all run long: uploaded by the driver at the end
TMP_PREFIX = ".tmp-"
STATE_PREFIX = "state/"  # published last: the records are the commit markers
THREADS = 8  # concurrent transfers per pull or push

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/+(.*)$")


def workdir_url(path) -> str | None:
    """The fsspec URL a workdir names (`s3://b/run`, also as `Path` spells it: `s3:/b/run`),
    or None for a local path."""
    if path is None:
        return None
    m = _URL.match(str(path))
    if not m or len(m.group(1)) < 2:  # "C:/..." is a Windows drive, not a URL
        return None
    return f"{m.group(1)}://{m.group(2)}".rstrip("/")


def check_local_workdir(path, what: str = "this command") -> None:
    """A one-line MixerError when a command that works on local paths only is given a URL."""
    url = workdir_url(path)
    if url:
        raise MixerError(
            f"workdir {url}: {what} needs a local or shared-filesystem path; an object-storage "
            "workdir works with `mixer run RECIPE --workdir URL` only"
        )


def default_mirror(url: str) -> Path:
    """$MIXER_CACHE/workdirs/<name>-<hash> (default cache: ~/.cache/mixer)."""
    cache = Path(os.environ.get("MIXER_CACHE") or Path.home() / ".cache" / "mixer")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", url.split("://", 1)[-1]).strip("-")[-60:]
    return cache / "workdirs" / f"{slug}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def _seconds(info: dict) -> int:
    """The object's modification time, whole seconds (what every store and listing agrees on)."""
    for key in ("LastModified", "last_modified", "mtime", "updated", "timeCreated", "created"):
        v = info.get(key)
        if v is None:
            continue
        if isinstance(v, dt.datetime):
            return int(v.timestamp())
        if isinstance(v, int | float):
            return int(v)
        with contextlib.suppress(ValueError):
            return int(dt.datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp())
    return 0


def _tag(info: dict) -> str:
    """What identifies the object's content: its ETag (or the store's hash), else size+time."""
    for key in ("ETag", "etag", "md5Hash", "crc32c", "md5"):
        if info.get(key):
            return str(info[key]).strip('"')
    return f"{info.get('size')}:{_seconds(info)}"


def _mtime_ns(info: dict) -> int:
    """The mtime every mirror gives a synced file: the object's time in seconds, and a
    sub-second part from its ETag, so a rewrite within one second still changes the mtime."""
    return _seconds(info) * 1_000_000_000 + zlib.crc32(_tag(info).encode()) % 1_000_000_000


class RemoteWorkdir:
    """A workdir URL and its local mirror. Pickles as (url, mirror, generation): tasks carry it
    to any worker or node, where it pulls into the same mirror path before the task runs."""

    def __init__(self, url: str, mirror: str | Path | None = None, generation: str = ""):
        if not workdir_url(url):
            raise MixerError(f"{url}: not a URL")
        self.url = workdir_url(url)
        self.mirror = Path(mirror) if mirror else default_mirror(url)
        self.generation = generation
        self._fs = None
        self._fresh = False  # the driver's: the mirror matches the bucket (nothing ran elsewhere)

    def __getstate__(self):
        return {"url": self.url, "mirror": str(self.mirror), "generation": self.generation}

    def __setstate__(self, state):
        self.url, self.mirror = state["url"], Path(state["mirror"])
        self.generation, self._fs, self._fresh = state["generation"], None, False

    def __repr__(self) -> str:
        return f"RemoteWorkdir({self.url!r}, mirror={str(self.mirror)!r})"

    # -------------------------------------------------------------- the store

    @property
    def fs(self):
        if self._fs is None:
            try:
                import fsspec
            except ImportError:
                raise MixerError(
                    f"{self.url}: a workdir URL needs fsspec (pip install 'mixer[s3]')"
                ) from None
            try:
                self._fs, self._root = fsspec.core.url_to_fs(self.url, use_listings_cache=False)
            except ImportError as e:
                raise MixerError(f"{self.url}: {e}") from None
            self._root = self._root.rstrip("/")
        return self._fs

    def _remote(self, rel: str) -> str:
        self.fs  # noqa: B018 (sets _root)
        return f"{self._root}/{rel}"

    def list_remote(self) -> dict[str, dict]:
        """{relative path: object info} of every object under the URL."""
        fs = self.fs
        try:
            found = fs.find(self._root, detail=True)  # {} for an empty prefix
        except OSError as e:  # no bucket, no rights: an error, never an empty workdir
            raise MixerError(f"{self.url}: cannot list the workdir ({e})") from None
        out = {}
        prefix = self._root + "/"
        for path, info in found.items():
            path = path.rstrip("/")
            if info.get("type", "file") != "file" or not path.startswith(prefix):
                continue
            rel = path[len(prefix) :]
            if not _skipped(rel):
                out[rel] = info
        return out

    # -------------------------------------------------------------- the mirror

    def _scan(self) -> dict[str, tuple[int, int]]:
        """{relative path: (size, mtime_ns)} of the mirror's files that sync."""
        out = {}
        root = str(self.mirror)
        for dirpath, dirnames, filenames in os.walk(root):
            if dirpath == root and SYNC_DIR in dirnames:
                dirnames.remove(SYNC_DIR)
            rel_dir = os.path.relpath(dirpath, root)
            for name in filenames:
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                if _skipped(rel):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # removed while we looked
                    continue
                out[rel.replace(os.sep, "/")] = (st.st_size, st.st_mtime_ns)
        return out

    @contextlib.contextmanager
    def _locked(self):
        """The node's lock on the mirror and its index (other processes wait)."""
        with _node_lock(self.mirror / SYNC_DIR / "lock"):
            db = sqlite3.connect(self.mirror / SYNC_DIR / "index.sqlite", timeout=600)
            try:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS files "
                    "(path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER, tag TEXT)"
                )
                yield db
                db.commit()
            finally:
                db.close()

    @staticmethod
    def _index(db) -> dict[str, tuple[int, int, str]]:
        return {p: (s, m, t) for p, s, m, t in db.execute("SELECT * FROM files")}

    # -------------------------------------------------------------- pull and push

    def pull(self) -> dict:
        """Bring the mirror up to the bucket: download what changed there since the last sync,
        delete what was deleted there (unless changed here since). Returns counts."""
        with self._locked() as db:
            remote, index, local = self.list_remote(), self._index(db), self._scan()
            get, drop = [], []
            for rel, info in remote.items():
                known = index.get(rel)
                if known and known[2] == _tag(info) and local.get(rel) == known[:2]:
                    continue  # in step
                if known and known[2] == _tag(info) and rel in local:
                    continue  # changed here only: the next push uploads it
                get.append((rel, info))
            for rel, known in index.items():
                if rel not in remote:
                    if local.get(rel) == known[:2]:
                        drop.append(rel)  # deleted in the bucket, unchanged here
                    elif rel not in local:
                        db.execute("DELETE FROM files WHERE path = ?", (rel,))

            def download(item):
                rel, info = item
                dest = self.mirror / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(f"{TMP_PREFIX}{dest.name}.{secrets.token_hex(4)}")
                try:
                    self.fs.get_file(self._remote(rel), str(tmp))
                    os.replace(tmp, dest)
                except FileNotFoundError:  # deleted since the listing
                    tmp.unlink(missing_ok=True)
                    return None
                except BaseException:
                    tmp.unlink(missing_ok=True)
                    raise
                m = _mtime_ns(info)
                os.utime(dest, ns=(m, m))
                return rel, dest.stat().st_size, m, _tag(info)

            rows = [r for r in _threaded(download, get) if r]
            db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", rows)
            for rel in drop:
                (self.mirror / rel).unlink(missing_ok=True)
                db.execute("DELETE FROM files WHERE path = ?", (rel,))
        self._fresh = True
        return {"downloaded": len(rows), "deleted": len(drop)}

    def refresh(self) -> None:
        """The driver's pull, skipped while nothing can have changed the bucket behind the
        mirror's back (one driver per URL; tasks since the last pull ran on this mirror)."""
        if not self._fresh:
            self.pull()

    def push(self, only: tuple[str, ...] | None = None) -> dict:
        """Upload what changed in the mirror since the last sync and delete in the bucket what
        was deleted here: data first, `state/` (the records) last. `only`: these relative
        paths, whatever the exclusions say (the driver's mixer.log)."""
        with self._locked() as db:
            index = self._index(db)
            if only is not None:
                local = {}
                for rel in only:
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(self.mirror / rel)
                        local[rel] = (st.st_size, st.st_mtime_ns)
            else:
                local = {k: v for k, v in self._scan().items() if k not in DRIVER_PUSHES}
            changed = sorted(rel for rel, st in local.items() if index.get(rel, (0, 0))[:2] != st)
            gone = [] if only is not None else sorted(set(index) - set(local) - DRIVER_PUSHES)

            def upload(rel):
                path = self.mirror / rel
                try:
                    before = path.stat()
                except FileNotFoundError:
                    return None
                target = self._remote(rel)
                try:
                    self.fs.put_file(str(path), target)
                    info = self.fs.info(target)
                except (FileNotFoundError, PermissionError) as e:  # no bucket, no rights
                    raise MixerError(f"{self.url}: cannot write {rel} ({e})") from None
                m = _mtime_ns(info)
                after = path.stat()
                if (after.st_ino, after.st_size, after.st_mtime_ns) != (
                    before.st_ino,
                    before.st_size,
                    before.st_mtime_ns,
                ):
                    return None  # rewritten meanwhile: the next push uploads it again
                os.utime(path, ns=(m, m))
                return rel, after.st_size, m, _tag(info)

            def delete(rel):
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(self._remote(rel))
                return rel

            n_up = n_del = 0
            for state in (False, True):  # data, then the records
                rows = [
                    r for r in _threaded(upload, [p for p in changed if _is_state(p) == state]) if r
                ]
                db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", rows)
                dels = _threaded(delete, [p for p in gone if _is_state(p) == state])
                db.executemany("DELETE FROM files WHERE path = ?", [(r,) for r in dels])
                db.commit()
                n_up, n_del = n_up + len(rows), n_del + len(dels)
        return {"uploaded": n_up, "deleted": n_del}

    # -------------------------------------------------------------- around a stage's tasks

    def for_tasks(self, shared: bool = False) -> RemoteWorkdir:
        """Push what the driver wrote (setup, task listing), and return the copy the tasks
        carry: a new generation, already pulled into the driver's own mirror. `shared`: the
        tasks run on this machine (local workers), in this very mirror."""
        self.push()
        self._fresh = self._fresh and shared
        gen = secrets.token_hex(8)
        self._set_generation(gen)
        return RemoteWorkdir(self.url, self.mirror, gen)

    def before_task(self) -> None:
        """On a worker: pull once per node and generation (the first task of a stage there)."""
        if self._generation() == self.generation:
            return
        with self._node_gate():
            if self._generation() != self.generation:
                self.pull()
                self._set_generation(self.generation)

    def _generation(self) -> str:
        try:
            return (self.mirror / SYNC_DIR / "generation").read_text()
        except FileNotFoundError:
            return ""

    def _set_generation(self, gen: str) -> None:
        d = self.mirror / SYNC_DIR
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f"generation.{os.getpid()}"
        tmp.write_text(gen)
        os.replace(tmp, d / "generation")

    def _node_gate(self):
        return _node_lock(self.mirror / SYNC_DIR / "gate")


@contextlib.contextmanager
def _node_lock(path: Path):
    """An fcntl lock on `path` held by one process of this node at a time (others wait)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _skipped(rel: str) -> bool:
    return rel in NEVER_SYNCED or rel.rsplit("/", 1)[-1].startswith(TMP_PREFIX)


def _is_state(rel: str) -> bool:
    return rel.startswith(STATE_PREFIX)


def _threaded(fn, items: list) -> list:
    if len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(min(THREADS, len(items))) as pool:
        return list(pool.map(fn, items))


def map_paths(value, url: str, mirror: Path):
    """`value` (a recipe section: dicts, lists, strings) with every path under the workdir URL
    replaced by the same path in the mirror (a model the run trains into its workdir)."""
    if isinstance(value, dict):
        return {k: map_paths(v, url, mirror) for k, v in value.items()}
    if isinstance(value, list):
        return [map_paths(v, url, mirror) for v in value]
    if isinstance(value, str) and workdir_url(value):
        full = workdir_url(value)
        if full == url or full.startswith(url + "/"):
            return str(mirror / full[len(url) :].lstrip("/"))
    return value
