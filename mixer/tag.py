"""The tag stage: run taggers over every documents part and write attribute parts beside them.

`TagStage` has one task per (source, documents part), weighted by the part's bytes; a task
runs that source's taggers over the part in batches and writes one attributes part per tagger
(atomically). Taggers are built once per worker process and kept (models load once). A task is
done when the runner's record matches the documents part and every tagger's fingerprint
(settings and model file hashes) and its attribute parts exist, so changing one part or one
model reruns only what reads it.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from mixer.errors import MixerError
from mixer.io import (
    clean_temporaries,
    config_hash,
    file_fingerprint,
    parquet_writer_atomic,
    read_json,
    write_json_atomic,
)
from mixer.schema import (
    attributes_dir,
    documents_dir,
    list_parts,
    list_sources,
    part_index,
    part_name,
    state_dir,
)
from mixer.stage import Stage, Task, tree_fingerprint
from mixer.taggers import make_tagger

BATCH_ROWS = 1024
READ_COLUMNS = ["id", "text", "source", "metadata"]

_taggers: dict[tuple[str, str], object] = {}  # per process: (tagger, settings hash) -> tagger


def _tagger(name: str, settings: dict, fingerprint: str | None = None):
    # the fingerprint covers model file contents: a retrained model at the same path reloads
    key = (name, fingerprint or config_hash(settings))
    t = _taggers.get(key)
    if t is None:
        t = make_tagger(name, settings)
        t.setup()
        _taggers[key] = t
    return t


def tag_part(
    workdir: Path, source: str, part: Path, names: list[str], specs: dict, keys: dict | None = None
) -> dict:
    """Tag one documents part with `names`; returns {tagger: rows}."""
    index = part_index(part)
    pf = pq.ParquetFile(part)
    taggers = {name: _tagger(name, specs[name], (keys or {}).get(name)) for name in names}
    outputs = {}
    try:
        for name in names:
            path = attributes_dir(workdir, name, source) / part_name(index)
            outputs[name] = [path, None, None]
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=READ_COLUMNS):
            docs = pa.Table.from_batches([batch])
            for name in names:
                feats = taggers[name].tag(docs)
                if feats.num_rows != docs.num_rows:
                    raise RuntimeError(
                        f"tagger {name} returned {feats.num_rows} rows for {docs.num_rows}"
                    )
                table = feats.add_column(0, "id", docs.column("id"))
                slot = outputs[name]
                if slot[1] is None:
                    slot[2] = parquet_writer_atomic(slot[0], table.schema)
                    slot[1] = slot[2].__enter__()
                slot[1].write_table(table)
        for name in names:
            slot = outputs[name]
            if slot[1] is None:  # an empty documents part: write an empty table with the schema
                empty = pa.Table.from_batches([], schema=pf.schema_arrow.select(READ_COLUMNS))
                feats = taggers[name].tag(empty)
                table = feats.add_column(0, "id", empty.column("id"))
                slot[2] = parquet_writer_atomic(slot[0], table.schema)
                slot[1] = slot[2].__enter__()
                slot[1].write_table(table)
            slot[2].__exit__(None, None, None)
            slot[1] = "done"
    except BaseException as e:
        for slot in outputs.values():
            if slot[2] is not None and slot[1] != "done":
                slot[2].__exit__(type(e), e, None)
        raise
    return {name: pf.metadata.num_rows for name in names}


class TagStage(Stage):
    """Taggers over documents: `taggers` maps each source to the taggers it gets, `settings`
    each tagger to its settings. One task per (source, documents part)."""

    group = "tag"
    progress_unit = "B"

    def __init__(
        self,
        workdir: str | Path,
        taggers: dict[str, list[str]],
        settings: dict[str, dict] | None = None,
        name: str = "tag",
        group: str | None = None,
    ):
        taggers = {s: list(ts) for s, ts in taggers.items() if ts}
        used = sorted({t for ts in taggers.values() for t in ts})
        settings = settings or {}
        super().__init__(
            workdir,
            {"taggers": taggers, "settings": {t: dict(settings.get(t) or {}) for t in used}},
        )
        self.name = name
        self.group = group or name
        self._keys: dict[str, str] | None = None

    # -- what it reads and writes
    def keys(self) -> dict[str, str]:
        """Each tagger's fingerprint: its settings and the hashes of its model files."""
        if self._keys is None:
            self._keys = {
                t: config_hash(make_tagger(t, s).fingerprint())
                for t, s in self.config["settings"].items()
            }
        return self._keys

    def setup(self, ctx) -> None:
        self._keys = None  # models may have changed since the stage object was built
        for s, names in self.config["taggers"].items():
            for name in names:  # a killed run's half-written parts (the lock is held)
                clean_temporaries(attributes_dir(self.workdir, name, s))
        present = set(list_sources(self.workdir))
        if not present:
            raise MixerError(
                f"no documents under {documents_dir(self.workdir)}: run `mixer ingest` first"
            )
        missing = sorted(set(self.config["taggers"]) - present)
        if missing:
            raise MixerError(f"no documents for source {missing[0]!r} in {self.workdir}")

    def task_config(self):
        return None  # each task's fingerprint names the taggers (and their keys) it runs

    def input_fingerprint(self):
        return {
            "keys": self.keys(),
            "docs": tree_fingerprint(
                *(documents_dir(self.workdir, s) for s in self.config["taggers"])
            ),
        }

    def outputs(self):
        """Every attribute part: a lost one makes the stage run (and only its task)."""
        return [
            attributes_dir(self.workdir, t, s) / part.name
            for s, ts in self.config["taggers"].items()
            for part in list_parts(documents_dir(self.workdir, s))
            for t in ts
        ]

    # -- the work
    def tasks(self) -> list[Task]:
        keys = self.keys()
        out = []
        for source, names in self.config["taggers"].items():
            for part in list_parts(documents_dir(self.workdir, source)):
                fp = file_fingerprint(part, with_hash=False)
                out.append(
                    Task(
                        key=f"{source}/{part.name}",
                        args=(source, str(part), names, {n: keys[n] for n in names}),
                        fingerprint={
                            "documents": [fp["size"], fp["mtime_ns"]],
                            "taggers": {n: keys[n] for n in names},
                        },
                        weight=fp["size"],
                        outputs=tuple(
                            str(attributes_dir(self.workdir, n, source) / part.name) for n in names
                        ),
                    )
                )
        return out

    def run_task(self, task: Task) -> dict:
        source, part, names, keys = task.args
        specs = {n: self.config["settings"][n] for n in names}
        return tag_part(self.workdir, source, Path(part), names, specs, keys)

    def finish(self, results: list[dict]) -> dict:
        self._remove_stale()
        rows: dict[str, int] = {}
        for r in results:
            for name, n in r.items():
                rows[name] = rows.get(name, 0) + n
        return {"rows": rows, "parts": len(results)}

    def _remove_stale(self) -> None:
        """Delete attribute parts this stage wrote before whose documents part is gone: only
        parts named in mixer's own record (state/tag/written/), never other files."""
        for source, names in self.config["taggers"].items():
            now = sorted(p.name for p in list_parts(documents_dir(self.workdir, source)))
            for name in names:
                # the source's directory name: safe for any source string
                folder = documents_dir(self.workdir, source).name
                record = state_dir(self.workdir) / "tag" / "written" / name / f"{folder}.json"
                before = read_json(record, [])
                for stale in sorted(set(before) - set(now)):
                    (attributes_dir(self.workdir, name, source) / stale).unlink(missing_ok=True)
                if before != now:
                    write_json_atomic(record, now)


def tag_workdir(
    workdir: str | Path,
    taggers: list[str],
    settings: dict[str, dict] | None = None,
    workers: int | None = None,
    sources: list[str] | None = None,
    progress: bool = True,
    executor=None,
) -> dict:
    """Run `taggers` over the documents of `sources` (all by default) through the stage runner.
    Returns {taggers, parts_tagged, parts_skipped, rows}."""
    from mixer.executor import LocalExecutor, _current, current_executor
    from mixer.stage import RunContext, run_stage, workdir_lock

    workdir = Path(workdir)
    settings = settings or {}
    unknown = sorted(set(settings) - set(taggers))
    if unknown:
        raise MixerError(f"--set given for tagger {unknown[0]!r}, which is not in --taggers")
    ex = executor or current_executor(workers)
    owned = executor is None and isinstance(ex, LocalExecutor) and ex is not _current[0]
    ctx = RunContext(workdir, ex, progress=progress, echo=lambda m: None)
    try:
        with workdir_lock(workdir):
            all_sources = list_sources(workdir)
            if not all_sources:
                raise MixerError(
                    f"no documents under {documents_dir(workdir)}: run `mixer ingest` first"
                )
            stage = TagStage(
                workdir,
                {s: list(taggers) for s in (sources or all_sources)},
                settings,
                name="tag." + "+".join(taggers),
                group="tag",
            )
            result = run_stage(stage, ctx)
    finally:
        if owned:  # a pool made here for this call
            ex.close()
    st = ctx.stats[stage.name]
    return {
        "taggers": list(taggers),
        "parts_tagged": st["ran"],
        # attribute parts (one per tagger and documents part) found up to date
        "parts_skipped": len(taggers)
        * (st["tasks"] - st["ran"] if not st["skipped"] else result["parts"]),
        "rows": {t: result["rows"].get(t, 0) for t in taggers},
    }
