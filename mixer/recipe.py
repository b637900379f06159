"""Recipes: load a YAML recipe, substitute variables, validate everything before any work.

A recipe is the one source of configuration of a run (docs/recipes.md). `load_recipe` parses
the YAML twice: `yaml.compose` gives the line of every key (so an error says
"recipes/x.yaml:12: sources.web.filters[1]: ..."), `yaml.safe_load` gives the values. Then
`${name}` / `${ENV:-default}` references are substituted, overrides applied, and every
section checked: unknown keys, types, shares, group membership, tagger names and settings,
filter SQL (parsed by DuckDB, no data), inputs (optional: `mixer plan` lists missing inputs
instead of failing, see `missing_inputs`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from mixer.errors import MixerError
from mixer.recipe_schema import *  # noqa: F403  (the model and its constants, re-exported)
from mixer.recipe_schema import (  # noqa: F401
    DTYPES,
    TOP_KEYS,
    GroupSpec,
    Recipe,
    SourceSpec,
    TargetSpec,
    _dotted,
    _Where,
    attribute_tagger,
    filter_columns,
    format_tokens,
    parse_tokens,
    validate,
)

# A recipe is a few hundred values: these caps stop YAML alias bombs ("billion laughs") and
# absurd nesting in milliseconds, before anything is built from the document.
MAX_YAML_DEPTH = 64
MAX_YAML_VALUES = 100_000

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def check_yaml_shape(text: str, path: str) -> None:
    """Stream the YAML events (no objects built) and refuse a document nested deeper than
    MAX_YAML_DEPTH or whose aliases expand to more than MAX_YAML_VALUES values, naming the
    line and key where the limit is crossed."""
    anchors: dict[str, int] = {}
    # frames: [is_mapping, expanded size so far, anchor, current key or index, expecting a key]
    stack: list[list] = []

    def keys() -> tuple:
        return tuple(f[3] for f in stack if f[3] is not None)

    def fail(event, message: str) -> MixerError:
        k = keys()
        dotted = _dotted(k[:8]) + ("..." if len(k) > 8 else "")
        where = f"{path}:{event.start_mark.line + 1}"
        return MixerError(f"{where}: {dotted + ': ' if dotted else ''}{message}")

    def done(size: int, key_value=None) -> None:
        """A node of `size` expanded values finished inside the top frame."""
        if not stack:
            return
        f = stack[-1]
        f[1] += size
        if f[0]:  # mapping: a key, then its value
            if f[4]:
                f[3] = key_value if isinstance(key_value, str) else "?"
            f[4] = not f[4]
        else:
            f[3] += 1

    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.ScalarEvent):
            if event.anchor:
                anchors[event.anchor] = 1
            done(1, event.value)
        elif isinstance(event, yaml.AliasEvent):
            size = anchors.get(event.anchor, 1)
            if sum(f[1] for f in stack) + size > MAX_YAML_VALUES:
                raise fail(
                    event,
                    f"YAML aliases expand to more than {MAX_YAML_VALUES:,} values "
                    f"(*{event.anchor}: an alias bomb?)",
                )
            done(size)
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            if len(stack) >= MAX_YAML_DEPTH:
                raise fail(event, f"YAML nested deeper than {MAX_YAML_DEPTH} levels")
            is_map = isinstance(event, yaml.MappingStartEvent)
            if stack and stack[-1][0] and stack[-1][4]:  # a collection used as a key
                stack[-1][3] = "?"
            stack.append([is_map, 0, event.anchor, None if is_map else 0, True])
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            f = stack.pop()
            size = f[1] + 1
            if f[2]:
                anchors[f[2]] = size
            if stack and stack[-1][0] and stack[-1][4]:
                stack[-1][3] = "?"  # finishing a key that was a collection
            done(size, None)


def _node_lines(node, prefix: tuple, lines: dict, where: _Where) -> None:
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key == "<<":  # YAML merge key: its content is checked as the mapping's own keys
                continue
            path = (*prefix, key)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise MixerError(f"{where.path}:{line}: {_dotted(path)}: duplicate key")
            seen.add(key)
            lines[path] = key_node.start_mark.line + 1
            _node_lines(value_node, path, lines, where)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, i)
            lines[path] = item.start_mark.line + 1
            _node_lines(item, path, lines, where)


def _substitute(value: Any, variables: dict, where: _Where, keys: tuple) -> Any:
    """Replace ${name} and ${name:-default} in every string; a string that is exactly one
    reference takes the YAML type of what it expands to (so `seed: ${SEED:-1}` is an int)."""
    if isinstance(value, dict):
        return {k: _substitute(v, variables, where, (*keys, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, where, (*keys, i)) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def lookup(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in variables:
            return str(variables[name])
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise where.error(
            keys,
            f"undefined variable ${{{name}}} (not in variables, not in the environment, no :-default)",
        )

    whole = _VAR.fullmatch(value)
    out = _VAR.sub(lookup, value)
    if whole:
        try:
            typed = yaml.safe_load(out)
        except yaml.YAMLError:
            return out
        if isinstance(typed, (int, float, bool)) or typed is None:
            return typed
    return out


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise MixerError(f"override {dotted}: {k} is not a mapping")
        node = nxt
    node[keys[-1]] = value


# ------------------------------------------------------------------------------ entry points


def missing_inputs(recipe: Recipe) -> list[str]:
    """One message per input of a source that yields no shard (or can't be read), naming the
    key and line. Inputs are expanded by the one resolver the ingest stage uses."""
    from mixer.inputs import InputError, resolve_each

    out = []
    for sname, src in recipe.sources.items():
        for i, item in enumerate(src.inputs):
            where = recipe.where("sources", sname, "inputs", i)
            try:
                resolve_each([item])
            except InputError as e:
                out.append(f"{where}: {e.reason} ({item!r})")
            except (OSError, ValueError) as e:  # object storage that can't be listed
                out.append(f"{where}: cannot list {item!r} ({e})")
    eval_sets = (recipe.decon or {}).get("eval_sets") or []
    for i, item in enumerate([eval_sets] if isinstance(eval_sets, str) else eval_sets):
        try:
            resolve_each([item])
        except InputError as e:
            out.append(f"{recipe.where('decon', 'eval_sets', i)}: {e.reason} ({item!r})")
    return out


def load_recipe(
    path: str | Path, overrides: dict | None = None, check_inputs: bool = True
) -> Recipe:
    """Parse, substitute and validate a recipe; MixerError naming file:line: key on any problem.

    `overrides` maps dotted keys to values applied after substitution, e.g.
    {"budget": "1M", "taggers.quality.model": "q.bin", "workdir": "w"}; "variables.NAME" (or a
    bare NAME declared under `variables:`) sets a variable before substitution.
    `check_inputs=False` skips the input check (`mixer plan` reports them via missing_inputs).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MixerError(f"{path}: recipe not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MixerError(f"{path}: cannot read recipe: {e}") from None
    where = _Where(str(path), {})
    try:
        check_yaml_shape(text, str(path))
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise MixerError(f"{path}{line}: invalid YAML: {problem}") from None
    lines: dict = {}
    if node is not None:
        _node_lines(node, (), lines, where)
    where.lines = lines
    if not isinstance(data, dict):
        raise MixerError(f"{path}: a recipe is a YAML mapping (name, budget, sources, groups, ...)")

    overrides = dict(overrides or {})
    declared = data.get("variables") or {}
    if not isinstance(declared, dict):
        raise where.error(("variables",), "expected a mapping of names to values")
    var_overrides = {}
    for k in list(overrides):
        if k.startswith("variables."):
            var_overrides[k.split(".", 1)[1]] = overrides.pop(k)
        elif k in declared and k not in TOP_KEYS:
            var_overrides[k] = overrides.pop(k)
    variables: dict[str, Any] = {}
    for k, v in declared.items():
        if not isinstance(k, str) or not _VAR.fullmatch("${" + k + "}"):
            raise where.error(("variables", k), "a variable name is letters, digits and '_'")
        if k in var_overrides:
            variables[k] = var_overrides.pop(k)
        elif isinstance(v, (dict, list)):
            raise where.error(("variables", k), "a variable holds a scalar")
        else:
            variables[k] = _substitute(v, variables, where, ("variables", k))
    variables.update(var_overrides)
    data = {k: v for k, v in data.items() if k != "variables"}
    data = _substitute(data, variables, where, ())
    data["variables"] = variables
    for k, v in overrides.items():
        if k.split(".", 1)[0] not in TOP_KEYS:
            raise MixerError(f"override {k}: unknown recipe key {k.split('.', 1)[0]!r}")
        _set_dotted(data, k, v)
    recipe = validate(data, path, where, lines)
    if check_inputs:
        missing = missing_inputs(recipe)
        if missing:
            more = (
                f" (and {len(missing) - 1} more: run `mixer plan` to list them)"
                if len(missing) > 1
                else ""
            )
            raise MixerError(missing[0] + more)
    return recipe


def parse_overrides(items) -> dict:
    """`--set KEY=VALUE` items -> {dotted key: value} for load_recipe."""
    from mixer.taggers.base import coerce_setting

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise MixerError(
                f"--set {item!r}: expected KEY=VALUE (e.g. budget=1M, variables.data_root=data)"
            )
        out[key.strip()] = coerce_setting(value)
    return out
