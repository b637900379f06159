"""The tag stage: run taggers over every documents part and write attribute parts beside them.

Work is split by documents part; each worker builds its taggers once, reads a part's
documents in batches, and writes one attributes part per tagger under a temporary name.
A part is skipped when its output exists and was made from the same documents part with the
same tagger fingerprint (recorded in state/tag/).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from mixer.errors import MixerError
from mixer.executor import run_tasks
from mixer.io import (
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
    part_name,
    source_dir_name,
    state_dir,
)
from mixer.taggers import make_tagger

BATCH_ROWS = 1024
READ_COLUMNS = ["id", "text", "source", "metadata"]

_worker_taggers: dict = {}


def _state_path(workdir: Path, tagger: str, source: str, index: int) -> Path:
    return state_dir(workdir) / "tag" / tagger / source_dir_name(source) / part_name(index, ".json")


def _init_worker(specs: dict[str, dict]) -> None:
    global _worker_taggers
    _worker_taggers = {}
    for name, settings in specs.items():
        t = make_tagger(name, settings)
        t.setup()
        _worker_taggers[name] = t


def _tag_part(workdir: str, source: str, part: str, names: list[str], keys: dict[str, str]) -> dict:
    """Tag one documents part with `names`; returns {tagger: rows}."""
    workdir_p, part_p = Path(workdir), Path(part)
    index = int(part_p.name.split(".")[0].split("-")[1])
    pf = pq.ParquetFile(part_p)
    outputs = {}
    try:
        for name in names:
            path = attributes_dir(workdir_p, name, source) / part_name(index)
            outputs[name] = [path, None, None]
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=READ_COLUMNS):
            docs = pa.Table.from_batches([batch])
            for name in names:
                feats = _worker_taggers[name].tag(docs)
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
                feats = _worker_taggers[name].tag(empty)
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
    doc_fp = file_fingerprint(part_p, with_hash=False)
    for name in names:
        write_json_atomic(
            _state_path(workdir_p, name, source, index), {"key": keys[name], "documents": doc_fp}
        )
    return {name: pf.metadata.num_rows for name in names}


def tag_workdir(
    workdir: str | Path,
    taggers: list[str],
    settings: dict[str, dict] | None = None,
    workers: int | None = None,
    sources: list[str] | None = None,
    progress: bool = True,
) -> dict:
    """Run `taggers` over the documents of `sources` (all by default). Returns a summary."""
    workdir = Path(workdir)
    settings = settings or {}
    unknown = sorted(set(settings) - set(taggers))
    if unknown:
        raise MixerError(f"--set given for tagger {unknown[0]!r}, which is not in --taggers")
    all_sources = list_sources(workdir)
    if not all_sources:
        raise MixerError(f"no documents under {documents_dir(workdir)}: run `mixer ingest` first")
    sources = sources or all_sources
    missing = sorted(set(sources) - set(all_sources))
    if missing:
        raise MixerError(f"no documents for source {missing[0]!r} in {workdir}")

    specs = {name: dict(settings.get(name, {})) for name in taggers}
    keys = {name: config_hash(make_tagger(name, s).fingerprint()) for name, s in specs.items()}

    tasks, skipped = [], 0
    for source in sources:
        for part in list_parts(documents_dir(workdir, source)):
            index = int(part.name.split(".")[0].split("-")[1])
            doc_fp = file_fingerprint(part, with_hash=False)
            todo = []
            for name in taggers:
                st = read_json(_state_path(workdir, name, source, index))
                out = attributes_dir(workdir, name, source) / part_name(index)
                if (
                    out.exists()
                    and st
                    and st.get("key") == keys[name]
                    and st.get("documents") == doc_fp
                ):
                    skipped += 1
                else:
                    todo.append(name)
            if todo:
                tasks.append((str(workdir), source, str(part), todo, {n: keys[n] for n in todo}))

    rows: dict[str, int] = {name: 0 for name in taggers}
    total_docs = sum(pq.ParquetFile(t[2]).metadata.num_rows for t in tasks)
    bar = tqdm(total=total_docs, desc="tag", unit="doc", disable=not progress or not tasks)
    for result in run_tasks(_tag_part, tasks, workers, initializer=_init_worker, initargs=(specs,)):
        for name, n in result.items():
            rows[name] += n
        bar.update(max(result.values(), default=0))
    bar.close()
    return {"taggers": taggers, "parts_tagged": len(tasks), "parts_skipped": skipped, "rows": rows}
