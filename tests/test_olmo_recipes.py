"""The OLMo 2 recipes plan the published mixes.

For each recipe a tiny stand-in workdir is built: every source gets documents and attribute
parts (all passing the recipe's filters) whose token counts are the published pool sizes
scaled down; with the budget scaled the same way, `mixer plan` must give the published shares
of the mix (OLMo 2 report, arXiv 2501.00656; ../shared/OLMO2_MIXES.md).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner

from mixer.cli import main
from mixer.io import write_parquet_atomic
from mixer.mix import plan
from mixer.recipe import attribute_tagger, filter_columns, load_recipe, parse_tokens
from mixer.schema import attributes_dir, documents_dir, part_name

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

# Dolmino-Mix-1124 dataset card: "% of the mix"
DOLMINO_SHARES = {
    "dolmino_50b": {
        "dclm": 47.2,
        "flan": 16.6,
        "pes2o": 5.85,
        "wiki": 7.11,
        "stackexchange": 2.45,
        "math": 20.8,
    },
    "dolmino_100b": {
        "dclm": 50.2,
        "flan": 16.7,
        "pes2o": 9.52,
        "wiki": 3.57,
        "stackexchange": 2.47,
        "math": 17.5,
    },
    "dolmino_300b": {
        "dclm": 51.9,
        "flan": 11.3,
        "pes2o": 19.4,
        "wiki": 4.86,
        "stackexchange": 1.68,
        "math": 10.8,
    },
}
DOLMINO_POOL = {
    "dclm": "752B",
    "flan": "17.0B",
    "pes2o": "58.6B",
    "wiki": "3.7B",
    "stackexchange": "1.26B",
    "math": "10.7B",
}
# OLMo-Mix-1124 dataset card: tokens per source (stage 1 uses each source once)
OLMO_MIX_TOKENS = {
    "dclm": "3.70T", "starcoder": "83.0B", "pes2o": "58.6B", "arxiv": "20.8B",
    "open_web_math": "12.2B", "algebraic_stack": "11.8B", "wiki": "3.66B",
}  # fmt: skip

# A value of each attribute column the recipes filter on that passes the filter.
PASSING = {
    "lang__label": pa.array(["en"]),
    "lang__score": pa.array([0.99]),
    "gopher__keep": pa.array([True]),
    "dedup__keep": pa.array([True]),
    "decon__keep": pa.array([True]),
    "quality__score": pa.array([0.99]),
}
DOC_SIZE = 50  # tokens per stand-in document


def build_stand_in(workdir: Path, recipe, pool_tokens: dict[str, int]) -> None:
    for name, src in recipe.sources.items():
        total = pool_tokens[name]
        n_docs = max(1, -(-total // DOC_SIZE))
        counts = np.full(n_docs, total // n_docs - 1, dtype=np.int64)  # +1 EOS each
        counts[: total - int((counts + 1).sum())] += 1
        assert int((counts + 1).sum()) == total
        ids = pa.array([f"{name}-{i}" for i in range(n_docs)])
        docs = {
            "id": ids,
            "text": pa.array(["x"] * n_docs),
            "source": pa.array([name] * n_docs),
            "metadata": pa.array(['{"max_stars_count": 10}'] * n_docs),
        }
        write_parquet_atomic(documents_dir(workdir, name) / part_name(0), pa.table(docs))
        columns: dict[str, dict] = {"tokens": {"tokens__count": pa.array(counts)}}
        for expr in src.filters:
            for col in filter_columns(expr):
                tagger = attribute_tagger(col)
                if tagger:
                    columns.setdefault(tagger, {})[col] = pa.repeat(PASSING[col][0], n_docs)
        for tagger, cols in columns.items():
            write_parquet_atomic(
                attributes_dir(workdir, tagger, name) / part_name(0), pa.table({"id": ids, **cols})
            )


@pytest.fixture(autouse=True)
def no_data(monkeypatch, tmp_path):
    monkeypatch.setenv("MIXER_DATA_ROOT", str(tmp_path / "no-data-here"))


@pytest.mark.parametrize("name", sorted(DOLMINO_SHARES))
def test_dolmino_plan_reproduces_published_shares(tmp_path, name):
    scale = 1e-6
    recipe = load_recipe(RECIPES / f"{name}.yaml", check_inputs=False)
    pool = {s: int(parse_tokens(v) * scale) for s, v in DOLMINO_POOL.items()}
    build_stand_in(tmp_path / "w", recipe, pool)
    budget = int(recipe.budget * scale)
    p = plan(
        load_recipe(RECIPES / f"{name}.yaml", {"budget": budget}, check_inputs=False),
        tmp_path / "w",
    )
    assert not p.errors, p.errors
    assert p.missing_inputs  # the real inputs are absent: listed, not fatal
    assert set(p.sources) == set(DOLMINO_SHARES[name])
    for source, share in DOLMINO_SHARES[name].items():
        sp = p.sources[source]
        assert sp.status == "data" and sp.eligible_tokens == pool[source]
        assert sp.share * 100 == pytest.approx(share, abs=0.05), source
        # the repetition stays within what the card's "% of source used" allows
        assert sp.repetition <= sp.max_repetition * 1.005
    assert p.total_target == pytest.approx(budget, abs=len(p.sources))


def test_olmo_mix_1124_plan_uses_every_source_once(tmp_path):
    scale = 1e-7
    path = RECIPES / "olmo_mix_1124.yaml"
    recipe = load_recipe(path, check_inputs=False)
    pool = {s: int(parse_tokens(v) * scale) for s, v in OLMO_MIX_TOKENS.items()}
    build_stand_in(tmp_path / "w", recipe, pool)
    p = plan(
        load_recipe(path, {"budget": int(recipe.budget * scale)}, check_inputs=False),
        tmp_path / "w",
    )
    assert not p.errors, p.errors
    total = sum(parse_tokens(v) for v in OLMO_MIX_TOKENS.values())
    for source, tokens in OLMO_MIX_TOKENS.items():
        sp = p.sources[source]
        assert sp.target_tokens == pool[source] and sp.repetition == 1.0
        assert sp.share == pytest.approx(parse_tokens(tokens) / total, abs=2e-4), source
    assert p.sources["dclm"].share == pytest.approx(0.951, abs=5e-4)


def test_mixer_plan_cli_on_a_stand_in(tmp_path):
    scale = 1e-6
    path = RECIPES / "dolmino_50b.yaml"
    recipe = load_recipe(path, check_inputs=False)
    build_stand_in(
        tmp_path / "w", recipe, {s: int(parse_tokens(v) * scale) for s, v in DOLMINO_POOL.items()}
    )
    args = [
        "plan",
        str(path),
        "--workdir",
        str(tmp_path / "w"),
        "--set",
        f"budget={int(50e9 * scale)}",
    ]
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    shares = {s: v["share_of_mix"] * 100 for s, v in json.loads(res.output)["sources"].items()}
    assert shares == pytest.approx(DOLMINO_SHARES["dolmino_50b"], abs=0.05)
    res = CliRunner().invoke(main, [*args, "-q"])
    assert res.exit_code == 0 and "47.20%" in res.output and "missing inputs" in res.output
