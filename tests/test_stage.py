"""The one stage runner: stage- and task-level caching, resume, order, and both executors."""

from __future__ import annotations

from pathlib import Path

from mixer.executor import LocalExecutor
from mixer.stage import RunContext, Stage, Task, run_stage, tree_fingerprint


class SquareStage(Stage):
    """Writes n*n into out/<n>.txt for every input file holding n; sums them in finish."""

    name = "square"

    def input_fingerprint(self):
        return tree_fingerprint(self.workdir / "in")

    def outputs(self):
        return [self.workdir / "out"]

    def tasks(self):
        files = sorted((self.workdir / "in").glob("*.txt"))
        return [Task(key=p.stem, args=str(p), fingerprint=tree_fingerprint(p)) for p in files]

    def run_task(self, task):
        n = int(Path(task.args).read_text())
        out = self.workdir / "out" / f"{task.key}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(str(n * n))
        with open(self.workdir / "calls.log", "a") as f:
            f.write(task.key + "\n")
        return n * n

    def finish(self, results):
        return {"sum": sum(results), "order": results}


def _calls(wd: Path) -> list[str]:
    p = wd / "calls.log"
    return p.read_text().split() if p.exists() else []


def test_stage_runs_caches_and_reruns_only_changed_tasks(tmp_path: Path):
    (tmp_path / "in").mkdir()
    for i in range(5):
        (tmp_path / "in" / f"{i}.txt").write_text(str(i + 1))
    ctx = RunContext(tmp_path, LocalExecutor(2), progress=False, echo=lambda m: None)
    assert run_stage(SquareStage(tmp_path), ctx) == {"sum": 55, "order": [1, 4, 9, 16, 25]}
    assert sorted(_calls(tmp_path)) == ["0", "1", "2", "3", "4"]
    # Unchanged: the whole stage is skipped.
    assert run_stage(SquareStage(tmp_path), ctx)["sum"] == 55
    assert len(_calls(tmp_path)) == 5
    # One input changes: only its task runs again.
    (tmp_path / "in" / "3.txt").write_text("10")
    assert run_stage(SquareStage(tmp_path), ctx)["sum"] == 1 + 4 + 9 + 100 + 25
    assert _calls(tmp_path)[5:] == ["3"]
    # Forced: every task runs.
    forced = RunContext(tmp_path, LocalExecutor(1), False, lambda m: None, frozenset({"square"}))
    run_stage(SquareStage(tmp_path), forced)
    assert len(_calls(tmp_path)) == 11


def test_killed_stage_resumes_from_finished_tasks(tmp_path: Path):
    (tmp_path / "in").mkdir()
    for i in range(4):
        (tmp_path / "in" / f"{i}.txt").write_text(str(i))

    class Failing(SquareStage):
        def run_task(self, task):
            if task.key == "2":
                raise RuntimeError("killed")
            return super().run_task(task)

    ctx = RunContext(tmp_path, LocalExecutor(1), progress=False, echo=lambda m: None)
    try:
        run_stage(Failing(tmp_path), ctx)
    except RuntimeError:
        pass
    assert _calls(tmp_path) == ["0", "1"]
    assert run_stage(SquareStage(tmp_path), ctx)["order"] == [0, 1, 4, 9]
    assert _calls(tmp_path) == ["0", "1", "2", "3"]


def test_one_run_per_workdir_and_a_killed_holder_leaves_no_lock(tmp_path: Path):
    import os
    import signal
    import subprocess
    import sys

    from click.testing import CliRunner

    from mixer.cli import main

    wd = tmp_path / "wd"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom mixer.stage import workdir_lock\n"
            f"with workdir_lock({str(wd)!r}):\n    print('held', flush=True)\n    time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        (wd / "documents").mkdir()
        r = CliRunner().invoke(main, ["tag", str(wd), "--taggers", "gopher", "-q"])
        assert r.exit_code == 2, r.output
        line = r.output.strip()
        assert "\n" not in line and str(wd) in line and f"pid {holder.pid}" in line
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # kill -9 releases the lock with the process: the next run gets it at once
    from mixer.stage import workdir_lock

    with workdir_lock(wd), workdir_lock(wd):  # and it nests within one process
        assert (wd / "state" / ".lock").read_text() == str(os.getpid())


def test_tag_stage_removes_only_its_own_stale_parts(tmp_path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mixer.schema import attributes_dir, documents_dir, part_name
    from mixer.tag import tag_workdir

    docs = documents_dir(tmp_path, "web")
    docs.mkdir(parents=True)
    for i in range(3):
        ids = [f"{i}-{j}" for j in range(5)]
        pq.write_table(
            pa.table(
                {
                    "id": ids,
                    "text": [f"Document {j} of part {i} has a few words in it." for j in range(5)],
                    "source": ["web"] * 5,
                    "metadata": ["{}"] * 5,
                }
            ),
            docs / part_name(i),
        )
    s = tag_workdir(tmp_path, ["c4"], workers=1, progress=False)
    assert s["parts_tagged"] == 3
    attrs = attributes_dir(tmp_path, "c4", "web")
    (attrs / "part-00077.parquet").write_bytes(b"someone else's")
    (docs / part_name(2)).unlink()  # a documents part goes away
    s = tag_workdir(tmp_path, ["c4"], workers=1, progress=False)
    assert s["parts_tagged"] == 0 and s["parts_skipped"] == 2
    assert sorted(p.name for p in attrs.iterdir()) == [
        "part-00000.parquet",
        "part-00001.parquet",
        "part-00077.parquet",
    ]
    (attrs / part_name(1)).unlink()  # a lost output reruns its task only
    assert tag_workdir(tmp_path, ["c4"], workers=1, progress=False)["parts_tagged"] == 1


class ByteStage(SquareStage):
    """SquareStage whose tasks weigh their input's bytes."""

    name = "bytes"
    progress_unit = "B"

    def tasks(self):
        return [Task(t.key, t.args, t.fingerprint, weight=4096) for t in super().tasks()]


def test_progress_bars_count_in_the_stage_unit(tmp_path: Path, capsys):
    for wd in (tmp_path / "b", tmp_path / "s"):
        (wd / "in").mkdir(parents=True)
        for i in range(3):
            (wd / "in" / f"{i}.txt").write_text(str(i))

    def quiet(_message):
        pass

    run_stage(ByteStage(tmp_path / "b"), RunContext(tmp_path / "b", LocalExecutor(1), True, quiet))
    bar = capsys.readouterr().err
    assert "12.0k/12.0k" in bar and "B/s" in bar  # 3 tasks of 4096 bytes, in KiB
    run_stage(
        SquareStage(tmp_path / "s"), RunContext(tmp_path / "s", LocalExecutor(1), True, quiet)
    )
    bar = capsys.readouterr().err
    assert "3/3" in bar and "task" in bar and "B/s" not in bar
