"""`mixer decon-index`, `mixer train-tokenizer` and `mixer train-fasttext` run their stage of
`mixer run` through the one runner: `--executor ray` writes the same bytes as the local
executor, and a second invocation with nothing changed is skipped as up to date."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from doc_parts import write_part

from mixer.cli import main
from mixer.schema import documents_dir

WORDS = (
    "river stone cloud lamp orbit tiger maple frost canyon violin harbor pepper quartz meadow "
    "lantern glacier copper falcon willow ember saddle thunder pebble walnut"
).split()


def _text(source: str, i: int) -> str:
    k = len(WORDS)
    words = [WORDS[(i * 7 + j * (3 if source == "web" else 5)) % k] for j in range(30)]
    return f"{source} " + " ".join(words) + f" number {i}."


def _workdir(root: Path) -> Path:
    """A workdir with two sources of 80 documents each (documents/ only)."""
    wd = root / "wd"
    for source in ("web", "wiki"):
        write_part(wd, source, [_text(source, i) for i in range(80)])
    return wd


def _eval_set(root: Path) -> Path:
    path = root / "eval" / "qa.jsonl"
    path.parent.mkdir(parents=True)
    records = [{"question": _text("web", i), "answer": "yes"} for i in range(0, 80, 9)]
    records.append({"question": "too short"})
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _cli(args: list[str]) -> str:
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output + repr(r.exception)
    return r.output


# (command, the arguments after it given a root folder and the output path, the outputs)
def _decon(root: Path, out: Path) -> list[str]:
    return ["decon-index", str(root / "eval"), "--out", str(out), "--ngram", "8"]


def _tokenizer(root: Path, out: Path) -> list[str]:
    return ["train-tokenizer", str(root / "wd"), "--out", str(out), "--vocab-size", "300"]


def _fasttext(root: Path, out: Path) -> list[str]:
    wd = out.parent.parent  # each run trains in its own copy of the workdir
    return [
        "train-fasttext", str(wd), "--positive", "source = 'wiki'", "--negative",
        "source = 'web'", "--out", str(out), "--dim", "8", "--bucket", "5000", "--epoch", "3",
    ]  # fmt: skip


COMMANDS = {
    "decon-index": (_decon, "index.decon", "[decon-index]"),
    "train-tokenizer": (_tokenizer, "tokenizer.json", "[tokenizer]"),
    "train-fasttext": (_fasttext, "q.bin", "[train-fasttext.q]"),
}


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("single")
    _workdir(root)
    _eval_set(root)
    return root


def _out(root: Path, command: str, run: str) -> Path:
    """Where a run of `command` writes: its own copy of the workdir for train-fasttext."""
    name = COMMANDS[command][1]
    if command == "train-fasttext":
        wd = root / f"{run}-fasttext"
        if not wd.exists():
            shutil.copytree(root / "wd", wd)
        return wd / "models" / name
    return root / run / name


def _bytes(path: Path) -> dict[str, bytes]:
    """The output file, and beside a fastText model its metrics (the model's path read as M)."""
    out = {path.name: path.read_bytes()}
    metrics = path.with_name(path.stem + ".metrics.json")
    if metrics.exists():
        out[metrics.name] = metrics.read_bytes().replace(str(path).encode(), b"M")
    return out


@pytest.mark.parametrize("command", list(COMMANDS))
def test_ray_gives_the_local_bytes_and_a_rerun_is_skipped(command, root, local_ray):
    build, _, stage = COMMANDS[command]
    local = _out(root, command, "local")
    out = _cli([*build(root, local), "--executor", "local"])
    assert f"{stage} running 1 of 1 task(s) on" in out, out
    on_ray = _out(root, command, "ray")
    out = _cli([*build(root, on_ray), "--executor", "ray"])  # a local Ray instance
    assert "on Ray (local instance)" in out, out
    assert _bytes(on_ray) == _bytes(local)

    again = _cli([*build(root, on_ray), "--executor", "ray"])
    assert f"{stage} up to date, skipped" in again and "running" not in again, again
    # the summary line is printed from the recorded result as well
    assert again.splitlines()[-1] == out.splitlines()[-1]

    on_ray.unlink()  # a missing output reruns the stage
    out = _cli([*build(root, on_ray)])
    assert f"{stage} running 1 of 1 task(s)" in out and _bytes(on_ray) == _bytes(local)


@pytest.mark.parametrize("command", [*COMMANDS, "dedup", "tokenize"])
def test_help_shows_the_executor_options(command):
    out = _cli([command, "--help"])
    assert "--executor [local|ray]" in out and "--ray-address ADDR" in out


def test_train_tokenizer_reruns_when_its_inputs_change(root, tmp_path):
    shutil.copytree(root / "wd", tmp_path / "wd")
    out = tmp_path / "tok" / "tokenizer.json"
    args = ["train-tokenizer", str(tmp_path / "wd"), "--out", str(out), "--vocab-size", "300"]
    _cli(args)
    assert "up to date" in _cli(args)
    assert "running 1 of 1" in _cli([*args, "--vocab-size", "320"])  # settings changed
    part = documents_dir(tmp_path / "wd", "web") / "part-00000.parquet"
    pq.write_table(pq.read_table(part).slice(0, 40), part)  # documents changed
    assert "running 1 of 1" in _cli([*args, "--vocab-size", "320"])
    assert (out.parent / "state" / "stages" / "tokenizer" / "stage.json").exists()
