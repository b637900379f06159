"""`mixer ablate`: build each recipe's mix, train the same proxy on each, compare per domain.

1. Every recipe runs through the pipeline up to `tokenize` (cached stages are skipped), with
   `mix.heldout_fraction`/`mix.heldout_seed` set the same for all, so the same held-out
   documents of every source are excluded from every mix. Recipes that share a workdir and a
   mix name get distinct mix names (their file stems); the ablation's mix of a recipe that
   does not hold out those documents itself is written as `<mix>-ablate`, so the recipe's own
   mix folder is never overwritten.
2. The evaluation sets are built once: held-out documents per source, plus the JSONL sets given.
3. One training run per (mix, seed), all with the same proxy config, token count and seeds (so
   the same initial weights for a seed), as tasks of one Stage: finished runs are recorded and
   skipped on a rerun, and they run on a local process pool (1 torch thread each, so the
   numbers do not depend on the number of workers).
4. OUT/results.json (deterministic: no timings, no host names) and OUT/report.html; timings go
   to OUT/timings.json.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import time
from pathlib import Path

from mixer.ablate import stats
from mixer.ablate.evalsets import Encoder, build_eval_sets, load_domain
from mixer.ablate.proxy import proxy_config, stream_nll
from mixer.errors import MixerError
from mixer.io import read_json, write_json_atomic
from mixer.schema import mix_manifest_path, tokens_dir
from mixer.stage import RunContext, Stage, Task, run_stage
from mixer.tokenization.metadata import resolve_stored

FORMAT = "mixer-ablate/1"
DEFAULT_HELDOUT = 0.02
ABLATE_SUFFIX = "-ablate"  # on-disk mix name when the recipe's own mix holds out nothing
OVERALL = "overall"  # every held-out domain together (bits over bytes)
LN2 = math.log(2.0)


# ------------------------------------------------------------------------ the training stage


class AblateTrain(Stage):
    """One task per (mix, seed): train the proxy on the mix's tokens, evaluate every domain."""

    group = "ablate"

    def __init__(self, workdir: Path, config: dict):
        super().__init__(workdir, config)
        self.name = f"ablate-{config['name']}"

    def input_fingerprint(self):
        return {m["name"]: m["fingerprint"] for m in self.config["mixes"]}

    def outputs(self) -> list[Path]:
        out = Path(self.config["out"])
        return [out / "results.json", out / "report.html"]

    def tasks(self) -> list[Task]:
        return [
            Task(key=f"{m['name']}/seed-{seed}", args=(m["name"], m["tokens"], seed),
                 fingerprint=[m["fingerprint"], self.config["eval_sha"]], weight=1)
            for m in self.config["mixes"]
            for seed in self.config["seeds"]
        ]  # fmt: skip

    def run_task(self, task: Task) -> dict:
        from mixer.train import train

        mix, data, seed = task.args
        out = Path(self.config["out"])
        evals = read_json(out / "eval" / "eval.json")
        domains = [(d["name"], load_domain(out, d)) for d in evals["domains"]]
        cfg = {**self.config["train"], "seed": seed}
        steps = cfg["steps"]

        def evaluator(model, device, step):
            final = step == steps
            res = {}
            for name, stream in domains:
                if not final:  # curve points: the first quarter of each domain is enough
                    stream = stream[: max(2, len(stream) // 4)]
                res[name] = stream_nll(model, stream, model.seq_len, 16, device)
            return {"eval" if final else "eval_curve": res}

        run_dir = out / "runs" / mix / f"seed-{seed}"
        summary = train(
            data, run_dir, config=cfg, progress=False, restart=True, evaluator=evaluator
        )
        rows = read_metrics(run_dir / "metrics.jsonl")
        final = next(r["eval"] for r in reversed(rows) if "eval" in r)
        curve = [{"step": r["step"], "nll": r["eval_curve"]} for r in rows if "eval_curve" in r] + [
            {"step": steps, "nll": final, "final": True}
        ]
        return {
            "mix": mix,
            "seed": seed,
            "nll": final,
            "curve": curve,
            "train_loss": [[r["step"], r["loss"]] for r in rows if "loss" in r],
            "tokens_seen": summary["tokens_seen"],
            "params": summary["params"],
            "device": summary["device"],
            "train_seconds": summary["train_seconds"],
        }

    def finish(self, results: list[dict]) -> dict:
        out = Path(self.config["out"])
        evals = read_json(out / "eval" / "eval.json")
        res = aggregate(self.config, evals, results)
        write_json_atomic(out / "results.json", res)
        timings = {
            "runs": {f"{r['mix']}/seed-{r['seed']}": r["train_seconds"] for r in results},
            "device": sorted({r["device"] for r in results}),
        }
        old = read_json(out / "timings.json") or {}
        write_json_atomic(out / "timings.json", {**old, **timings})
        from mixer.ablate.html import write_html

        write_html(res, out / "report.html")
        return {"results": str(out / "results.json"), "html": str(out / "report.html")}


def read_metrics(path: Path) -> list[dict]:
    import orjson

    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


# ------------------------------------------------------------------------ aggregation


def _domain_values(evals: dict, nll: dict) -> dict[str, dict[str, float]]:
    """Per domain of one run: loss (nats/token) and bits per byte, plus the overall held-out."""
    out = {}
    tot_nll = tot_tok = tot_bytes = 0
    for d in evals["domains"]:
        v = nll[d["name"]]
        out[d["name"]] = {"loss": v / d["tokens"], "bpb": v / LN2 / d["bytes"]}
        if d["kind"] == "heldout":
            tot_nll += v
            tot_tok += d["tokens"]
            tot_bytes += d["bytes"]
    if tot_tok:
        out[OVERALL] = {"loss": tot_nll / tot_tok, "bpb": tot_nll / LN2 / tot_bytes}
    return out


def _curve_bpb(evals: dict, point: dict) -> float:
    """Held-out bits per byte at a curve point (curve points see a quarter of each domain)."""
    nll = nbytes = 0.0
    for d in evals["domains"]:
        if d["kind"] != "heldout":
            continue
        nll += point["nll"][d["name"]]
        frac = 1.0 if point.get("final") else max(1, (d["tokens"] + 1) // 4 - 1) / d["tokens"]
        nbytes += d["bytes"] * frac  # bytes of a prefix: pro rata of its tokens
    return nll / LN2 / nbytes


def aggregate(config: dict, evals: dict, results: list[dict]) -> dict:
    mixes = [m["name"] for m in config["mixes"]]
    seeds = config["seeds"]
    domains = [d["name"] for d in evals["domains"]]
    if any(d["kind"] == "heldout" for d in evals["domains"]):
        domains.append(OVERALL)
    by = {(r["mix"], r["seed"]): _domain_values(evals, r["nll"]) for r in results}
    table = {}
    per_seed = {}
    for m in mixes:
        table[m], per_seed[m] = {}, {}
        for dom in domains:
            row = {}
            for metric in ("bpb", "loss"):
                vals = [by[(m, s)][dom][metric] for s in seeds]
                row[metric] = stats.summarize(vals) | {"per_seed": vals}
            table[m][dom] = row
            per_seed[m][dom] = row["bpb"]["per_seed"]
    differences = {}
    if len(mixes) >= 2:
        base = mixes[0]
        for other in mixes[1:]:
            differences[f"{other} - {base}"] = {
                dom: stats.paired_difference(per_seed[other][dom], per_seed[base][dom])
                for dom in domains
            }
    curves = {}
    for m in mixes:
        runs = [r for r in results if r["mix"] == m]
        steps = [p["step"] for p in runs[0]["curve"]]
        per_step = config["tokens_per_step"]
        curves[m] = {
            "tokens": [s * per_step for s in steps],
            "heldout_bpb": [
                sum(_curve_bpb(evals, r["curve"][i]) for r in runs) / len(runs)
                for i in range(len(steps))
            ],
            "train_loss": _mean_curve([r["train_loss"] for r in runs], per_step),
        }
    return {
        "format": FORMAT,
        "name": config["name"],
        "proxy": config["proxy"],
        "train": config["train"],
        "tokens_per_run": config["train"]["steps"] * config["tokens_per_step"],
        "seeds": seeds,
        "params": results[0]["params"] if results else None,
        "heldout": evals["heldout"],
        "mixes": {m["name"]: m["info"] for m in config["mixes"]},
        "domains": [
            {k: d[k] for k in ("name", "kind", "origin", "documents", "tokens", "bytes")}
            for d in evals["domains"]
        ],
        "metric": "bits per byte (lower is better); loss in nats per token",
        "results": table,
        "winners": stats.winners(per_seed, domains),
        "differences": differences,
        "curves": curves,
    }


def _mean_curve(curves: list[list], per_step: int) -> list[list[float]]:
    steps = [s for s, _ in curves[0]]
    return [
        [steps[i] * per_step, sum(c[i][1] for c in curves) / len(curves)] for i in range(len(steps))
    ]


# ------------------------------------------------------------------------ the command


def _mix_names(recipes: list) -> list[str]:
    """Each recipe's mix name, made distinct where two would write one mix folder."""
    names = [r.name for r in recipes]
    out = []
    for i, r in enumerate(recipes):
        clash = any(
            names[j] == r.name and recipes[j].workdir.resolve() == r.workdir.resolve()
            for j in range(len(recipes))
            if j != i
        )
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(r.path).stem) if clash else r.name
        while name in out:
            name += "_"
        out.append(name)
    return out


def _heldout_settings(recipes: list, fraction: float | None, seed: int | None) -> tuple:
    if fraction is None:
        given = {r.mix.get("heldout_fraction") for r in recipes} - {None}
        if len(given) > 1:
            raise MixerError(
                f"the recipes hold out different fractions ({sorted(given)}): give --heldout-fraction"
            )
        fraction = given.pop() if given else DEFAULT_HELDOUT
    if seed is None:
        given = {r.mix.get("heldout_seed") for r in recipes} - {None}
        if len(given) > 1:
            raise MixerError(
                f"the recipes use different heldout_seed values ({sorted(given)}): give --heldout-seed"
            )
        seed = given.pop() if given else 0
    if not 0 < fraction < 0.5:
        raise MixerError(f"--heldout-fraction {fraction:g}: must be in (0, 0.5)")
    return float(fraction), int(seed)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def ablate(
    recipes: list[str],
    proxy: str = "tiny",
    tokens: int | None = None,
    seeds: int = 3,
    name: str | None = None,
    out: str | None = None,
    workdir: str | None = None,
    evalsets: tuple[str, ...] = (),
    eval_fields: tuple[str, ...] | None = None,
    eval_tokens: int = 16_384,
    heldout_fraction: float | None = None,
    heldout_seed: int | None = None,
    train_overrides: dict | None = None,
    workers: int | None = None,
    device: str = "auto",
    force: bool = False,
    progress: bool = True,
    quiet: bool = False,
    echo=print,
) -> dict:
    """Run the ablation; returns {"results": path, "html": path, "summary": results dict}."""
    from mixer.executor import LocalExecutor
    from mixer.pipeline import run_recipe
    from mixer.recipe import load_recipe
    from mixer.schema import check_name
    from mixer.train import require_torch

    if not recipes:
        raise MixerError("mixer ablate: give at least one recipe")
    if seeds < 1:
        raise MixerError(f"--seeds {seeds}: must be >= 1")
    if eval_tokens < 16:
        raise MixerError(f"--eval-tokens {eval_tokens}: must be >= 16")
    require_torch()
    start = time.perf_counter()
    base = {"workdir": str(workdir)} if workdir else {}
    loaded = [load_recipe(p, base) for p in recipes]
    frac, hseed = _heldout_settings(loaded, heldout_fraction, heldout_seed)
    mix_names = _mix_names(loaded)
    name = name or "-vs-".join(mix_names)
    check_name(name, "ablation")
    root = Path(workdir) if workdir else loaded[0].workdir
    out_dir = Path(out) if out else root / "ablate" / name
    settings = proxy_config(
        proxy, tokens, {"device": device, **(train_overrides or {})}
    )  # checked before any pipeline work

    # 1. mixes and tokens, through the pipeline (cached stages skip)
    mixes, build_seconds = [], {}
    for path, recipe, mix in zip(recipes, loaded, mix_names, strict=True):
        overrides = {**base, "mix.heldout_fraction": frac, "mix.heldout_seed": hseed}
        # A recipe that does not hold out these documents itself gets its ablation mix under
        # another name, so its own mix folder (what `mixer run` made) is left as it is.
        own = (recipe.mix.get("heldout_fraction"), recipe.mix.get("heldout_seed") or 0)
        disk = mix if own == (frac, hseed) else f"{mix}{ABLATE_SUFFIX}"
        if disk != recipe.name:
            overrides["name"] = disk
        t0 = time.perf_counter()
        wd = run_recipe(
            path, until="tokenize", overrides=overrides, workers=workers,
            progress=progress and not quiet, quiet=quiet,
        )  # fmt: skip
        build_seconds[mix] = round(time.perf_counter() - t0, 2)
        tdir = tokens_dir(wd, disk)
        info = read_json(tdir / "tokens.json")
        if not info:
            raise MixerError(f"{tdir}/tokens.json: missing after the pipeline ran")
        manifest = read_json(mix_manifest_path(wd, disk)) or {}
        mixes.append(
            {
                "name": mix,
                "tokens": str(tdir),
                "workdir": wd,
                "recipe": recipe,
                "tokens_info": info,
                "fingerprint": info.get("fingerprint") or _sha256(tdir / "tokens.json"),
                "info": {
                    "recipe": str(path),
                    "mix_dir": disk,
                    "workdir": str(wd),
                    "total_tokens": info.get("total_tokens"),
                    "tokens_per_source": info.get("tokens_per_source"),
                    "shares": {
                        s: v.get("selected_share")
                        for s, v in (manifest.get("sources") or {}).items()
                    },
                },
            }
        )
    shas = {m["tokens_info"].get("tokenizer", {}).get("sha256") for m in mixes}
    if len(shas) > 1:
        raise MixerError(
            "the mixes were tokenized with different tokenizers: an ablation compares mixes "
            "under one tokenizer (give every recipe the same tokenizer.path)"
        )

    # 2. evaluation sets
    first = mixes[0]["tokens_info"]
    tok_file = resolve_stored(mixes[0]["tokens"], first["tokenizer"]["path"])  # relative or not
    encoder = Encoder(tok_file, first["eos_id"], first.get("bos_id"))
    sources: dict[str, Path] = {}
    for m in mixes:
        for s in m["recipe"].sources:
            sources.setdefault(s, m["workdir"])
    evals = build_eval_sets(
        out_dir, sources, [Path(p) for p in evalsets], encoder, hseed, frac,
        eval_tokens, eval_fields,
    )  # fmt: skip
    echo(
        f"[ablate] evaluation: {len(evals['domains'])} domain(s), "
        + ", ".join(f"{d['name']} {d['tokens']:,} tokens" for d in evals["domains"])
    )

    # 3. the runs
    import torch

    from mixer.train.config import make_config

    cfg_obj = make_config(settings, where="--proxy")
    per_step = cfg_obj.batch_size * cfg_obj.seq_len
    on_gpu = cfg_obj.device == "cuda" or (cfg_obj.device == "auto" and torch.cuda.is_available())
    n_workers = 1 if on_gpu else (workers or min(2, os.cpu_count() or 1))
    from mixer.ablate.proxy import PROXIES

    proxy_desc = {"name": proxy, "path": None}
    if proxy not in PROXIES:
        proxy_desc = {"name": "checkpoint", "path": str(proxy)}
    config = {
        "name": name,
        "out": str(out_dir),
        "proxy": proxy_desc,
        "seeds": list(range(seeds)),
        "train": settings,
        "tokens_per_step": per_step,
        "eval_sha": hashlib.sha256(
            "".join(d["sha256"] for d in evals["domains"]).encode()
        ).hexdigest(),
        "mixes": [
            {
                "name": m["name"],
                "tokens": m["tokens"],
                "fingerprint": m["fingerprint"],
                "info": m["info"],
            }
            for m in mixes
        ],  # fmt: skip
    }
    stage = AblateTrain(root, config)
    ctx = RunContext(
        root,
        LocalExecutor(n_workers),
        progress=progress and not quiet,
        echo=echo,
        force=frozenset({stage.name}) if force else frozenset(),
    )
    echo(
        f"[ablate] {len(mixes)} mix(es) x {seeds} seed(s), {settings['steps']} steps x "
        f"{per_step:,} tokens each, on {'cuda' if on_gpu else f'cpu ({n_workers} worker(s))'}"
    )
    paths = run_stage(stage, ctx)
    write_json_atomic(
        out_dir / "timings.json",
        {
            **(read_json(out_dir / "timings.json") or {}),
            "build_seconds": build_seconds,
            "total_seconds": round(time.perf_counter() - start, 2),
        },
    )
    summary = read_json(out_dir / "results.json")
    return {**paths, "summary": summary}
