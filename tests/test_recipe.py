"""Recipe loading: variables, defaults, and one clear error (file:line: key) per mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mixer.errors import MixerError
from mixer.recipe import load_recipe, missing_inputs, parse_tokens

REPO = Path(__file__).resolve().parents[1]

BASE = """\
name: demo
seed: ${SEED:-7}
variables:
  data_root: ${DEMO_DATA_ROOT:-@DATA@}
budget: 1.5M
sources:
  web:
    inputs: ["${data_root}/web"]
    taggers: [quality, tokens]
    filters:
      - quality__score >= 0.5
      - dedup__keep
  math:
    inputs: ["${data_root}/math/*.jsonl"]
    max_repetition: 4
dedup: {sources: [web]}
groups:
  web:
    share: 0.5
    sources: {web: {weight: 1}}
  domain:
    share: 0.5
    sources:
      math: {percent: 200}
taggers:
  quality: {model: q.bin}
"""


def write(tmp_path: Path, text: str, data: bool = True) -> Path:
    if data:
        (tmp_path / "data" / "web").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "web" / "a.jsonl").write_text('{"id": "1", "text": "x"}\n')
        (tmp_path / "data" / "math").mkdir(parents=True, exist_ok=True)
        (tmp_path / "data" / "math" / "m.jsonl").write_text('{"id": "2", "text": "y"}\n')
    path = tmp_path / "r.yaml"
    path.write_text(text.replace("@DATA@", str(tmp_path / "data")))
    return path


def line_of(text: str, needle: str) -> int:
    for i, line in enumerate(text.splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(needle)


def test_parse_tokens():
    assert parse_tokens("50B") == 50_000_000_000
    assert parse_tokens("3.9T") == 3_900_000_000_000
    assert parse_tokens("1.5M") == 1_500_000
    assert parse_tokens("20K") == 20_000
    assert parse_tokens("20k") == 20_000
    assert parse_tokens(1234) == 1234
    assert parse_tokens("1_000") == 1000
    assert parse_tokens("0.001B") == 1_000_000
    for bad in ("5X", "-3", "", "B", True):
        with pytest.raises(ValueError):
            parse_tokens(bad)


def test_load_recipe_fields_and_variables(tmp_path, monkeypatch):
    monkeypatch.delenv("SEED", raising=False)
    r = load_recipe(write(tmp_path, BASE))
    assert r.name == "demo" and r.seed == 7 and r.budget == 1_500_000
    assert r.workdir == Path("work/demo")
    assert r.sources["web"].inputs == [f"{tmp_path}/data/web"]
    assert r.sources["web"].filters == ["quality__score >= 0.5", "dedup__keep"]
    assert r.sources["math"].taggers == ["tokens"]  # added: token targets need it
    assert r.sources["math"].max_repetition == 4.0
    assert r.groups["domain"].sources["math"].kind == "percent"
    assert r.groups["domain"].sources["math"].value == 200
    assert r.taggers == {"quality": {"model": "q.bin"}}
    assert r.tokenizer["dtype"] == "auto" and r.tokenizer["path"] is None
    assert r.dedup == {"sources": ["web"]} and r.decon is None and r.train is None
    assert r.raw["variables"]["data_root"] == f"{tmp_path}/data"
    # environment variables and overrides
    monkeypatch.setenv("SEED", "11")
    monkeypatch.setenv("DEMO_DATA_ROOT", str(tmp_path / "data"))
    r = load_recipe(
        tmp_path / "r.yaml", overrides={"budget": "2M", "taggers.quality.label": "__label__x"}
    )
    assert r.seed == 11 and r.budget == 2_000_000
    assert r.taggers["quality"] == {"model": "q.bin", "label": "__label__x"}
    r = load_recipe(tmp_path / "r.yaml", overrides={"data_root": "/elsewhere"}, check_inputs=False)
    assert r.sources["web"].inputs == ["/elsewhere/web"]


def test_missing_inputs_are_listed_or_raised(tmp_path):
    path = write(tmp_path, BASE, data=False)
    with pytest.raises(MixerError) as e:
        load_recipe(path)
    assert (
        f"r.yaml:{line_of(BASE, 'inputs: [')}: sources.web.inputs[0]: no such file or folder"
        in str(e.value)
    )
    r = load_recipe(path, check_inputs=False)
    missing = missing_inputs(r)
    assert len(missing) == 2
    assert "sources.math.inputs[0]: no files match" in missing[1]
    assert f":{line_of(BASE, 'math/*.jsonl')}:" in missing[1]


# (replace this, with this, expected message part, line of the key holding the error)
ERRORS = [
    (
        "    max_repetition: 4\n",
        "    max_repetition: 4\n    colour: red\n",
        "sources.math.colour: unknown key",
        "colour",
    ),
    (
        "budget: 1.5M",
        "budget: lots",
        "budget: expected an integer or a number with K/M/B/T",
        "budget:",
    ),
    ("seed: ${SEED:-7}", "seed: seven", "seed: expected an integer", "seed:"),
    (
        "share: 0.5\n    sources: {web",
        "share: 0.6\n    sources: {web",
        "groups: shares must sum to 1, got 1.1",
        "groups:",
    ),
    (
        "{web: {weight: 1}}",
        "{web: {weight: 1}, news: {weight: 1}}",
        "groups.web.sources.news: unknown source 'news'",
        "news",
    ),
    (
        "    max_repetition: 4\n",
        "    max_repetition: 4\n  extra:\n    inputs: [x]\n",
        "sources.extra: source is in no group",
        "  extra:",
    ),
    (
        "[quality, tokens]",
        "[quality, tokens, sentiment]",
        "sources.web.taggers[2]: unknown tagger 'sentiment'",
        "sentiment",
    ),
    (
        "quality__score >= 0.5",
        "quality__score >=",
        "sources.web.filters[0]: invalid SQL expression",
        "quality__score",
    ),
    (
        "quality__score >= 0.5",
        "quality__score >= 0.5); DROP TABLE x; --",
        "sources.web.filters[0]",
        "DROP",
    ),
    (
        "quality__score >= 0.5",
        "lang__score >= 0.5",
        "column 'lang__score': tagger 'lang' is not in sources.web.taggers",
        "lang__score",
    ),
    (
        "      - dedup__keep",
        "      - dedup__keep\n      - fancy__x > 1",
        "column 'fancy__x': no tagger or stage named 'fancy'",
        "fancy",
    ),
    (
        "math: {percent: 200}",
        "math: {percent: 500}",
        "500% of the source needs 5 copies; sources.math.max_repetition allows 4",
        "percent: 500",
    ),
    (
        "math: {percent: 200}",
        "math: {percent: 200, weight: 1}",
        "give exactly one of",
        "percent: 200",
    ),
    (
        "max_repetition: 4",
        "max_repetition: 0.5",
        "sources.math.max_repetition: must be >= 1.0",
        "max_repetition",
    ),
    (
        "quality: {model: q.bin}",
        "quality: {model: q.bin, depth: 3}",
        "taggers.quality.depth: unknown setting",
        "depth",
    ),
    (
        "dedup: {sources: [web]}",
        "dedup: {sources: [wbe]}",
        "dedup.sources[0]: unknown source 'wbe'",
        "wbe",
    ),
    ("name: demo", "name: demo\nname: again", "name: duplicate key", "again"),
    ("name: demo", "name: ../escape", "name: invalid mix name", "escape"),
    (
        "budget: 1.5M",
        "budget: ${NOT_SET_ANYWHERE}",
        "budget: undefined variable ${NOT_SET_ANYWHERE}",
        "budget:",
    ),
    (
        "budget: 1.5M\n",
        "budget: 1.5M\ntokenizer: {dtype: int8}\n",
        "tokenizer.dtype: expected one of auto, uint16, uint32",
        "int8",
    ),
]


def test_invalid_yaml_and_missing_file(tmp_path):
    with pytest.raises(MixerError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsources: [\n")
    with pytest.raises(MixerError, match=r"bad.yaml:\d+: invalid YAML"):
        load_recipe(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(MixerError, match="a recipe is a YAML mapping"):
        load_recipe(path)


def test_recipe_sections_train_tokenizer_decon(tmp_path):
    text = BASE + textwrap.dedent(
        """\
        decon: {eval_sets: ["@DATA@/eval/*.jsonl"], ngram: 13}
        tokenizer: {path: tok.json, eos_id: 0, dtype: uint16}
        tokenize: {}
        mix: {remove_spans: dedup__paragraph_spans, max_rows_per_part: 1000}
        """
    )
    path = write(tmp_path, text)
    r = load_recipe(path, check_inputs=False)
    assert r.tokenizer["eos_id"] == 0 and r.mix["max_rows_per_part"] == 1000
    assert any("decon.eval_sets[0]: no files match" in m for m in missing_inputs(r))


def test_shipped_recipes_are_valid():
    for path in sorted((REPO / "recipes").glob("*.yaml")):
        r = load_recipe(path, check_inputs=False)
        assert r.sources and r.groups, path


def test_docs_example_recipe_is_valid(tmp_path):
    import re

    text = (REPO / "docs" / "recipes.md").read_text()
    block = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    path = tmp_path / "example.yaml"
    path.write_text(block)
    r = load_recipe(path, check_inputs=False)
    assert set(r.sources) == {"web", "math"} and r.budget == 1_500_000


# ---------------------------------------------------------------- types and ranges at load time

TYPED = [
    (
        "taggers:\n  quality: {model: q.bin}\n",
        "taggers:\n  quality: {model: q.bin}\n  gopher: {min_words: abc}\n",
        "taggers.gopher.min_words: expected a number",
        "min_words",
    ),
    (
        "taggers:\n  quality: {model: q.bin}\n",
        "taggers:\n  quality: {model: q.bin}\n  gopher: {min_words: -3}\n",
        "taggers.gopher.min_words: must be >= 0",
        "min_words",
    ),
    (
        "dedup: {sources: [web]}",
        "dedup:\n  sources: [web]\n  threshold: abc",
        "dedup.threshold: expected a number",
        "threshold",
    ),
    (
        "dedup: {sources: [web]}",
        "dedup:\n  sources: [web]\n  threshold: 1.5",
        "dedup.threshold: expected a number in (0, 1], got 1.5",
        "threshold",
    ),
    (
        "dedup: {sources: [web]}",
        "dedup:\n  sources: [web]\n  exact: maybe",
        "dedup.exact: expected true or false",
        "exact",
    ),
    (
        "dedup: {sources: [web]}",
        "dedup:\n  sources: [web]\n  ngram: 0",
        "dedup.ngram: must be >= 1",
        "ngram",
    ),
    (
        "dedup: {sources: [web]}",
        "dedup:\n  sources: [web]\n  memory_limit: lots",
        "dedup.memory_limit: expected a size like 2GB or 512MB",
        "memory_limit",
    ),
    (
        "dedup: {sources: [web]}",
        "dedup:\n  sources: [web]\n  task_bytes: -3",
        "dedup.task_bytes: must be >= 1",
        "task_bytes",
    ),
    (
        "dedup: {sources: [web]}",
        "dedup: {sources: [web]}\ntokenize:\n  max_tokens_per_part: abc",
        "tokenize.max_tokens_per_part: expected an integer",
        "max_tokens_per_part",
    ),
    (
        "dedup: {sources: [web]}",
        "dedup: {sources: [web]}\ntokenize:\n  max_tokens_per_part: 0",
        "tokenize.max_tokens_per_part: must be >= 1",
        "max_tokens_per_part",
    ),
    (
        "seed: ${SEED:-7}",
        "seed: 18446744073709551616",
        "seed: a seed is an integer in [0, 2**63 - 1]",
        "seed:",
    ),
    ("seed: ${SEED:-7}", "seed: -1", "seed: a seed is an integer in [0, 2**63 - 1]", "seed:"),
    (
        "dedup: {sources: [web]}",
        "dedup: {sources: [web]}\ntokenizer:\n  train:\n    seed: 18446744073709551616",
        "tokenizer.train.seed: a seed is",
        "  seed:",
    ),
    (
        "dedup: {sources: [web]}",
        "dedup: {sources: [web]}\ndecon:\n  index: idx\n  min_fraction: 2",
        "decon.min_fraction: expected a number in [0, 1]",
        "min_fraction",
    ),
    (
        "dedup: {sources: [web]}",
        "dedup: {sources: [web]}\ntrain:\n  steps: 0",
        "train.steps: must be >= 1",
        "steps",
    ),
]


@pytest.mark.parametrize(
    "old,new,message,line_key", ERRORS + TYPED, ids=[e[2][:40] for e in ERRORS + TYPED]
)
def test_recipe_errors_name_file_line_and_key(tmp_path, old, new, message, line_key):
    assert old in BASE
    text = BASE.replace(old, new, 1)
    path = write(tmp_path, text)
    with pytest.raises(MixerError) as e:
        load_recipe(path)
    msg = str(e.value)
    assert message in msg, msg
    assert "\n" not in msg
    assert msg.startswith(f"{path}:{line_of(text, line_key)}:"), msg


def test_uint16_with_a_larger_vocabulary_fails_at_load(tmp_path):
    import json

    tok = tmp_path / "tok.json"
    tok.write_text(json.dumps({"model": {"vocab": {f"t{i}": i for i in range(70_000)}}}))
    text = BASE + f"tokenizer: {{path: {tok}, dtype: uint16}}\n"
    path = write(tmp_path, text)
    with pytest.raises(
        MixerError,
        match=r"r.yaml:\d+: tokenizer.dtype: uint16 holds ids below 65,536 but .* has 70,000 ids",
    ):
        load_recipe(path)
    small = tmp_path / "small.json"
    small.write_text(json.dumps({"model": {"vocab": {"a": 0}}, "added_tokens": [{"id": 5}]}))
    load_recipe(write(tmp_path, BASE + f"tokenizer: {{path: {small}, dtype: uint16}}\n"))


def test_yaml_alias_bomb_fails_fast_with_key_and_line(tmp_path):
    import resource
    import time

    lol = "\n".join(
        f"{c}: &{c} [" + ",".join([f"*{p}"] * 9) + "]"
        for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    text = (
        BASE + 'bomb_a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + lol + "\n"
    )
    text = text.replace(
        "taggers:\n  quality: {model: q.bin}\n", "taggers:\n  quality: {model: q.bin}\n", 1
    )
    path = write(tmp_path, text)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    with pytest.raises(MixerError) as e:
        load_recipe(path)
    assert time.perf_counter() - t0 < 0.5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB
    msg = str(e.value)
    assert "alias bomb" in msg and msg.startswith(f"{path}:"), msg
    line = int(msg.split(":")[1])
    assert text.splitlines()[line - 1].startswith(("f:", "g:", "h:", "i:")), msg


def test_yaml_nesting_depth_is_capped(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("name: x\nbudget: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(MixerError, match=r"deep.yaml:2: budget.*nested deeper than 64"):
        load_recipe(path)
