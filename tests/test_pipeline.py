"""`mixer run` end to end on a small cut of the sample corpus: outputs, caching, resume, report,
inspection commands."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mixer.cli import main
from mixer.devtools.sample_data import generate

ROOT = Path(__file__).resolve().parents[1]


def _recipe(tmp: Path, data_root: Path, workdir: Path, **changes) -> Path:
    """recipes/sample.yaml, pointed at a small corpus, with a budget that corpus can give."""
    recipe = yaml.safe_load((ROOT / "recipes" / "sample.yaml").read_text())
    recipe["variables"]["data_root"] = str(data_root)
    recipe["workdir"] = str(workdir)
    recipe["taggers"]["quality"]["model"] = str(workdir / "models" / "quality.bin")
    recipe["budget"] = "60K"
    recipe["tokenizer"]["train"]["vocab_size"] = 2048
    recipe.pop("train", None)
    for key, value in changes.items():
        recipe[key] = value
    path = tmp / f"recipe-{len(list(tmp.glob('recipe-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sample")
    generate(out, seed=3, scale=0.08)
    return out


def _outputs(wd: Path) -> dict[str, str]:
    """Digests of the final products: mix (and its manifest, but for the recipe's path, which
    differs between these runs), tokens, attributes, documents. Nothing in them names the
    workdir (tokens.json names the mix and the tokenizer relative to its own folder)."""
    out = {}
    for sub in ("documents", "attributes", "mixes", "tokens"):
        for p in sorted((wd / sub).rglob("*")):
            if not p.is_file():
                continue
            data = p.read_bytes()
            if p.name.endswith(".manifest.json"):
                data = json.dumps({**json.loads(data), "recipe": None}).encode()
            out[str(p.relative_to(wd))] = hashlib.sha256(data).hexdigest()
    return out


def _run(args: list[str]):
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def finished(corpus: Path, tmp_path_factory) -> tuple[Path, Path, str]:
    tmp = tmp_path_factory.mktemp("run")
    wd = tmp / "wd"
    recipe = _recipe(tmp, corpus, wd)
    output = _run(["run", str(recipe), "--quiet", "--workers", "2"])
    return recipe, wd, output


def test_run_writes_every_stage(finished):
    _, wd, _ = finished
    assert list((wd / "documents" / "web").glob("part-*.parquet"))
    assert list((wd / "attributes" / "gopher" / "web").glob("part-*.parquet"))
    assert list((wd / "attributes" / "dedup" / "web").glob("part-*.parquet"))
    assert (wd / "mixes" / "sample.manifest.json").exists()
    assert [p.suffix for p in (wd / "mixes" / "sample").iterdir()] == [".parquet"] * len(
        list((wd / "mixes" / "sample").iterdir())
    )
    assert (wd / "tokens" / "sample" / "tokens.json").exists()
    assert list((wd / "tokens" / "sample").glob("part-*.npy"))
    html = (wd / "report" / "report.html").read_text()
    assert "<svg" in html
    # self-contained: nothing is fetched when the page is opened
    assert "<script src" not in html and "<link" not in html and "url(http" not in html
    assert (wd / "report" / "report.json").exists()
    assert (wd / "mixer.log").read_text().count("done in") >= 5


def test_rerun_does_no_work_and_says_so(finished):
    recipe, wd, _ = finished
    before = _outputs(wd)
    out = _run(["run", str(recipe)])
    lines = [
        line
        for line in out.splitlines()
        if line.startswith("[") and not line.startswith("[report]")
    ]
    assert lines and all("up to date" in line for line in lines), out
    assert _outputs(wd) == before


def test_changing_a_filter_reruns_only_mix_and_after(finished, tmp_path):
    recipe_path, wd, _ = finished
    recipe = yaml.safe_load(Path(recipe_path).read_text())
    recipe["sources"]["web"]["filters"][-1] = "quality__score >= 0.1"
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(recipe, sort_keys=False))
    out = _run(["run", str(changed)])
    ran = {line.split("]")[0][1:] for line in out.splitlines() if "] running" in line}
    assert {"mix.stats", "mix.select"} <= ran, out
    assert {name.split(".")[0] for name in ran} == {"mix", "tokenize", "report"}, out
    # back to the recipe's own mix: later tests compare other runs of it with this workdir
    manifest = (wd / "mixes" / "sample.manifest.json").read_bytes()
    out = _run(["run", str(recipe_path)])
    assert "[mix.stats] up to date" not in out, out
    assert (wd / "mixes" / "sample.manifest.json").read_bytes() != manifest


def test_sql_and_explain(finished):
    recipe, wd, _ = finished
    out = _run(
        ["sql", str(wd), "SELECT source, count(*) AS n FROM docs GROUP BY source ORDER BY source"]
    )
    assert out.splitlines()[0] == "source\tn" and "web" in out
    out = _run(
        ["sql", str(wd), "SELECT id FROM docs WHERE source = 'web' AND NOT gopher__keep LIMIT 1"]
    )
    doc_id = out.splitlines()[1]
    out = _run(["explain", str(wd), doc_id, "--recipe", str(recipe)])
    assert "gopher__keep: False" in out and "filter FAIL: gopher__keep" in out
    bad = CliRunner().invoke(main, ["sql", str(wd), "SELECT nope FROM docs"])
    assert bad.exit_code == 2 and "SQL error" in bad.output


def test_report_rebuilds(finished):
    recipe, wd, _ = finished
    (wd / "report" / "report.html").unlink()
    _run(["report", str(wd), "--recipe", str(recipe)])
    assert (wd / "report" / "report.html").exists()
    _run(["report", str(wd)])  # the workdir's only mix is found without the recipe
    assert "Funnel per source" in (wd / "report" / "report.html").read_text()


def test_bad_recipe_is_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbudget: 1M\nsourcez: {}\n")
    r = CliRunner().invoke(main, ["run", str(bad)])
    assert r.exit_code == 2 and "sourcez" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_kill_at_several_points_then_resume_is_identical(finished, corpus, tmp_path):
    _, clean_wd, _ = finished
    wd = tmp_path / "wd"
    recipe = _recipe(tmp_path, corpus, wd)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "mixer.cli", "run", str(recipe), "--quiet", "--workers", "2"]
    # kill -9 once each of these stages has started
    killed = 0
    for marker in ("ingest*", "tag", "dedup*", "mix.stats"):  # a stage of the step has finished
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        deadline = time.time() + 240
        while proc.poll() is None and time.time() < deadline:
            if any((wd / "state" / "stages").glob(f"{marker}/stage.json")):
                time.sleep(0.3)  # into the next stage
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
        proc.wait()
        killed += proc.returncode == -signal.SIGKILL
    assert killed >= 3, "the runs finished before they could be killed"
    subprocess.run(cmd, env=env, check=True)
    assert _outputs(wd) == _outputs(clean_wd)


def test_force_and_until_select_stages_exactly(finished):
    recipe, wd, _ = finished

    def ran(out: str) -> set[str]:
        return {line.split("]")[0][1:] for line in out.splitlines() if "] running" in line}

    out = _run(["run", str(recipe), "--force", "train-fasttext", "--until", "tag-classifiers"])
    assert "train-fasttext.quality" in ran(out), out
    assert not ran(out) & {"tag", "tokenizer", "dedup", "mix.stats"}, out
    out = _run(["run", str(recipe), "--force", "tag", "--until", "tag"])
    assert ran(out) == {"tag"}, out  # not tag-classifiers: no prefix matching
    out = _run(["run", str(recipe), "--force", "ingest", "--until", "ingest"])
    assert ran(out) and {n.split(".")[0] for n in ran(out)} == {"ingest"}, out
    bad = CliRunner().invoke(main, ["run", str(recipe), "--force", "ta"])
    assert bad.exit_code == 2 and "no such stage" in bad.output


@pytest.mark.slow
def test_ray_two_nodes_same_bytes_as_local(finished, tmp_path, monkeypatch):
    """A two-node Ray cluster on loopback runs the sample recipe: every stage that runs tasks
    on Ray runs them on both nodes, and every output is byte-identical to the local run's."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("aiohttp")  # ray[default]: the dashboard serves the state API
    from ray.util.state import list_tasks
    from ray_cluster import ray_cluster

    recipe, local_wd, _ = finished
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # DESIGN.md pitfalls: a stored token
    wd = tmp_path / "wd"
    with ray_cluster() as cluster:
        cluster.add_worker_node("node2")
        ray.init(address=cluster.address, log_to_driver=False)
        try:
            _run(
                [
                    "run", str(recipe), "--workdir", str(wd), "--quiet",
                    "--executor", "ray", "--ray-address", cluster.address,
                    "--set", f"taggers.quality.model={wd / 'models' / 'quality.bin'}",
                ]
            )  # fmt: skip
            time.sleep(2)  # task events reach the state API asynchronously
            # explicit address: other Ray instances may run on this machine
            tasks = list_tasks(
                address=cluster.dashboard, limit=10_000, raise_on_missing_output=False
            )
        finally:
            ray.shutdown()
    by_name: dict[str, list] = {}
    for t in tasks:
        by_name.setdefault(t.name, []).append(t.node_id)
    multi = {name for name, ids in by_name.items() if len(ids) >= 2}
    assert {"ingest", "tag", "mix.stats", "mix.select"} <= multi, by_name.keys()
    for name in multi:
        assert len(set(by_name[name])) == 2, f"{name}: tasks ran on one node only"
    for single in ("tokenizer", "decon-index", "train-fasttext.quality"):
        assert single in by_name, by_name.keys()

    def every_output(root: Path) -> dict[str, str]:
        skip = ("state/", "report/", "mixer.log", "runs/")
        return {
            str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*"))
            if p.is_file() and not str(p.relative_to(root)).startswith(skip)
        }

    ours, local = every_output(wd), every_output(local_wd)
    assert any(k.startswith("mixes/sample/") for k in local) and "tokenizer.json" in local
    assert ours == local
