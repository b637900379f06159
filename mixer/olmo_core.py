"""`mixer export olmo-core`: an OLMo-core data config for a mix's token arrays, as they were built.

Three forms of one export, all written from tokens.json and the mix manifest (OLMo-core itself is
not needed to write them):

- Python: a module defining `tokenizer` (TokenizerConfig), `dataset` (NumpyFSLDatasetConfig over
  every part: one dataset) and, when the arrays were written per source, `source_mixture`
  (SourceMixtureDatasetConfig: one SourceMixtureConfig per source, target ratios and maximum
  repetition from the mix manifest) and `mixture_dataset` (NumpyFSLDatasetConfig.from_src_mix).
- YAML: one config in OLMo-core's own config-dict form (`_CLASS_` keys), so that
  `NumpyFSLDatasetConfig.from_yaml(FILE)` rebuilds it.
- A mix file: OLMo-core's `label,path` lines (the format of olmo_core/data/mixes/*.txt).

Ratios and repetition, for per-source arrays: each source's arrays already hold the documents
the mix selected, repeats included. The target ratio of a source is its share of the tokens
written (the manifest's `selected_tokens` over the total), and `max_repetition_ratio` is the
repetition the recipe still allows on top of what the arrays hold: the source's
`max_repetition` divided by the most copies of one document already in them
(ceil of the achieved repetition factor, at least 1), never below 1. `requested_tokens` is the
number of tokens written, so OLMo-core takes the mix as built.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from mixer.errors import MixerError
from mixer.io import read_json
from mixer.tokenization.metadata import resolve_stored

DEFAULT_SEQUENCE_LENGTH = 4096
DEFAULT_BATCH_INSTANCES = 512  # OLMo 2 7B stage 1: 1024 x 4096 tokens; half of it by default
PAD_TOKENS = ("<|pad|>", "<pad>", "[PAD]", "<|padding|>", "<|endofpad|>")
FORMATS = ("python", "yaml", "mix")

_MOD = "olmo_core.data"
CLASSES = {
    "tokenizer": f"{_MOD}.tokenizer.TokenizerConfig",
    "fsl": f"{_MOD}.numpy_dataset.NumpyFSLDatasetConfig",
    "mixture": f"{_MOD}.source_mixture.SourceMixtureDatasetConfig",
    "list": f"{_MOD}.source_mixture.SourceMixtureList",
    "source": f"{_MOD}.source_mixture.SourceMixtureConfig",
}


# --------------------------------------------------------------------- locating the inputs


def resolve_tokens_dir(path: str | Path) -> Path:
    """A tokens folder (holding tokens.json), a mix folder WORKDIR/mixes/<mix>, or a workdir
    with exactly one tokenized mix -> the tokens folder."""
    p = Path(path)
    if (p / "tokens.json").is_file():
        return p
    if p.parent.name == "mixes" and (p.parent.parent / "tokens" / p.name / "tokens.json").is_file():
        return p.parent.parent / "tokens" / p.name
    found = sorted(q.parent for q in (p / "tokens").glob("*/tokens.json"))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        names = ", ".join(q.name for q in found)
        raise MixerError(f"{p}: several tokenized mixes ({names}); name one: {p}/tokens/<mix>")
    raise MixerError(
        f"{p}: no tokens.json here (give a tokens folder, WORKDIR/mixes/<mix> or a workdir "
        "with one tokenized mix; run `mixer tokenize` first)"
    )


def find_manifest(tokens_dir: Path, info: dict) -> tuple[dict | None, Path | None]:
    """The mix manifest of these arrays: beside the mix folder (mixes/<mix>.manifest.json), or
    inside it (older workdirs)."""
    candidates = []
    m = resolve_stored(tokens_dir, info.get("mix_dir"))  # relative to tokens.json's folder
    if m is not None:
        candidates += [m.parent / f"{m.name}.manifest.json", m / "manifest.json"]
    mixes = tokens_dir.parent.parent / "mixes"
    candidates += [
        mixes / f"{tokens_dir.name}.manifest.json",
        mixes / tokens_dir.name / "manifest.json",
    ]
    for c in candidates:
        if c.is_file():
            return read_json(c), c
    return None, None


def tokenizer_path(tokens_dir: Path, info: dict) -> Path | None:
    """The tokenizer file tokens.json names (relative to its folder, or absolute)."""
    return resolve_stored(tokens_dir, (info.get("tokenizer") or {}).get("path"))


def _identifier(tokens_dir: Path, info: dict) -> str | None:
    """The tokenizer's identifier for OLMo-core: its file, as an absolute path."""
    path = tokenizer_path(tokens_dir, info)
    return str(path.resolve()) if path is not None else None


def pad_token_id(info: dict, tokens_dir: Path | None = None) -> tuple[int, str]:
    """The tokenizer's padding id (the first of PAD_TOKENS it has), else EOS's id."""
    path = tokenizer_path(Path(tokens_dir or "."), info)
    if path and path.is_file():
        try:
            added = json.loads(Path(path).read_text(encoding="utf-8")).get("added_tokens") or []
        except (OSError, ValueError):
            added = []
        ids = {t.get("content"): t.get("id") for t in added if isinstance(t, dict)}
        for name in PAD_TOKENS:
            if isinstance(ids.get(name), int):
                return ids[name], f"token {name!r} of the tokenizer"
    return int(info["eos_id"]), "no padding token in the tokenizer: EOS's id"


# --------------------------------------------------------------------- the export


def build_export(
    path: str | Path,
    sequence_length: int = DEFAULT_SEQUENCE_LENGTH,
    global_batch_size: int | None = None,
    prefix: str | None = None,
    pad_id: int | None = None,
    tokenizer_id: str | None = None,
    work_dir: str | None = None,
    seed: int | None = None,
) -> dict:
    """Everything the renderers need, as plain data. `prefix` replaces the tokens folder in the
    paths (e.g. s3://bucket/tokens/mix once the arrays are copied there)."""
    tokens_dir = resolve_tokens_dir(path)
    info = read_json(tokens_dir / "tokens.json") or {}
    parts = info.get("parts") or []
    if not parts:
        raise MixerError(f"{tokens_dir / 'tokens.json'}: no parts listed")
    for key in ("dtype", "vocab_size", "eos_id"):
        if info.get(key) is None:
            raise MixerError(f"{tokens_dir / 'tokens.json'}: key {key!r} missing")
    if int(sequence_length) < 1:
        raise MixerError(f"--sequence-length must be positive, got {sequence_length}")
    total = int(info.get("total_tokens") or sum(int(p["tokens"]) for p in parts))
    if global_batch_size is None:
        instances = max(1, min(DEFAULT_BATCH_INSTANCES, total // int(sequence_length)))
        global_batch_size = instances * int(sequence_length)
    if global_batch_size < 1 or global_batch_size % int(sequence_length):
        raise MixerError(
            f"--global-batch-size must be a positive multiple of --sequence-length "
            f"({sequence_length}), got {global_batch_size}"
        )
    base = prefix.rstrip("/") if prefix else str(tokens_dir.resolve())

    def where(rel: str) -> str:
        return f"{base}/{rel}"

    manifest, manifest_path = find_manifest(tokens_dir, info)
    msources = (manifest or {}).get("sources") or {}
    mix_name = (manifest or {}).get("mix") or tokens_dir.name
    layout = info.get("layout") or ("per_source" if all("source" in p for p in parts) else "mixed")
    files = [(str(p["file"]), p.get("source")) for p in parts]
    labels = [src if layout == "per_source" and src else mix_name for _, src in files]
    if pad_id is None:
        pad_id, pad_how = pad_token_id(info, tokens_dir)
    else:
        pad_how = "given with --pad-id"
    tokenizer = {
        "vocab_size": int(info["vocab_size"]),
        "eos_token_id": int(info["eos_id"]),
        "pad_token_id": int(pad_id),
        "bos_token_id": None if info.get("bos_id") is None else int(info["bos_id"]),
        "identifier": tokenizer_id or _identifier(tokens_dir, info),
    }
    sources = None
    notes = [f"pad_token_id: {pad_how}"]
    if layout == "per_source":
        per_source = info.get("tokens_per_source") or {}
        sources = []
        for name in dict.fromkeys(src for _, src in files):
            tokens = int(
                per_source.get(name)
                or sum(int(p["tokens"]) for p in parts if p.get("source") == name)
            )
            m = msources.get(name) or {}
            achieved = float(m.get("repetition_factor") or m.get("achieved_repetition") or 1.0)
            max_rep = float(m.get("max_repetition") or 1.0)
            copies = max(1, math.ceil(achieved - 1e-9))
            sources.append(
                {
                    "source_name": name,
                    "target_ratio": tokens / total,
                    "paths": [where(f) for f, src in files if src == name],
                    "max_repetition_ratio": max(1.0, max_rep / copies),
                    "tokens": tokens,
                    "recipe_target_tokens": m.get("target_tokens"),
                    "recipe_max_repetition": m.get("max_repetition"),
                    "repetition_in_arrays": m.get("repetition_factor"),
                }
            )
        if not manifest:
            notes.append("no mix manifest found: max_repetition_ratio 1.0 for every source")
    else:
        notes.append(
            "the arrays hold one mixed set of parts: tokenize with per-source arrays "
            "(tokenize.per_source: true) to get a SourceMixtureDatasetConfig"
        )
    return {
        "mix": mix_name,
        "tokens_dir": str(tokens_dir.resolve()),
        "manifest": str(manifest_path) if manifest_path else None,
        "layout": layout,
        "dtype": info["dtype"],
        "tokenizer": tokenizer,
        "paths": [where(f) for f, _ in files],
        "labels": labels,
        "sources": sources,
        "requested_tokens": total,
        "sequence_length": int(sequence_length),
        "global_batch_size": int(global_batch_size),
        "seed": int(seed if seed is not None else info.get("seed") or 0),
        "work_dir": work_dir,
        "notes": notes,
    }


# --------------------------------------------------------------------- renderers


def config_dicts(export: dict) -> dict[str, dict]:
    """OLMo-core config dicts (as `Config.as_config_dict()` writes them; `Config.from_dict`
    rebuilds them): "dataset" always, "mixture_dataset" for per-source arrays."""
    tok = {"_CLASS_": CLASSES["tokenizer"], **_no_none(export["tokenizer"])}
    common = {
        "tokenizer": tok,
        "dtype": export["dtype"],
        "sequence_length": export["sequence_length"],
    }
    if export["work_dir"]:
        common["work_dir"] = export["work_dir"]
    out = {
        "dataset": {
            "_CLASS_": CLASSES["fsl"],
            **common,
            "paths": export["paths"],
            "metadata": [{"label": label} for label in export["labels"]],
        }
    }
    if export["sources"]:
        out["mixture_dataset"] = {
            "_CLASS_": CLASSES["fsl"],
            **common,
            "source_mixture_config": {
                "_CLASS_": CLASSES["mixture"],
                "source_list": {
                    "_CLASS_": CLASSES["list"],
                    "sources": [
                        {
                            "_CLASS_": CLASSES["source"],
                            "source_name": s["source_name"],
                            "target_ratio": s["target_ratio"],
                            "paths": s["paths"],
                            "max_repetition_ratio": s["max_repetition_ratio"],
                        }
                        for s in export["sources"]
                    ],
                },
                "requested_tokens": export["requested_tokens"],
                "global_batch_size": export["global_batch_size"],
                "seed": export["seed"],
            },
        }
    return out


def _no_none(d: dict) -> dict:
    return {k: v for k, v in d.items() if v is not None}


def render_yaml(export: dict, which: str | None = None) -> str:
    import yaml

    dicts = config_dicts(export)
    which = which or ("mixture_dataset" if "mixture_dataset" in dicts else "dataset")
    if which not in dicts:
        raise MixerError(
            "no source mixture for these arrays: they were written as one mixed set of parts "
            "(tokenize with per-source arrays), or export --dataset single"
        )
    head = _header(export, "#") + (
        f"# Load with: NumpyFSLDatasetConfig.from_yaml(PATH)  ({which.replace('_', ' ')})\n"
    )
    return head + yaml.safe_dump(dicts[which], sort_keys=False, width=100)


def render_mix_file(export: dict) -> str:
    """OLMo-core's mix-file format: `label,path` per line, `#` comments."""
    for p in export["paths"]:
        if "," in p:
            raise MixerError(f"a path holds a comma, which the mix-file format cannot carry: {p}")
    lines = [_header(export, "#").rstrip("\n")]
    lines += [
        f"{label},{path}" for label, path in zip(export["labels"], export["paths"], strict=True)
    ]
    return "\n".join(lines) + "\n"


def _header(export: dict, c: str) -> str:
    lines = [
        f"OLMo-core data config for mix {export['mix']!r}, written by `mixer export olmo-core`.",
        f"Token arrays: {export['tokens_dir']} ({export['layout']} layout, {export['dtype']}, "
        f"{export['requested_tokens']:,} tokens).",
    ]
    if export["manifest"]:
        lines.append(f"Mix manifest: {export['manifest']}")
    lines += export["notes"]
    return "".join((f"{c} {line}" if c else line) + "\n" for line in lines)


def render_python(export: dict) -> str:
    tok = export["tokenizer"]
    r = repr
    out = [
        '"""' + _header(export, "").replace('"""', "'''").rstrip("\n"),
        "",
        "Use it from a training script:",
        "",
        "    from this_module import dataset  # or mixture_dataset",
        "    data = dataset.build()",
        '"""',
        "",
    ]
    out += [
        "from olmo_core.data import NumpyDatasetDType, NumpyFSLDatasetConfig, TokenizerConfig",
    ]
    if export["sources"]:
        out.append(
            "from olmo_core.data.source_mixture import (\n"
            "    SourceMixtureConfig,\n    SourceMixtureDatasetConfig,\n    SourceMixtureList,\n)"
        )
    out += [
        "",
        f"SEQUENCE_LENGTH = {export['sequence_length']}",
        f"GLOBAL_BATCH_SIZE = {export['global_batch_size']}  # tokens; a multiple of SEQUENCE_LENGTH",
        f"WORK_DIR = {r(export['work_dir'])}  # OLMo-core's cache of instance indices (None: its default)",
        "",
        "tokenizer = TokenizerConfig(",
        f"    vocab_size={tok['vocab_size']},",
        f"    eos_token_id={tok['eos_token_id']},",
        f"    pad_token_id={tok['pad_token_id']},",
        f"    bos_token_id={tok['bos_token_id']},",
        f"    identifier={r(tok['identifier'])},",
        ")",
        "",
        f"PATHS = {_pylist(export['paths'])}",
        f"LABELS = {_pylist(export['labels'])}",
        "",
        "# One dataset: every part, in the order tokens.json lists them.",
        "dataset = NumpyFSLDatasetConfig(",
        "    tokenizer=tokenizer,",
        "    paths=PATHS,",
        '    metadata=[{"label": label} for label in LABELS],',
        f"    dtype=NumpyDatasetDType.{export['dtype']},",
        "    sequence_length=SEQUENCE_LENGTH,",
        "    work_dir=WORK_DIR,",
        ")",
    ]
    if export["sources"]:
        out += [
            "",
            "# One SourceMixtureConfig per source (per-source arrays); the mix as built.",
            "source_mixture = SourceMixtureDatasetConfig(",
            "    source_list=SourceMixtureList(",
            "        sources=[",
        ]
        for s in export["sources"]:
            out += [
                "            SourceMixtureConfig(",
                f"                source_name={r(s['source_name'])},",
                f"                # {s['tokens']:,} tokens written; recipe target "
                f"{_num(s['recipe_target_tokens'])}, max_repetition {_num(s['recipe_max_repetition'])}, "
                f"repetition already in the arrays {_num(s['repetition_in_arrays'])}",
                f"                target_ratio={s['target_ratio']!r},",
                f"                max_repetition_ratio={s['max_repetition_ratio']!r},",
                f"                paths={_pylist(s['paths'], 16)},",
                "            ),",
            ]
        out += [
            "        ]",
            "    ),",
            f"    requested_tokens={export['requested_tokens']},",
            "    global_batch_size=GLOBAL_BATCH_SIZE,",
            f"    seed={export['seed']},",
            ")",
            "mixture_dataset = NumpyFSLDatasetConfig.from_src_mix(",
            "    source_mixture,",
            "    tokenizer=tokenizer,",
            f"    dtype=NumpyDatasetDType.{export['dtype']},",
            "    sequence_length=SEQUENCE_LENGTH,",
            "    work_dir=WORK_DIR,",
            ")",
        ]
    else:
        out += [
            "",
            "source_mixture = None  # mixed arrays: no per-source paths",
            "mixture_dataset = None",
        ]
    return "\n".join(out) + "\n"


def _num(v) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.3g}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def _pylist(items: list[str], indent: int = 4) -> str:
    if not items:
        return "[]"
    pad = " " * indent
    return "[\n" + "".join(f"{pad}{item!r},\n" for item in items) + " " * (indent - 4) + "]"


def export_olmo_core(
    path: str | Path,
    out: str | Path | None = None,
    fmt: str | None = None,
    dataset: str | None = None,
    **kwargs,
) -> tuple[str, dict]:
    """Render the export (format from `fmt` or the suffix of `out`: .py, .yaml/.yml, .txt);
    write it to `out` when given. Returns (text, export)."""
    export = build_export(path, **kwargs)
    if fmt is None:
        suffix = Path(out).suffix.lower() if out else ".py"
        fmt = {".yaml": "yaml", ".yml": "yaml", ".txt": "mix", ".mix": "mix"}.get(suffix, "python")
    if fmt not in FORMATS:
        raise MixerError(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}")
    which = {None: None, "single": "dataset", "mixture": "mixture_dataset"}[dataset]
    if fmt == "yaml":
        text = render_yaml(export, which)
    elif fmt == "mix":
        text = render_mix_file(export)
    else:
        text = render_python(export)
    if out:
        from mixer.io import write_bytes_atomic

        write_bytes_atomic(Path(out), text.encode("utf-8"))
    return text, export
