"""The Ray executor gives the same bytes as local processes (ingest and tag stages)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import orjson
import pytest

from mixer import executor
from mixer.ingest import ingest
from mixer.tag import tag_workdir


def _corpus(root: Path) -> Path:
    for s in range(3):
        d = root / "raw" / ("web" if s < 2 else "wiki")
        d.mkdir(parents=True, exist_ok=True)
        lines = [
            orjson.dumps(
                {
                    "id": f"{s}-{i}",
                    "text": f"The page {i} of shard {s} says hello.\nIt has a second line, with words and more words.",
                }
            )
            for i in range(300)
        ]
        (d / f"s{s}.jsonl").write_bytes(b"\n".join(lines) + b"\nnot json\n")
    return root / "raw"


def _digest(wd: Path) -> dict[str, str]:
    return {
        str(p.relative_to(wd)): hashlib.sha256(p.read_bytes()).hexdigest()
        for sub in ("documents", "quarantine", "attributes")
        for p in sorted((wd / sub).rglob("*"))
        if p.is_file()
    }


def test_ray_executor_matches_local(tmp_path: Path):
    ray = pytest.importorskip("ray")
    raw = _corpus(tmp_path)
    local = tmp_path / "local"
    ingest([str(raw)], local, workers=2, progress=False)
    tag_workdir(local, ["fineweb"], workers=2, progress=False)
    on_ray = tmp_path / "ray"
    ex = executor.RayExecutor(workers=2)  # a local Ray instance
    try:
        with executor.use(ex):  # what `mixer ingest --executor ray` does
            summary = ingest([str(raw)], on_ray, workers=2, progress=False)
        tag_workdir(on_ray, ["fineweb"], progress=False, executor=ex)
    finally:
        ray.shutdown()
    assert summary["quarantined"] == 3 and summary["ingested"] == 900
    assert _digest(on_ray) == _digest(local)
    assert any(k.startswith("attributes/fineweb/") for k in _digest(local))


def test_ray_task_errors_are_one_line():
    """A task's own MixerError comes back as raised; a task whose worker dies on every one of
    Ray's retries is a one-line MixerError that says a rerun resumes (exit 2, no traceback)."""
    ray = pytest.importorskip("ray")
    import os
    import signal

    from mixer.errors import MixerError

    def bad_input():
        raise MixerError("shard.jsonl:3: not a JSON object")

    def crash():
        os.kill(os.getpid(), signal.SIGKILL)

    ex = executor.RayExecutor(workers=1)
    try:
        with pytest.raises(MixerError) as e:
            list(ex.map(bad_input, [()], desc="ingest"))
        assert str(e.value) == "shard.jsonl:3: not a JSON object"
        with pytest.raises(MixerError) as e:
            list(ex.map(crash, [()], desc="dedup.signatures"))
        msg = str(e.value)
        assert msg.startswith("dedup.signatures: a Ray task was lost (WorkerCrashedError")
        assert "\n" not in msg and msg.endswith("to resume (finished tasks are kept)")
    finally:
        ray.shutdown()


def _die():
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def test_a_local_worker_that_dies_is_a_one_line_error():
    """A pool worker killed (the OOM killer, a signal) is the same one-line error as a lost Ray
    task, and the executor's next map starts a fresh pool."""
    from mixer.errors import MixerError

    ex = executor.LocalExecutor(workers=2)
    try:
        with pytest.raises(MixerError) as e:
            list(ex.map(_die, [()], desc="dedup.signatures"))
        msg = str(e.value)
        assert msg.startswith("dedup.signatures: a worker process died")
        assert "\n" not in msg and msg.endswith("(finished tasks are kept)")
        assert list(ex.map(abs, [(-3,), (4,)])) == [3, 4]
    finally:
        ex.close()


def test_place_balances_weight_per_cpu():
    assert executor.place([5, 1, 1, 1, 1, 1], [1, 1]) == [0, 1, 1, 1, 1, 1]
    assert executor.place([1] * 6, [1, 2]).count(1) == 4  # twice the CPUs, twice the tasks
    assert executor.place([], [1, 1]) == []


# ------------------------------------------------------------------ a node lost mid-dedup


def _dedup_corpus(wd: Path, parts: int = 8, docs: int = 600, seed: int = 5) -> None:
    """Documents of two sources with near-duplicates across parts: about 7 MB of Parquet, so
    that dedup makes 8 signature tasks of half a second or more each."""
    import random

    from doc_parts import write_part

    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choices(letters, k=rng.randint(2, 9))) for _ in range(4000)]
    earlier: list[str] = []
    for p in range(parts):
        texts = []
        for _ in range(docs):
            if earlier and rng.random() < 0.15:  # one word changed in an earlier document
                words = rng.choice(earlier).split()
                words[rng.randrange(len(words))] = rng.choice(vocab)
                texts.append(" ".join(words))
                continue
            texts.append(" ".join(rng.choices(vocab, k=rng.randint(150, 400))))
            if rng.random() < 0.3:
                earlier.append(texts[-1])
        source = ("web", "wiki")[p % 2]
        ids = [f"{source}-{p}-{i}" for i in range(len(texts))]
        write_part(wd, source, texts, index=p // 2, ids=ids)


def _dedup_outputs(wd: Path) -> dict[str, str]:
    """Every file under attributes/dedup, and the stats (but for their timings)."""
    out = {
        str(p.relative_to(wd)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((wd / "attributes" / "dedup").rglob("*"))
        if p.is_file()
    }
    stats = orjson.loads((wd / "state" / "dedup" / "stats.json").read_bytes())
    stats.pop("seconds", None)
    out["stats"] = hashlib.sha256(orjson.dumps(stats, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return out


@pytest.mark.slow
def test_kill_9_of_a_worker_node_mid_dedup_then_a_rerun_gives_identical_output(tmp_path):
    """Two Ray nodes on loopback run `mixer dedup`; the second is SIGKILLed (every one of its
    processes) while one of its workers runs a dedup task. With Ray's task retries (the
    default) the run completes, the lost tasks redone on the head; with retries off
    (RAY_TASK_MAX_RETRIES=0) it fails with one line and exit code 2, and the rerun resumes.
    Either way a rerun on the head alone then holds the bytes of an undisturbed local run."""
    import shutil
    import subprocess
    import sys
    import time

    from click.testing import CliRunner

    pytest.importorskip("ray")
    pytest.importorskip("aiohttp")  # ray[default]: the dashboard serves the state API
    from ray_cluster import FAST_FAILURE_DETECTION, kill_node, ray_cluster, wait_for_task

    from mixer.cli import main

    local = tmp_path / "local"
    _dedup_corpus(local)
    r = CliRunner().invoke(main, ["dedup", str(local), "--quiet", "--workers", "1"])
    assert r.exit_code == 0, r.output
    expected = _dedup_outputs(local)

    with ray_cluster(FAST_FAILURE_DETECTION) as cluster:
        for retries in ("0", None):
            wd = tmp_path / f"ray-retries-{retries or 'default'}"
            shutil.copytree(local / "documents", wd / "documents")
            node2 = cluster.add_worker_node(f"node2-{retries or 'default'}")
            cmd = [sys.executable, "-m", "mixer", "dedup", str(wd), "--quiet",
                   "--executor", "ray", "--ray-address", cluster.address]  # fmt: skip
            env = {**cluster.env, **({"RAY_TASK_MAX_RETRIES": retries} if retries else {})}
            log = tmp_path / f"first-{retries or 'default'}.log"
            with open(log, "wb") as f:
                first = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
            try:
                title = wait_for_task(
                    node2, "ray::dedup.", 120, lambda p=first: p.poll() is not None
                )
                assert title, "no dedup task ran on the second node"
                t0 = time.time()
                killed = kill_node(node2)
                assert any("raylet" in c for c in killed), killed
                rc = first.wait(timeout=120)  # not a hang
            finally:
                if first.poll() is None:
                    first.kill()
            output = log.read_text()
            # Ray's own processes may add log lines ("(raylet) ...") to the driver's stderr
            errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
            print(f"retries {retries or 'default'}: killed node 2 in {title}; exit {rc} "
                  f"{time.time() - t0:.1f}s later; {errors}")  # fmt: skip
            if retries == "0":  # the lost task is not retried: one line, no traceback
                assert rc == 2 and "Traceback" not in output, output
                assert len(errors) == 1, output
                assert errors[0].startswith("error: dedup.") and "a Ray task was lost" in errors[0]
            else:
                assert rc == 0, output
            second = subprocess.run(cmd, env=cluster.env, capture_output=True, text=True, timeout=120)  # fmt: skip
            assert second.returncode == 0, second.stdout + second.stderr
            assert not list(wd.rglob(".tmp-*")), "a temporary file of a killed task is left"
            assert _dedup_outputs(wd) == expected


def test_a_rerun_removes_what_a_task_killed_mid_write_left(tmp_path):
    """A task killed while writing leaves `.tmp-<part>...` beside its output (outputs are
    published by rename, so never a partial part): the next run of its stage removes it."""
    from click.testing import CliRunner

    from mixer.cli import main

    _dedup_corpus(tmp_path, parts=2, docs=40)
    left = [
        tmp_path / "attributes" / "dedup" / "web" / ".tmp-part-00000.parquet.123abc-0",
        tmp_path / "state" / "dedup" / "sig" / ".tmp-g00000.sig.npy.123abc-0",
    ]
    for p in left:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"PAR1 half a part")
    r = CliRunner().invoke(main, ["dedup", str(tmp_path), "--quiet", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert not any(p.exists() for p in left)
    assert len(list((tmp_path / "attributes" / "dedup").rglob("*.parquet"))) == 2
