"""`IngestStage`: the plan (shards -> units -> part numbers), reruns that skip unchanged units,
pruning of what a changed plan left behind, and the summary; `ingest`, the thin wrapper the
`mixer ingest` command and the tests call."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import orjson

from mixer.errors import MixerError
from mixer.ingest.ids import _read_parts, _state, duplicate_ids
from mixer.ingest.records import FieldMap
from mixer.ingest.shard import _os_error, ingest_shard
from mixer.inputs import item_key, resolve_each
from mixer.io import (
    clean_temporaries,
    file_fingerprint,
    read_json,
    write_json_atomic,
)
from mixer.schema import (
    part_name,
    state_dir,
)
from mixer.stage import RunContext, Stage, Task, run_stage


@dataclass(frozen=True)
class IngestSource:
    """One source of an ingest: its name (None: each document's own `source` field, else the
    shard's folder name), its inputs (files, folders, globs, URLs) and its field map."""

    name: str | None
    inputs: list[str] | tuple[str, ...]
    fields: FieldMap = field(default_factory=FieldMap)


def _record_path(workdir: Path, index: int) -> Path:
    return _state(workdir) / part_name(index, ".json")


def _outputs_of(workdir: Path, record: dict) -> list[Path]:
    """The files an ingest record names (relative to the workdir; absolute in older ones)."""
    return [Path(os.path.abspath(Path(workdir) / p)) for p in record["stats"]["outputs"]]


def _ends_unit(shard: str, size: int, group_below: int) -> bool:
    """Whether a unit of small shards ends after `shard`: with probability size / (2 x
    group_below), decided by a hash of the shard's file name (the same in every run, and
    wherever the folder is)."""
    name = PurePosixPath(shard.split("://", 1)[-1]).name
    h = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little")
    return h / 2**64 < size / (2 * group_below)


def _record_shards(record: dict) -> list[str] | None:
    """The shards a task record covers (records of older versions name one shard)."""
    if "shards" in record:
        return record["shards"]
    return [record["shard"]] if "shard" in record else None


def _unit_key(source: str | None, shards: list[str]) -> str:
    """parts.json's key of a unit: [source, shard, ...] as JSON."""
    return orjson.dumps([source, *shards]).decode()


PRUNE_MODES = ("inputs", "sources")
INGEST_VERSION = 4  # bump when the output of a task changes for the same input
# Shards smaller than this (bytes on disk) are ingested together, consecutive ones of a source
# up to 4x as many bytes, into one part per source: a thousand files of a few KB are a few
# tasks and parts, not a thousand of each (a part costs about a millisecond in every stage).
GROUP_BELOW_BYTES = 8 << 20
UNIT_SHARDS = 4096  # the most shards one task ingests together


class IngestStage(Stage):
    """Raw shards -> documents/ and quarantine/, one task per unit: a shard, or consecutive
    shards of one source smaller than `group_below` bytes, ingested together into one part per
    source (0: every shard alone). A unit's part number is stable while its shards stay the
    same; a unit whose shards change (one added or removed) is ingested again as a new one.
    Where small shards' units end depends on each shard's own name and size, not on the
    shards before it, so adding or removing one changes its own unit only.

    `prune` says which earlier outputs are stale: "inputs" (the command line's default): a
    shard that an input of this run (the same folder or glob, for the same source) no longer
    yields; "sources" (a recipe, which lists every input of its sources): any shard that a
    source of this run no longer lists. Only files named by ingest's own records are removed.
    """

    name = "ingest"
    progress_unit = "B"

    def __init__(
        self,
        workdir: str | Path,
        sources: list[IngestSource],
        prune: str = "inputs",
        group_below: int = GROUP_BELOW_BYTES,
    ):
        if prune not in PRUNE_MODES:
            raise ValueError(f"prune must be one of {PRUNE_MODES}")
        if not isinstance(group_below, int) or group_below < 0:
            raise MixerError(f"group_below: {group_below!r} is not a size in bytes (0: off)")
        sources = list(sources)
        for s in sources:
            if s.name is not None and (not isinstance(s.name, str) or not s.name):
                raise MixerError(f"source name {s.name!r}: must be a non-empty string")
            if not s.inputs:
                raise MixerError(f"source {s.name!r}: no inputs")
        # The stage's config holds only what every task's output depends on; each task's
        # source, shard and fields are in its own fingerprint, so adding an input (or spelling
        # one differently) reruns only the tasks it changes.
        super().__init__(workdir, {"version": INGEST_VERSION})
        self.sources = sources
        self.prune = prune
        self.group_below = group_below
        self._plan_cache = None
        self._units_cache = None
        self._stamps: dict[str, list[int]] = {}  # shard -> [size, mtime_ns], once per run
        self._run_token = None
        self._skipped = 0

    def __getstate__(self):  # workers get paths and settings only, not the resolved plan
        d = dict(self.__dict__)
        d["_plan_cache"] = d["_units_cache"] = None
        d["_stamps"] = {}
        return d

    # -- planning (driver)
    def _plan(self) -> dict:
        """{(source, shard): {"fields": FieldMap, "items": [item keys]}} in a stable order."""
        if self._plan_cache is not None:
            return self._plan_cache
        plan: dict[tuple, dict] = {}
        for s in self.sources:
            for key, shards in resolve_each(list(s.inputs)).items():
                for shard in shards:
                    entry = plan.setdefault((s.name, shard), {"fields": s.fields, "items": []})
                    if entry["fields"] != s.fields:
                        raise MixerError(
                            f"source {s.name!r}: shard {shard} is listed twice with different fields"
                        )
                    if key not in entry["items"]:
                        entry["items"].append(key)
        self._plan_cache = dict(
            sorted(plan.items(), key=lambda kv: (kv[0][0] is not None, kv[0][0] or "", kv[0][1]))
        )
        return self._plan_cache

    def _units(self) -> list[dict]:
        """The plan cut into units of work, in plan order: {"key", "source", "shards", "stamps"
        ([size, mtime_ns] per shard), "bytes", "fields", "items"}. A shard of `group_below` bytes or more is a unit alone; smaller
        ones of the same source and fields join the open unit, which closes after a shard that
        `_ends_unit` picks (about every 2 x group_below bytes), or before it would pass
        4 x group_below bytes or UNIT_SHARDS shards. Never depends on the workers."""
        if self._units_cache is not None:
            return self._units_cache
        units: list[dict] = []
        open_unit = None  # the unit small shards may still join
        limit = 4 * self.group_below
        for (source, shard), entry in self._plan().items():
            stamp = self._stamp(shard)
            size = stamp[0]
            small = size < self.group_below
            if not (
                small
                and open_unit is not None
                and open_unit["source"] == source
                and open_unit["fields"] == entry["fields"]
                and open_unit["bytes"] + size <= limit
                and len(open_unit["shards"]) < UNIT_SHARDS
            ):
                open_unit = {
                    "source": source,
                    "shards": [],
                    "stamps": [],
                    "bytes": 0,
                    "fields": entry["fields"],
                    "items": [],
                }
                units.append(open_unit)
            open_unit["shards"].append(shard)
            open_unit["stamps"].append(stamp)
            open_unit["bytes"] += size
            open_unit["items"] += [i for i in entry["items"] if i not in open_unit["items"]]
            if not small or _ends_unit(shard, size, self.group_below):
                open_unit = None
        for unit in units:
            unit["key"] = _unit_key(unit["source"], unit["shards"])
        self._units_cache = units
        return units

    def _stamp(self, shard: str) -> list[int]:
        """[size, mtime_ns] of a shard, looked up once per run (planning, tasks, fingerprint)."""
        if shard not in self._stamps:
            fp = _stat(shard)
            self._stamps[shard] = [fp["size"], fp["mtime_ns"]]
        return self._stamps[shard]

    def input_fingerprint(self):
        out = []
        for (source, shard), entry in self._plan().items():
            fields = dataclasses.astuple(entry["fields"])
            out.append([source, shard, *self._stamp(shard), fields])
        return out

    def outputs(self) -> list[Path]:
        parts = _read_parts(self.workdir)
        files = []
        for unit in self._units():
            index = parts.get(unit["key"])
            rec = read_json(_record_path(self.workdir, index)) if index is not None else None
            if rec is None:
                return [_state(self.workdir) / "missing-record"]  # not done: never exists
            files += _outputs_of(self.workdir, rec)
        return files

    def setup(self, ctx: RunContext) -> None:
        self._plan()  # resolve inputs first: a bad input fails before anything is written
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            probe = self.workdir / ".mixer-write-test"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise MixerError(f"output {self.workdir}: not writable ({e.strerror})") from None
        clean_temporaries(self.workdir / "documents")
        clean_temporaries(self.workdir / "quarantine")

    def tasks(self) -> list[Task]:
        plan = self._plan()
        units = self._units()
        parts = _assign_parts(self.workdir, [u["key"] for u in units])
        self._prune(plan, parts, {u["key"] for u in units})
        self._run_token = f"{time.time_ns()}-{os.getpid()}"
        tasks, skipped = [], 0
        for unit in units:
            source, shards, fields = unit["source"], unit["shards"], unit["fields"]
            stamps, index = unit["stamps"], parts[unit["key"]]
            rec = read_json(_record_path(self.workdir, index))
            epoch = 0
            if rec and rec.get("source") == source and _record_shards(rec) == shards:
                epoch = rec.get("epoch", 0)
                complete = all(p.exists() for p in _outputs_of(self.workdir, rec))
                if not complete:
                    epoch += 1  # an output was removed: the task must run again
                elif rec.get("fingerprint") == stamps and rec.get("fields") == dataclasses.asdict(
                    fields
                ):
                    skipped += len(shards)
            tasks.append(
                Task(
                    key=part_name(index, ""),
                    args={
                        "source": source,
                        "shards": shards,
                        "index": index,
                        "fields": fields,
                        "items": unit["items"],
                        "epoch": epoch,
                        "token": self._run_token,
                    },
                    fingerprint={
                        "source": source,
                        "shards": shards,
                        "stamps": stamps,
                        "fields": dataclasses.asdict(fields),
                        "epoch": epoch,
                    },
                    weight=max(1, unit["bytes"]),
                )
            )
        self._skipped = skipped
        return tasks

    def _prune(self, plan: dict, parts: dict, current: set[str]) -> None:
        """Remove the outputs of units (`current`: this run's) that this run's sources no
        longer yield, or that now fall into other units."""
        names = {s for s, _ in plan} | {s.name for s in self.sources}
        items: dict = {}
        for (s, _), entry in plan.items():
            items.setdefault(s, set()).update(entry["items"])
        for s in self.sources:  # an input that yields nothing now still names its old shards
            items.setdefault(s.name, set()).update(item_key(i) for i in s.inputs)
        stale = []
        for key, index in parts.items():
            if key in current or not key.startswith("["):
                continue
            rec = read_json(_record_path(self.workdir, index))
            if not rec or rec.get("source") not in names:
                continue
            if self.prune == "sources" or set(rec.get("items", [])) & items.get(
                rec.get("source"), set()
            ):
                stale.append((key, index, rec))
        if not stale:
            return
        for key, index, rec in stale:
            for p in _outputs_of(self.workdir, rec):
                p.unlink(missing_ok=True)
            _record_path(self.workdir, index).unlink(missing_ok=True)
            del parts[key]
        write_json_atomic(_state(self.workdir) / "parts.json", parts)

    # -- the work (any worker)
    def run_task(self, task: Task) -> dict:
        a = task.args
        workdir = str(self.workdir)
        record_path = _record_path(self.workdir, a["index"])
        previous = read_json(record_path)
        stamps = []
        for shard in a["shards"]:
            try:
                fp = file_fingerprint(shard, with_hash=False)
            except OSError as e:
                raise _os_error(e, shard, workdir) from None
            stamps.append([fp["size"], fp["mtime_ns"]])
        stats = ingest_shard(workdir, a["shards"], a["index"], a["source"], a["fields"])
        if previous and _record_shards(previous) == a["shards"]:
            # outputs of an older version of these shards that this run did not rewrite
            now = set(_outputs_of(self.workdir, {"stats": stats}))
            for stale in set(_outputs_of(self.workdir, previous)) - now:
                stale.unlink(missing_ok=True)
        try:
            write_json_atomic(
                record_path,
                {
                    "source": a["source"],
                    "shards": a["shards"],
                    "items": a["items"],
                    "fields": dataclasses.asdict(a["fields"]),
                    "fingerprint": stamps,
                    "epoch": a["epoch"],
                    "stats": stats,
                },
            )
        except OSError as e:
            raise _os_error(e, str(record_path), workdir) from None
        return {**stats, "token": a["token"]}

    # -- the reduce (driver)
    def finish(self, results: list[dict]) -> dict:
        duplicates = duplicate_ids(self.workdir)  # over every part of the workdir, once
        summary = _summary(results, duplicates)
        fresh = sum(len(r["files"]) for r in results if r.get("token") == self._run_token)
        summary["shards_ingested"] = fresh
        summary["shards_skipped"] = summary["shards"] - fresh
        write_json_atomic(
            state_dir(self.workdir) / "ingest.json", summarize(self.workdir, duplicates=duplicates)
        )
        return summary


def _stat(shard: str) -> dict:
    """Size and mtime of a shard; a shard that vanished or can't be read is a one-line error."""
    try:
        return file_fingerprint(shard, with_hash=False)
    except OSError as e:
        raise MixerError(f"can't read {shard}: {e.strerror or type(e).__name__}") from None


def _assign_parts(workdir: Path, keys: list[str]) -> dict[str, int]:
    """Stable part numbers per unit: known units keep theirs, new ones get the next free
    numbers (never one used before in this workdir, even by an older layout)."""
    path = _state(workdir) / "parts.json"
    parts: dict[str, int] = read_json(path, {})
    next_index = max(parts.values(), default=-1) + 1
    for p in _state(workdir).glob("part-*.json") if _state(workdir).is_dir() else []:
        try:  # a record whose pair was pruned from parts.json still holds its number
            next_index = max(next_index, int(p.name.split(".")[0].split("-")[1]) + 1)
        except (IndexError, ValueError):
            continue
    changed = False
    for key in keys:
        if key not in parts:
            parts[key] = next_index
            next_index += 1
            changed = True
    if changed:
        write_json_atomic(path, parts)
    return parts


def _summary(stats: list[dict], duplicates: dict[str, int]) -> dict:
    totals: Counter = Counter()
    reasons: Counter = Counter()
    per_source: dict[str, Counter] = {}
    stream_errors = []
    for s in stats:
        totals.update({k: s[k] for k in ("lines_read", "ingested", "quarantined")})
        reasons.update(s["reasons"])
        for src, c in s["per_source"].items():
            per_source.setdefault(src, Counter()).update(c)
        stream_errors += s.get("stream_errors", [])
        if s.get("stream_error"):  # a record of an older version: one shard per task
            stream_errors.append({"file": s["file"], **s["stream_error"]})
    out = {
        "shards": sum(len(s.get("files") or [s.get("file")]) for s in stats),
        "lines_read": totals["lines_read"],
        "ingested": totals["ingested"],
        "quarantined": totals["quarantined"],
        "quarantine_reasons": dict(sorted(reasons.items())),
        "sources": {
            src: {
                "ingested": c["ingested"],
                "quarantined": c["quarantined"],
                "duplicate_ids": duplicates.get(src, 0),
            }
            for src, c in sorted(per_source.items())
        },
    }
    if stream_errors:
        out["stream_errors"] = stream_errors
    return out


def summarize(
    workdir: str | Path, indices: list[int] | None = None, duplicates: dict | None = None
) -> dict:
    """Totals over every ingested (source, shard) of the workdir (or the part numbers given).
    Duplicate ids are counted per source over every part of the workdir."""
    workdir = Path(workdir)
    if indices is None:
        indices = sorted(_read_parts(workdir).values())
    stats = []
    for index in indices:
        rec = read_json(_record_path(workdir, index))
        if rec and "stats" in rec:
            stats.append(rec["stats"])
    return _summary(stats, duplicate_ids(workdir) if duplicates is None else duplicates)


def ingest(
    inputs: list[str],
    workdir: str | Path,
    source: str | None = None,
    fields: FieldMap | None = None,
    workers: int | None = None,
    progress: bool = True,
    prune: str = "inputs",
    echo=None,
    group_below: int = GROUP_BELOW_BYTES,
) -> dict:
    """Ingest shards into `workdir` (one source: `source`, or each document's own). Returns the
    summary (this run's inputs; the whole workdir's is in state/ingest.json). Shards under
    `group_below` bytes are ingested together (IngestStage)."""
    from mixer.executor import current_executor

    stage = IngestStage(
        workdir, [IngestSource(source, list(inputs), fields or FieldMap())], prune, group_below
    )
    executor = current_executor(workers)
    ctx = RunContext(Path(workdir), executor, progress, echo or (lambda _msg: None))
    summary = run_stage(stage, ctx)
    if stage._run_token is None:  # the whole stage was up to date
        summary = {**summary, "shards_skipped": summary["shards"], "shards_ingested": 0}
    return summary
