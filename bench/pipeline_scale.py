"""End-to-end `mixer run` at 1x, 2x and 4x the data: time and peak memory per stage.

    .venv/bin/python -m bench.pipeline_scale [--scale 2.5] [--factors 1,2,4]

The corpus is the sample generator's (web pages of many kinds plus six domain sources) at
`scale * factor`; the recipe is recipes/sample.yaml with the token budget scaled along and the
training stage off. Each stage runs as its own `mixer run --until STAGE` process (the earlier
stages are cached by then), timed with GNU time: wall seconds and the peak RSS of the largest
process of that stage.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from mixer.pipeline import STAGES
from mixer.sample_data import generate

ROOT = Path(__file__).resolve().parents[1]


def _recipe(path: Path, data: Path, workdir: Path, budget_tokens: int) -> None:
    recipe = yaml.safe_load((ROOT / "recipes" / "sample.yaml").read_text())
    recipe["variables"]["data_root"] = str(data)
    recipe["workdir"] = str(workdir)
    recipe["taggers"]["quality"]["model"] = str(workdir / "models" / "quality.bin")
    recipe["budget"] = budget_tokens
    recipe.pop("train", None)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))


def _text_mb(workdir: Path) -> tuple[int, float]:
    docs, chars = 0, 0
    for p in sorted((workdir / "documents").rglob("part-*.parquet")):
        t = pq.read_table(p, columns=["text"])
        docs += t.num_rows
        chars += pc.sum(pc.binary_length(t.column("text"))).as_py() or 0
    return docs, chars / 1e6


def run(scale: float, factors: list[int], root: Path) -> list[dict]:
    rows = []
    for f in factors:
        base = root / f"x{f}"
        shutil.rmtree(base, ignore_errors=True)
        data, wd = base / "data", base / "work"
        generate(data, seed=0, scale=scale * f)
        recipe = base / "recipe.yaml"
        _recipe(recipe, data, wd, int(400_000 * scale * f))
        stages = {}
        for stage in STAGES:
            if stage == "train":
                continue
            cmd = [
                "/usr/bin/time",
                "-f",
                "%e %M",
                sys.executable,
                "-m",
                "mixer.cli",
                "run",
                str(recipe),
                "--until",
                stage,
                "--quiet",
            ]
            res = subprocess.run(cmd, capture_output=True, text=True, check=True)
            wall, rss_kb = res.stderr.strip().splitlines()[-1].split()
            stages[stage] = (float(wall), int(rss_kb) / 1024)
        docs, mb = _text_mb(wd)
        rows.append({"factor": f, "docs": docs, "mb": mb, "stages": stages})
        total = sum(w for w, _ in stages.values())
        print(f"x{f}: {docs:,} docs, {mb:.0f} MB of text, {total:.0f} s in all", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=2.5, help="sample scale of the 1x corpus")
    ap.add_argument("--factors", default="1,2,4")
    ap.add_argument("--root", default="work/bench/pipeline")
    args = ap.parse_args()
    rows = run(args.scale, [int(x) for x in args.factors.split(",")], Path(args.root))
    stages = [s for s in STAGES if s != "train"]
    print(
        "\n| stage | "
        + " | ".join(f"x{r['factor']} s | x{r['factor']} peak MB" for r in rows)
        + " |"
    )
    print("| --- |" + " --- | --- |" * len(rows))
    for s in stages:
        print(
            f"| {s} | "
            + " | ".join(f"{r['stages'][s][0]:.1f} | {r['stages'][s][1]:.0f}" for r in rows)
            + " |"
        )
    totals = [sum(w for w, _ in r["stages"].values()) for r in rows]
    print(
        "| total | "
        + " | ".join(
            f"{t:.1f} | {max(m for _, m in r['stages'].values()):.0f}"
            for t, r in zip(totals, rows, strict=True)
        )
        + " |"
    )
    for r, t in zip(rows, totals, strict=True):
        print(
            f"x{r['factor']}: {r['docs']:,} docs, {r['mb']:.0f} MB text, {t:.0f} s, {t / totals[0]:.2f}x the 1x time for {r['mb'] / rows[0]['mb']:.2f}x the data"
        )


if __name__ == "__main__":
    main()
