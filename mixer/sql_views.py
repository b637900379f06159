"""DuckDB views over a workdir, for `mixer sql`, `mixer explain` and the report, and the one
way mixer opens DuckDB where SQL comes from a user: `safe_connect`.

`safe_connect(allowed)` returns a connection that can touch files only under the folders in
`allowed` (the workdir, or just its documents/ and attributes/): every other file, the
network, ATTACH, INSTALL and LOAD fail with DuckDB's "Permission Error", and the setting can't
be turned back on from SQL. Recipe filters (mix), `mixer explain --recipe`, recipe
`train_fasttext` selections and `mixer sql` all run on such a connection; only
`mixer sql --allow-external` opens an unrestricted one.

Views:
- documents: every ingested document, plus `part` and `row` (its position in its part)
- <tagger> (e.g. gopher, dedup): that tagger's attribute parts, with source_dir, part, row
- docs: documents joined with every tagger's columns (attribute parts share the row order of
  their documents parts, so the join is positional: source_dir, part, row)
- mix_<name>: the selected documents of each mix; quarantine: the rejected lines
"""

from __future__ import annotations

import re
from pathlib import Path

import duckdb

from mixer.errors import MixerError
from mixer.schema import attributes_dir, documents_dir, list_taggers, quarantine_dir

_PART = r"regexp_extract(filename, 'part-([0-9]+)', 1)::INTEGER"
# The folder of a part (documents/<dir>/ or attributes/<tagger>/<dir>/): the join key between
# documents and attributes. A source string that is not a plain name has a derived folder
# name (schema.source_dir_name), so the join never compares the string with a folder name.
_DIR = r"regexp_extract(filename, '/([^/]+)/part-[0-9]+\.parquet$', 1)"


def _q(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def file_list(paths) -> str:
    """A DuckDB list of exact file paths: a workdir whose path holds glob characters ('[', '*',
    '?') must not be read through a glob pattern."""
    return "[" + ", ".join(_q(p) for p in sorted(paths)) + "]"


def safe_connect(
    allowed: list[str | Path] | tuple = (),
    threads: int | None = None,
    external: bool = False,
    lock: bool = True,
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with external access disabled: it reads and writes files
    only under the folders in `allowed` (none: no file at all), never the network, and can't
    ATTACH, INSTALL or LOAD. `lock` also freezes every other setting. `external=True` (only
    `mixer sql --allow-external`) opens an unrestricted connection."""
    con = duckdb.connect(config={"threads": threads} if threads else {})
    if external:
        return con
    dirs = set()
    for d in allowed:
        for p in (Path(d).absolute(), Path(d).resolve()):
            dirs.add(str(p).rstrip("/") + "/")
    if dirs:
        con.execute("SET allowed_directories = $1", [sorted(dirs)])
    con.execute("SET enable_external_access = false")
    if lock:
        con.execute("SET lock_configuration = true")
    return con


def connect(
    workdir: str | Path, external: bool = False, lock: bool = True
) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with views over the workdir's tables, that can read
    and write files only inside the workdir (see `safe_connect`)."""
    wd = Path(workdir)
    if not documents_dir(wd).is_dir():
        raise MixerError(f"{wd}: no documents/ here (is it a workdir?)")
    con = safe_connect([wd], external=external, lock=lock)
    con.execute(
        f"""CREATE VIEW documents AS
        SELECT * EXCLUDE (filename, file_row_number), {_DIR} AS source_dir, {_PART} AS part,
               file_row_number AS "row"
        FROM read_parquet({file_list(documents_dir(wd).glob("*/part-*.parquet"))}, filename=true, file_row_number=true)"""
    )
    joins, columns = [], []
    for tagger in list_taggers(wd):
        parts = list(attributes_dir(wd, tagger).glob("*/part-*.parquet"))
        if not parts:
            continue
        name = _ident(tagger)
        con.execute(
            f"""CREATE VIEW {name} AS
            SELECT * EXCLUDE (filename, file_row_number), {_DIR} AS source_dir, {_PART} AS part,
                   file_row_number AS "row"
            FROM read_parquet({file_list(parts)}, filename=true, file_row_number=true, union_by_name=true)"""
        )
        cols = [
            c
            for (c,) in con.execute(f"SELECT column_name FROM (DESCRIBE {name})").fetchall()
            if "__" in c
        ]
        columns += [f"{name}.{_ident(c)}" for c in cols]
        joins.append(f'LEFT JOIN {name} USING (source_dir, part, "row")')
    select = ", ".join(["documents.*", *columns])
    con.execute(f"CREATE VIEW docs AS SELECT {select} FROM documents {' '.join(joins)}")
    mixes = wd / "mixes"
    if mixes.is_dir():
        for m in sorted(
            p for p in mixes.iterdir() if p.is_dir() and list(p.glob("part-*.parquet"))
        ):
            con.execute(
                f"CREATE VIEW {_ident('mix_' + m.name)} AS SELECT * FROM read_parquet({file_list(m.glob('part-*.parquet'))})"
            )
    quarantined = list(quarantine_dir(wd).glob("*/part-*.jsonl"))
    if quarantined:
        con.execute(
            f"""CREATE VIEW quarantine AS SELECT * FROM read_json({file_list(quarantined)},
            format='newline_delimited', columns={{src_file: 'VARCHAR', src_line: 'BIGINT', reason: 'VARCHAR', raw: 'VARCHAR'}})"""
        )
    return con


def _ident(name: str) -> str:
    return (
        name
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name)
        else '"' + name.replace('"', '""') + '"'
    )


def run_sql(workdir: str | Path, sql: str, limit: int | None = None, allow_external: bool = False):
    """Run a query over the workdir's views; returns (column names, rows).

    A local inspection tool: the query reads and writes only inside the workdir (a COPY to
    another folder, ATTACH, INSTALL, LOAD, or reading another file fail) unless
    `allow_external`."""
    if not sql or not sql.strip() or not sql.strip().strip(";").strip():
        raise MixerError(
            'empty SQL query (e.g. mixer sql WORKDIR "SELECT count(*) FROM documents")'
        )
    con = connect(workdir, external=allow_external, lock=False)
    try:
        cur = con.execute(sql)
    except duckdb.PermissionException as e:
        raise MixerError(
            f"SQL refused: {str(e).splitlines()[0]} (`mixer sql` reads and writes only inside "
            "the workdir; --allow-external lifts this)"
        ) from None
    except duckdb.Error as e:
        raise MixerError(f"SQL error: {str(e).splitlines()[0]}") from None
    names = [d[0] for d in cur.description] if cur.description else []
    rows = cur.fetchmany(limit) if limit else cur.fetchall()
    return names, rows


def explain_document(
    workdir: str | Path, doc_id: str, filters: dict[str, list[str]] | None = None
) -> list[dict]:
    """Every attribute of the documents with this id, and each filter's verdict on them.

    `filters` maps a source to its recipe filters (SQL); verdicts are evaluated on the docs view.
    """
    con = connect(workdir)
    cur = con.execute("SELECT * FROM docs WHERE id = ?", [doc_id])
    names = [d[0] for d in cur.description]
    out = []
    for row in cur.fetchall():
        rec = dict(zip(names, row, strict=True))
        verdicts = {}
        for expr in (filters or {}).get(rec["source"], []):
            try:
                (ok,) = con.execute(
                    f'SELECT ({expr}) FROM docs WHERE source = ? AND part = ? AND "row" = ?',
                    [rec["source"], rec["part"], rec["row"]],
                ).fetchone()
                verdicts[expr] = bool(ok) if ok is not None else None
            except duckdb.Error as e:
                verdicts[expr] = f"error: {str(e).splitlines()[0]}"
        rec["filters"] = verdicts
        out.append(rec)
    return out
