"""The ingest stage: raw JSONL shards (.jsonl, .gz, .zst) -> documents/<source>/part-NNNNN.parquet.

Every input line ends up in exactly one place: a row of a documents part (with its src_file and
src_line), or a quarantine record (with src_file, src_line, reason and the raw bytes). Each
shard is streamed in pieces, so memory is bounded by the piece size whatever the shard size.

`IngestStage` runs on the one stage interface (mixer/stage.py): one task per unit, sized by
its bytes: a shard, or consecutive small shards of a source ingested together (many small
files make a few parts, not one each). Each unit gets its own stable part number
(state/ingest/parts.json), so two sources that list the same shard each get all of its
documents, and every source string found in that unit's shards is written to
documents/<dir of source>/part-N.parquet. A record state/ingest/part-N.json names the files the
task wrote; a later run removes only files such records name: the outputs of a unit whose
shards left a source's inputs or changed membership, and the outputs of an older version of
a unit that this version did not rewrite. Nothing mixer did not write is ever deleted.

Each task also writes state/ingest/ids/part-N.ids (its documents' id hashes, sorted), so
`duplicate_ids` counts repeated ids per source on the driver from these summaries, in bounded
memory, without reading any Parquet file.

The modules, in the order data flows (docs/ingest.md has the why of each):

- `stage.py`: IngestStage (units, part numbers, reruns, pruning, the summary) and `ingest`,
  the thin wrapper the `mixer ingest` command and the tests call.
- `shard.py`: one task: its shards read piece by piece, every line accounted for.
- `blocks.py`: a whole piece read at once, by msgspec (`dolma_lines.py`) or Arrow's JSON
  reader, exactly as the per-line path would read it; else None.
- `records.py`: one record's rules (`parse_record`): the per-line path, and the reference
  every block reader is tested against.
- `columns.py`: Arrow string columns straight from UTF-8 bytes (no `pa.array`: it imports
  pandas).
- `output.py`: rows buffered per source, written as Parquet row groups on a writer thread;
  quarantined lines as JSONL.
- `ids.py`: the per-task id summaries and their merge.
"""

from mixer.ingest.ids import duplicate_ids, read_id_file, write_id_file
from mixer.ingest.records import FieldMap, parse_record
from mixer.ingest.shard import ingest_shard
from mixer.ingest.stage import (
    GROUP_BELOW_BYTES,
    INGEST_VERSION,
    IngestSource,
    IngestStage,
    ingest,
    summarize,
)

__all__ = [
    "GROUP_BELOW_BYTES",
    "INGEST_VERSION",
    "FieldMap",
    "IngestSource",
    "IngestStage",
    "duplicate_ids",
    "ingest",
    "ingest_shard",
    "parse_record",
    "read_id_file",
    "summarize",
    "write_id_file",
]
