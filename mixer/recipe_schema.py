"""The recipe schema: the model of a recipe and its validation, section by section.

`validate(data, path, where, lines)` takes the parsed, substituted YAML (see mixer/recipe.py,
which loads it) and checks every value by type and range before any stage runs, naming the
file, line and key of the first problem: `recipes/x.yaml:12: dedup.threshold: expected a
number in (0, 1], got 1.5`. Stages read their settings from the `Recipe` it returns.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from mixer.errors import MixerError
from mixer.schema import DOCUMENT_SCHEMA, check_name

SHARE_TOLERANCE = 1e-6
# Columns of the documents table a filter may use besides attribute columns.
DOCUMENT_COLUMNS = frozenset(DOCUMENT_SCHEMA.names)
# Attribute columns made by stages that are not taggers of a source's `taggers` list.
STAGE_PREFIXES = ("dedup", "decon")

TOP_KEYS = {
    "name", "description", "workdir", "seed", "variables", "budget", "sources", "taggers",
    "train_fasttext", "dedup", "decon", "groups", "tokenizer", "tokenize", "train", "mix",
}  # fmt: skip
REQUIRED_TOP = ("name", "budget", "sources", "groups")
SOURCE_KEYS = {
    "inputs", "ingest", "taggers", "filters", "max_repetition", "expected_tokens",
    "expected_docs", "description",
}  # fmt: skip
# Field mapping for non-Dolma JSONL (mixer.ingest.FieldMap): "<dolma field>_field".
INGEST_KEYS = {f"{f}_field" for f in ("id", "text", "source", "added", "created", "metadata")}
TARGET_KINDS = ("weight", "percent", "tokens")
GROUP_KEYS = {"share", "sources", "description"}
FASTTEXT_KEYS = {
    "positive", "negative", "label_positive", "label_negative", "max_docs", "labels",
    "label_column", "preset", "quantize", "cutoff",
    "lr", "dim", "epoch", "word_ngrams", "min_count", "bucket", "loss", "thread", "test_fraction",
}  # fmt: skip
DEDUP_KEYS = {
    "sources", "exact", "minhash", "threshold", "bands", "rows", "ngram", "verify",
    "paragraphs", "seed", "num_perm", "workers",
}  # fmt: skip
DECON_KEYS = {"eval_sets", "ngram", "fields", "min_words", "index", "min_hits", "min_fraction"}
TOKENIZER_KEYS = {"path", "train", "eos", "eos_id", "bos", "bos_id", "dtype"}
TOKENIZER_TRAIN_KEYS = {
    "vocab_size",
    "min_frequency",
    "max_docs",
    "max_bytes",
    "special_tokens",
    "seed",
}
TOKENIZE_KEYS = {
    "max_tokens_per_part", "workers", "seed", "batch_size", "shuffle", "per_source", "engine",
    "check_every",
}  # fmt: skip
TRAIN_KEYS = {"config", "out", "device", "seed", "steps"}
MIX_KEYS = {"remove_spans", "max_rows_per_part", "workers", "heldout_fraction", "heldout_seed"}
DTYPES = ("auto", "uint16", "uint32")
MAX_SEED = 2**63 - 1  # seeds go into int64 columns and numpy generators
FASTTEXT_LOSSES = ("softmax", "hs", "ns", "ova")

_SIZE_UNITS = (("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10), ("B", 1))


def parse_size(value) -> int | None:
    """Bytes from a positive integer or a string like 2GB, 512MB, 1.5GiB; None otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value > 0 else None
    text = str(value).strip().upper().replace("IB", "B")
    for unit, mult in _SIZE_UNITS:
        if text.endswith(unit):
            try:
                number = float(text[: -len(unit)]) * mult
            except ValueError:
                return None
            return int(number) if math.isfinite(number) and number >= 1 else None
    return None


# The type and range of every value a section may give (None always means "the default").
# ("int", lo): an integer >= lo; ("number", lo, hi, lo_open): a finite number in range;
# "fraction": a number in [0, 1]; "seed": an integer in [0, 2**63 - 1]; "bool"; "str";
# ("choice", values); "strings": a list of strings (or one string); "size": bytes, as a positive
# integer or a string like 2GB or 512MB.
SECTION_TYPES: dict[str, dict[str, Any]] = {
    "dedup": {
        "exact": "bool",
        "minhash": "bool",
        "verify": "bool",
        "paragraphs": "bool",
        "signature_check": "bool",
        "ngram": ("int", 1),
        "num_perm": ("int", 1),
        "bands": ("int", 1),
        "rows": ("int", 1),
        "threshold": ("number", 0.0, 1.0, True),
        "seed": "seed",
        "workers": ("int", 1),
        "exact_field": "str",
        "keep_rule": "str",
        "scheme": "str",
        "memory_limit": "size",
        "task_bytes": ("int", 1),
        "sources": "strings",
    },
    "decon": {
        "ngram": ("int", 1),
        "min_words": ("int", 0),
        "min_hits": ("int", 1),
        "min_fraction": "fraction",
        "index": "str",
        "fields": "strings",
        "eval_sets": "strings",
    },
    "tokenize": {
        "max_tokens_per_part": ("int", 1),
        "workers": ("int", 1),
        "seed": "seed",
        "batch_size": ("int", 1),
        "shuffle": "bool",
        "per_source": "bool",
        "engine": ("choice", ("auto", "tiktoken", "hf")),
        "check_every": ("int", 0),
    },
    "tokenizer.train": {
        "vocab_size": ("int", 257),
        "min_frequency": ("int", 0),
        "max_docs": ("int", 1),
        "max_bytes": ("int", 1),
        "seed": "seed",
        "special_tokens": "strings",
    },
    "train_fasttext": {
        "lr": ("number", 0.0, None, True),
        "dim": ("int", 1),
        "epoch": ("int", 1),
        "word_ngrams": ("int", 1),
        "min_count": ("int", 1),
        "bucket": ("int", 0),
        "thread": ("int", 1),
        "max_docs": ("int", 0),  # 0: no cap
        "test_fraction": ("number", 0.0, 1.0, False),
        "loss": ("choice", FASTTEXT_LOSSES),
        "label_positive": "str",
        "label_negative": "str",
        "label_column": "str",
        "preset": ("choice", ("compact", "dclm")),
        "quantize": "bool",
        "cutoff": ("int", 0),
    },
    "train": {"steps": ("int", 1), "seed": "seed", "device": "str", "out": "str"},
}

_TOKENS = re.compile(r"^\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([KMBT]?)\s*$", re.IGNORECASE)
_MULT = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}

# ------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class TargetSpec:
    kind: str  # weight | percent | tokens
    value: float  # a weight, a percent of the source after filters, or a token count


@dataclass
class SourceSpec:
    name: str
    inputs: list[str]
    ingest: dict = field(default_factory=dict)
    taggers: list[str] = field(default_factory=list)
    filters: list[str] = field(default_factory=list)
    max_repetition: float = 1.0
    expected_tokens: int | None = None  # data-card figure after filters: plans before ingest
    expected_docs: int | None = None


@dataclass
class GroupSpec:
    name: str
    share: float
    sources: dict[str, TargetSpec]


@dataclass
class Recipe:
    path: Path
    name: str
    workdir: Path
    seed: int
    budget: int
    sources: dict[str, SourceSpec]
    taggers: dict[str, dict]
    train_fasttext: dict[str, dict]
    dedup: dict | None
    decon: dict | None
    groups: dict[str, GroupSpec]
    tokenizer: dict
    tokenize: dict
    train: dict | None
    mix: dict
    raw: dict
    lines: dict = field(default_factory=dict, repr=False)

    def where(self, *keys: str | int) -> str:
        """'recipes/x.yaml:12: sources.web.filters[1]' for error messages of later stages."""
        return _Where(str(self.path), self.lines).at(keys)

    def group_of(self, source: str) -> str:
        for g in self.groups.values():
            if source in g.sources:
                return g.name
        raise KeyError(source)

    def target_of(self, source: str) -> TargetSpec:
        return self.groups[self.group_of(source)].sources[source]


# ------------------------------------------------------------------------------ helpers


def parse_tokens(value: Any, what: str = "token count") -> int:
    """50B -> 50_000_000_000; accepts ints, '3.9T', '1.5M', '20K', '1_000'."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a token count like 50B, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what}: must be >= 0, got {value}")
        return value
    if isinstance(value, float):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"{what}: must be a finite number >= 0, got {value}")
        return int(round(value))
    m = _TOKENS.match(str(value))
    if not m:
        raise ValueError(
            f"{what}: expected an integer or a number with K/M/B/T (e.g. 50B, 3.9T), got {value!r}"
        )
    number, unit = m.group(1).replace("_", ""), m.group(2).upper()
    if "." in number:
        whole, frac = number.split(".")
        return (int(whole) * 10 ** len(frac) + int(frac)) * _MULT[unit] // 10 ** len(frac)
    return int(number) * _MULT[unit]


def format_tokens(n: float | None) -> str:
    """12_345_678 -> '12.35M' (for tables)."""
    if n is None:
        return "-"
    for unit, mult in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= mult:
            return f"{n / mult:.2f}{unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.2f}"


def _dotted(keys) -> str:
    out = ""
    for k in keys:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out


class _Where:
    """Key paths -> 'file:line: dotted.key' using the lines found by yaml.compose."""

    def __init__(self, path: str, lines: dict):
        self.path, self.lines = path, lines

    def at(self, keys) -> str:
        keys = tuple(keys)
        line = None
        for n in range(len(keys), -1, -1):
            if keys[:n] in self.lines:
                line = self.lines[keys[:n]]
                break
        dotted = _dotted(keys)
        loc = f"{self.path}:{line}" if line else self.path
        return f"{loc}: {dotted}" if dotted else loc

    def error(self, keys, message: str) -> MixerError:
        return MixerError(f"{self.at(keys)}: {message}")


# ------------------------------------------------------------------------------ SQL


@lru_cache(maxsize=1)
def _parser():
    import duckdb

    return duckdb.connect(config={"enable_external_access": False})


def _column_refs(tree: Any, out: set[str]) -> None:
    if isinstance(tree, dict):
        if tree.get("class") == "COLUMN_REF" and tree.get("column_names"):
            out.add(tree["column_names"][-1])
        for v in tree.values():
            _column_refs(v, out)
    elif isinstance(tree, list):
        for v in tree:
            _column_refs(v, out)


@lru_cache(maxsize=4096)
def _parse_expression(expr: str) -> tuple[frozenset[str], str | None]:
    """Columns named by a SQL boolean expression, and an error message if it is not one."""
    sql = f"SELECT ({expr}) AS __keep FROM __t"
    con = _parser()
    try:
        statements = con.extract_statements(sql)
    except Exception as e:  # duckdb.ParserException and friends
        return frozenset(), str(e).splitlines()[0]
    if len(statements) != 1:
        return frozenset(), "not a single SQL expression"
    tree = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
    if tree.get("error"):
        return frozenset(), tree.get("error_message", "cannot parse")
    node = tree["statements"][0]["node"]
    table = node.get("from_table") or {}
    if (
        node.get("type") != "SELECT_NODE"
        or len(node.get("select_list", [])) != 1
        or table.get("table_name") != "__t"
        or node.get("where_clause")
        or node.get("group_expressions")
        or node.get("modifiers")
    ):
        return frozenset(), "not a single SQL boolean expression"
    cols: set[str] = set()
    _column_refs(node["select_list"], cols)
    return frozenset(cols), None


def filter_columns(expr: str) -> set[str]:
    """The column names a filter expression reads (MixerError-free: ValueError if invalid)."""
    cols, err = _parse_expression(expr)
    if err:
        raise ValueError(err)
    return set(cols)


def attribute_tagger(column: str) -> str | None:
    """'quality__score' -> 'quality'; document columns and plain names -> None."""
    return column.split("__", 1)[0] if "__" in column else None


# ------------------------------------------------------------------------------ validation


class _Checker:
    def __init__(self, where: _Where):
        self.w = where

    def err(self, keys, msg) -> MixerError:
        return self.w.error(keys, msg)

    def mapping(self, value, keys, allowed: set | None = None, required=()) -> dict:
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.err(keys, f"expected a mapping, got {type(value).__name__}")
        for k in value:
            if not isinstance(k, str):
                raise self.err(keys, f"keys must be strings, got {k!r}")
        if allowed is not None:
            for k in value:
                if k not in allowed:
                    raise self.err((*keys, k), f"unknown key (known: {', '.join(sorted(allowed))})")
        for k in required:
            if k not in value:
                raise self.err(keys, f"missing required key {k!r}")
        return value

    def string(self, value, keys, optional=False) -> str | None:
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value:
            raise self.err(keys, f"expected a non-empty string, got {value!r}")
        return value

    def integer(self, value, keys, minimum=None, optional=False) -> int | None:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(keys, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.err(keys, f"must be >= {minimum}, got {value}")
        return value

    def number(self, value, keys, minimum=None, above=None) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise self.err(keys, f"expected a number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.err(keys, f"must be >= {minimum}, got {value}")
        if above is not None and value <= above:
            raise self.err(keys, f"must be > {above}, got {value}")
        return float(value)

    def boolean(self, value, keys) -> bool:
        if not isinstance(value, bool):
            raise self.err(keys, f"expected true or false, got {value!r}")
        return value

    def typed(self, value, keys, kind) -> Any:
        """Check one value against a SECTION_TYPES kind; None means "the default"."""
        if value is None:
            return None
        if kind == "bool":
            return self.boolean(value, keys)
        if kind == "str":
            return self.string(value, keys)
        if kind == "strings":
            return self.string_list(value, keys, allow_scalar=True)
        if kind == "seed":
            return self.seed(value, keys)
        if kind == "size":
            if isinstance(value, bool) or parse_size(value) is None:
                raise self.err(keys, f"expected a size like 2GB or 512MB, got {value!r}")
            return value
        if kind == "fraction":
            kind = ("number", 0.0, 1.0, False)
        if kind[0] == "int":
            return self.integer(value, keys, minimum=kind[1])
        if kind[0] == "number":
            _, lo, hi, lo_open = kind
            v = self.number(value, keys)
            if (lo is not None and (v <= lo if lo_open else v < lo)) or (hi is not None and v > hi):
                low = f"({lo:g}" if lo_open else f"[{lo:g}"
                raise self.err(
                    keys,
                    f"expected a number in {low}, {'inf' if hi is None else f'{hi:g}'}], got {value!r}",
                )
            return v
        if kind[0] == "choice":
            if value not in kind[1]:
                raise self.err(keys, f"expected one of {', '.join(kind[1])}, got {value!r}")
            return value
        raise AssertionError(kind)

    def section(self, values: dict, keys: tuple, table: dict) -> None:
        for k, v in values.items():
            if k in table:
                self.typed(v, (*keys, k), table[k])

    def seed(self, value, keys) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.err(keys, f"expected an integer seed, got {value!r}")
        if not 0 <= value <= MAX_SEED:
            raise self.err(keys, f"a seed is an integer in [0, 2**63 - 1], got {value}")
        return value

    def setting_like(self, value, keys, default) -> Any:
        """A tagger setting: the type of its default (a number where the default is one, >= 0
        where the default is >= 0)."""
        if value is None or default is None:
            return value
        if isinstance(default, bool):
            return self.boolean(value, keys)
        if isinstance(default, (int, float)):
            v = self.number(value, keys)
            if default >= 0 and v < 0:
                raise self.err(keys, f"must be >= 0, got {value!r}")
            return value
        if isinstance(default, str):
            if not isinstance(value, str):
                raise self.err(keys, f"expected a string, got {value!r}")
            return value
        if isinstance(default, (list, tuple)):
            return self.string_list(value, keys, allow_scalar=True)
        return value

    def tokens(self, value, keys) -> int:
        try:
            return parse_tokens(value)
        except ValueError as e:
            raise self.err(keys, str(e).split(": ", 1)[-1]) from None

    def string_list(self, value, keys, allow_scalar=False) -> list[str]:
        if allow_scalar and isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise self.err(keys, f"expected a list of strings, got {type(value).__name__}")
        for i, v in enumerate(value):
            self.string(v, (*keys, i))
        return list(value)

    def sql(self, expr, keys) -> set[str]:
        self.string(expr, keys)
        try:
            return filter_columns(expr)
        except ValueError as e:
            raise self.err(keys, f"invalid SQL expression {expr!r}: {e}") from None


def _known_taggers() -> dict:
    from mixer.taggers import TAGGERS

    return TAGGERS


def _tagger_defaults(name: str) -> dict | None:
    """The settings a tagger accepts, or None when its module can't be imported here."""
    from mixer.taggers import tagger_class

    try:
        return dict(tagger_class(name).defaults)
    except (ImportError, AttributeError):
        return None


def _check_sources(
    c: _Checker, data: dict, has_dedup: dict | None, has_decon: bool
) -> dict[str, SourceSpec]:
    raw = c.mapping(data.get("sources"), ("sources",))
    if not raw:
        raise c.err(("sources",), "a recipe needs at least one source")
    known = _known_taggers()
    sources: dict[str, SourceSpec] = {}
    for name, spec in raw.items():
        keys = ("sources", name)
        try:
            check_name(name)
        except MixerError as e:
            raise c.err(keys, str(e)) from None
        spec = c.mapping(spec, keys, SOURCE_KEYS, required=("inputs",))
        inputs = c.string_list(spec["inputs"], (*keys, "inputs"), allow_scalar=True)
        if not inputs:
            raise c.err((*keys, "inputs"), "needs at least one file, folder or glob")
        ingest = c.mapping(spec.get("ingest"), (*keys, "ingest"), INGEST_KEYS)
        for k, v in ingest.items():
            c.string(v, (*keys, "ingest", k))
        taggers = c.string_list(spec.get("taggers", []), (*keys, "taggers"))
        for i, t in enumerate(taggers):
            if t not in known:
                raise c.err(
                    (*keys, "taggers", i), f"unknown tagger {t!r} (known: {', '.join(known)})"
                )
        if len(set(taggers)) != len(taggers):
            raise c.err((*keys, "taggers"), "a tagger is listed twice")
        if "tokens" not in taggers:  # token targets need tokens__count (docs/recipes.md)
            taggers.append("tokens")
        filters = c.string_list(spec.get("filters", []), (*keys, "filters"))
        dedup_sources = None if has_dedup is None else has_dedup.get("sources")
        for i, expr in enumerate(filters):
            for col in sorted(c.sql(expr, (*keys, "filters", i))):
                tagger = attribute_tagger(col)
                if tagger is None:
                    continue  # a document column (id, text, ...) or a lambda parameter
                if tagger in taggers:
                    continue
                if (
                    tagger == "dedup"
                    and has_dedup is not None
                    and (dedup_sources is None or name in dedup_sources)
                ):
                    continue
                if tagger == "decon" and has_decon:
                    continue
                hint = (
                    "add a dedup section that includes this source"
                    if tagger == "dedup"
                    else f"tagger {tagger!r} is not in sources.{name}.taggers"
                    if tagger in known
                    else f"no tagger or stage named {tagger!r}"
                )
                raise c.err((*keys, "filters", i), f"column {col!r}: {hint}")
        max_rep = c.number(spec.get("max_repetition", 1.0), (*keys, "max_repetition"), minimum=1.0)
        expected_tokens = spec.get("expected_tokens")
        if expected_tokens is not None:
            expected_tokens = c.tokens(expected_tokens, (*keys, "expected_tokens"))
        expected_docs = spec.get("expected_docs")
        if expected_docs is not None:
            expected_docs = c.tokens(expected_docs, (*keys, "expected_docs"))
        if "description" in spec:
            c.string(spec["description"], (*keys, "description"))
        sources[name] = SourceSpec(
            name, inputs, dict(ingest), taggers, filters, max_rep, expected_tokens, expected_docs
        )
    return sources


def _check_groups(c: _Checker, data: dict, sources: dict[str, SourceSpec]) -> dict[str, GroupSpec]:
    raw = c.mapping(data.get("groups"), ("groups",))
    if not raw:
        raise c.err(("groups",), "a recipe needs at least one group")
    groups: dict[str, GroupSpec] = {}
    owner: dict[str, str] = {}
    for gname, spec in raw.items():
        keys = ("groups", gname)
        spec = c.mapping(spec, keys, GROUP_KEYS, required=("share", "sources"))
        share = c.number(spec["share"], (*keys, "share"), minimum=0.0)
        if share > 1.0:
            raise c.err(
                (*keys, "share"), f"a share is a fraction of the budget (0..1), got {share}"
            )
        members = c.mapping(spec["sources"], (*keys, "sources"))
        if not members:
            raise c.err((*keys, "sources"), "a group needs at least one source")
        targets: dict[str, TargetSpec] = {}
        for sname, target in members.items():
            tkeys = (*keys, "sources", sname)
            if sname not in sources:
                raise c.err(tkeys, f"unknown source {sname!r} (sources: {', '.join(sources)})")
            if sname in owner:
                raise c.err(tkeys, f"source {sname!r} is already in group {owner[sname]!r}")
            owner[sname] = gname
            if isinstance(target, (int, float)) and not isinstance(target, bool):
                target = {"weight": target}  # shorthand: `web: 1.0`
            target = c.mapping(target, tkeys, set(TARGET_KINDS))
            if len(target) != 1:
                raise c.err(tkeys, f"give exactly one of {', '.join(TARGET_KINDS)}")
            kind, value = next(iter(target.items()))
            vkeys = (*tkeys, kind)
            if kind == "tokens":
                value = float(c.tokens(value, vkeys))
            elif kind == "weight":
                value = c.number(value, vkeys, above=0.0)
            else:
                value = c.number(value, vkeys, above=0.0)
                max_pct = sources[sname].max_repetition * 100
                if value > max_pct + 1e-9:
                    raise c.err(
                        vkeys,
                        f"{value:g}% of the source needs {value / 100:g} copies; sources.{sname}.max_repetition allows {max_pct / 100:g}",
                    )
            targets[sname] = TargetSpec(kind, value)
        groups[gname] = GroupSpec(gname, share, targets)
    total = sum(g.share for g in groups.values())
    if abs(total - 1.0) > SHARE_TOLERANCE:
        detail = " + ".join(f"{g.name} {g.share:g}" for g in groups.values())
        raise c.err(("groups",), f"shares must sum to 1, got {total:.6g} ({detail})")
    for sname in sources:
        if sname not in owner:
            raise c.err(
                ("sources", sname), "source is in no group (add it to one of groups.*.sources)"
            )
    return groups


def _check_taggers_section(c: _Checker, data: dict) -> dict[str, dict]:
    raw = c.mapping(data.get("taggers"), ("taggers",))
    known = _known_taggers()
    out = {}
    for name, settings in raw.items():
        keys = ("taggers", name)
        if name not in known:
            raise c.err(keys, f"unknown tagger {name!r} (known: {', '.join(known)})")
        settings = c.mapping(settings, keys)
        defaults = _tagger_defaults(name)
        if defaults is not None:
            for k in settings:
                if k not in defaults:
                    raise c.err(
                        (*keys, k),
                        f"unknown setting of tagger {name!r} (known: {', '.join(sorted(defaults)) or 'none'})",
                    )
                c.setting_like(settings[k], (*keys, k), defaults[k])
        out[name] = dict(settings)
    return out


def _check_train_fasttext(c: _Checker, data: dict, taggers: dict) -> dict[str, dict]:
    raw = c.mapping(data.get("train_fasttext"), ("train_fasttext",))
    out = {}
    for name, spec in raw.items():
        keys = ("train_fasttext", name)
        if name not in _known_taggers():
            raise c.err(keys, f"unknown tagger {name!r}: the trained model is for a tagger")
        allowed = _accepted_keys(
            "mixer.train_fasttext", "train_from_workdir", {"workdir", "out", "seed"}, FASTTEXT_KEYS
        )
        by_column = isinstance(spec, dict) and ("label_column" in spec or "labels" in spec)
        spec = c.mapping(
            spec, keys, allowed, required=() if by_column else ("positive", "negative")
        )
        c.section(spec, keys, SECTION_TYPES["train_fasttext"])
        for key in ("positive", "negative"):
            if key in spec:
                c.sql(spec[key], (*keys, key))
        for label, sql in c.mapping(spec.get("labels"), (*keys, "labels")).items():
            c.sql(sql, (*keys, "labels", label))
        if not taggers.get(name, {}).get("model"):
            raise c.err(keys, f"set taggers.{name}.model: the trained model is written there")
        out[name] = dict(spec)
    return out


def _accepted_keys(module: str, func: str, exclude: set, fallback: set) -> set:
    """The keyword arguments a stage function takes (the keys its recipe section may give),
    or `fallback` while that stage's module is not importable."""
    try:
        fn = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError):
        return fallback
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return fallback | {p.name for p in params}
    named = {p.name for p in params if p.kind is not inspect.Parameter.VAR_POSITIONAL}
    return named - exclude


def _check_optional_section(c: _Checker, data: dict, key: str, allowed: set) -> dict | None:
    if data.get(key) is None:
        return None
    return dict(c.mapping(data[key], (key,), allowed))


def _check_tokenizer(c: _Checker, data: dict) -> dict:
    tok = dict(c.mapping(data.get("tokenizer"), ("tokenizer",), TOKENIZER_KEYS))
    if "train" in tok and tok["train"] is not None:
        c.mapping(tok["train"], ("tokenizer", "train"), TOKENIZER_TRAIN_KEYS)
        c.section(tok["train"], ("tokenizer", "train"), SECTION_TYPES["tokenizer.train"])
    for k in ("path", "eos", "bos"):
        if tok.get(k) is not None:
            c.string(tok[k], ("tokenizer", k))
    for k in ("eos_id", "bos_id"):
        if tok.get(k) is not None:
            c.integer(tok[k], ("tokenizer", k), minimum=0)
    dtype = tok.get("dtype", "auto")
    if dtype not in DTYPES:
        raise c.err(("tokenizer", "dtype"), f"expected one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "uint16" and tok.get("path") and Path(tok["path"]).is_file():
        vocab = _vocab_size(tok["path"])
        if vocab is not None and vocab > 65536:
            raise c.err(
                ("tokenizer", "dtype"),
                f"uint16 holds ids below 65,536 but {tok['path']} has {vocab:,} ids (use uint32 or auto)",
            )
    for k in ("path", "train", "eos", "eos_id", "bos", "bos_id"):
        tok.setdefault(k, None)
    tok["dtype"] = dtype
    return tok


def _vocab_size(path: str) -> int | None:
    """Ids in a tokenizer.json (model vocabulary and added tokens), None if unreadable."""
    try:
        with open(path, "rb") as f:
            data = json.loads(f.read())
        vocab = (data.get("model") or {}).get("vocab") or {}
        ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))
        ids += [t.get("id", -1) for t in data.get("added_tokens") or []]
        return max((i for i in ids if isinstance(i, int)), default=-1) + 1
    except (OSError, ValueError, AttributeError, TypeError):
        return None


def _tokenize_keys() -> set:
    # the pipeline passes tokenizer eos/bos, dtype, seed, workers and progress itself
    exclude = {"eos", "eos_id", "bos", "bos_id", "dtype", "seed", "workers", "progress"}
    exclude |= {"executor", "workdir", "echo"}  # the runner's, not the recipe's
    keys = _accepted_keys("mixer.tokenization", "tokenize_mix", exclude, TOKENIZE_KEYS)
    return keys - {"mix_dir", "tokenizer", "tokenizer_path", "out", "out_dir", "src"}


def _check_tokenize(c: _Checker, data: dict) -> dict:
    tok = dict(c.mapping(data.get("tokenize"), ("tokenize",), _tokenize_keys()))
    c.section(tok, ("tokenize",), SECTION_TYPES["tokenize"])
    return tok


def _check_train(c: _Checker, data: dict) -> dict | None:
    train = _check_optional_section(c, data, "train", TRAIN_KEYS)
    if train is not None:
        c.section(train, ("train",), SECTION_TYPES["train"])
    if train is not None and train.get("config") is not None:
        c.mapping(train["config"], ("train", "config"))
        try:
            from mixer.train.config import make_config
        except ImportError:
            return train
        try:
            make_config(dict(train["config"]), where=c.w.at(("train", "config")))
        except MixerError:
            raise
        except Exception as e:  # a trainer config the trainer refuses
            raise c.err(("train", "config"), str(e)) from None
    return train


def _check_mix(c: _Checker, data: dict) -> dict:
    mix = dict(c.mapping(data.get("mix"), ("mix",), MIX_KEYS))
    if mix.get("remove_spans") is not None:
        c.string(mix["remove_spans"], ("mix", "remove_spans"))
    if mix.get("max_rows_per_part") is not None:
        c.integer(mix["max_rows_per_part"], ("mix", "max_rows_per_part"), minimum=1)
    if mix.get("workers") is not None:
        c.integer(mix["workers"], ("mix", "workers"), minimum=1)
    # held-out documents for `mixer ablate` (mixer/ablate/heldout.py)
    if mix.get("heldout_fraction") is not None:
        frac = c.number(mix["heldout_fraction"], ("mix", "heldout_fraction"), minimum=0)
        if not frac < 0.5:
            raise c.err(("mix", "heldout_fraction"), f"must be below 0.5 (got {frac:g})")
        mix["heldout_fraction"] = frac
    if mix.get("heldout_seed") is not None:
        c.integer(mix["heldout_seed"], ("mix", "heldout_seed"), minimum=0)
        if mix["heldout_seed"] > MAX_SEED:
            raise c.err(
                ("mix", "heldout_seed"), f"must be at most 2^63-1 (got {mix['heldout_seed']})"
            )
    return mix


def validate(data: Any, path: Path, where: _Where, lines: dict) -> Recipe:
    c = _Checker(where)
    data = c.mapping(data, (), TOP_KEYS, required=REQUIRED_TOP)
    name = c.string(data["name"], ("name",))
    try:
        check_name(name, "mix")
    except MixerError as e:
        raise c.err(("name",), str(e)) from None
    workdir = Path(c.string(data.get("workdir", f"work/{name}"), ("workdir",)))
    seed = c.seed(data.get("seed", 0), ("seed",))
    budget = c.tokens(data["budget"], ("budget",))
    if budget <= 0:
        raise c.err(("budget",), "must be > 0")
    dedup_keys = _accepted_keys(
        "mixer.dedup", "run_dedup", {"workdir", "workers", "progress"}, DEDUP_KEYS
    )
    dedup = _check_optional_section(c, data, "dedup", dedup_keys)
    decon = _check_optional_section(c, data, "decon", DECON_KEYS)
    if dedup is not None:
        c.section(dedup, ("dedup",), SECTION_TYPES["dedup"])
        if dedup.get("bands") and dedup.get("rows") and dedup.get("num_perm"):
            if dedup["bands"] * dedup["rows"] > dedup["num_perm"]:
                raise c.err(("dedup", "bands"), "bands x rows must be <= num_perm")
    if decon is not None:
        c.section(decon, ("decon",), SECTION_TYPES["decon"])
    if dedup is not None and dedup.get("sources") is not None:
        names = data.get("sources") if isinstance(data.get("sources"), dict) else {}
        for i, s in enumerate(c.string_list(dedup["sources"], ("dedup", "sources"))):
            if s not in names:
                raise c.err(("dedup", "sources", i), f"unknown source {s!r}")
    sources = _check_sources(c, data, dedup, decon is not None)
    if decon is not None and decon.get("eval_sets") is not None:
        c.string_list(decon["eval_sets"], ("decon", "eval_sets"), allow_scalar=True)
    groups = _check_groups(c, data, sources)
    taggers = _check_taggers_section(c, data)
    train_fasttext = _check_train_fasttext(c, data, taggers)
    if data.get("description") is not None:
        c.string(data["description"], ("description",))
    return Recipe(
        path=path,
        name=name,
        workdir=workdir,
        seed=seed,
        budget=budget,
        sources=sources,
        taggers=taggers,
        train_fasttext=train_fasttext,
        dedup=dedup,
        decon=decon,
        groups=groups,
        tokenizer=_check_tokenizer(c, data),
        tokenize=_check_tokenize(c, data),
        train=_check_train(c, data),
        mix=_check_mix(c, data),
        raw=data,
        lines=lines,
    )
