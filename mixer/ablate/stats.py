"""Seed statistics of an ablation: means, 95% intervals, paired differences, winners.

Pure Python over lists of per-seed values (no numpy, no torch), so results.json is computed the
same way everywhere. Runs of different mixes with the same seed share their initial weights
and data-order seed, so differences between two mixes are taken seed by seed (paired), which
removes the part of the noise that comes from the initialisation.
"""

from __future__ import annotations

import math

# Two-sided 95% quantiles of Student's t with df degrees of freedom (df >= 31: normal).
_T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
    17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
    25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042,
}  # fmt: skip


def t975(df: int) -> float:
    return _T975.get(df, 1.96) if df >= 1 else math.nan


def summarize(values: list[float]) -> dict:
    """mean, sample std and the half-width of a 95% t interval (None with one value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return {"mean": mean, "std": None, "ci95": None, "n": n}
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    return {"mean": mean, "std": std, "ci95": t975(n - 1) * std / math.sqrt(n), "n": n}


def paired_difference(a: list[float], b: list[float]) -> dict:
    """a - b seed by seed: mean difference, its 95% interval, and whether it excludes zero."""
    d = summarize([x - y for x, y in zip(a, b, strict=True)])
    d["significant"] = d["ci95"] is not None and abs(d["mean"]) > d["ci95"]
    return d


def winners(table: dict[str, dict[str, list[float]]], domains: list[str]) -> dict[str, dict]:
    """Per domain: the mix with the lowest mean (bits per byte: lower is better), the runner-up,
    their paired difference and whether it is larger than the seed noise.

    table: mix -> domain -> per-seed values (same seed order for every mix).
    """
    out = {}
    mixes = list(table)
    for dom in domains:
        have = [m for m in mixes if dom in table[m]]
        if not have:
            continue
        ranked = sorted(have, key=lambda m: (sum(table[m][dom]) / len(table[m][dom]), m))
        row = {"winner": ranked[0], "ranking": ranked}
        if len(ranked) > 1:
            diff = paired_difference(table[ranked[1]][dom], table[ranked[0]][dom])
            row |= {
                "runner_up": ranked[1],
                "margin": diff["mean"],  # runner-up minus winner (> 0)
                "margin_ci95": diff["ci95"],
                "seed_std": diff["std"],
                "significant": diff["significant"],
            }
        out[dom] = row
    return out
