"""One stage interface: every stage of mixer is a `Stage`, and one runner executes them all.

A stage is a name, a typed config, the inputs it reads and the outputs it writes, and three
methods: `tasks()` lists independent units of work (over parts, bands, buckets), `run_task(task)`
does one of them on any worker or node, and `finish(results)` reduces the small per-task
summaries on the driver. Work that needs several rounds (dedup: signatures, then band groups,
then components, then writes) is several stages run one after the other under one `group`.

`run_stage` is the only place that decides what to skip: a stage whose fingerprint (its name,
config and input fingerprints) matches the one recorded in state/stages/ and whose outputs
exist is skipped as a whole; otherwise every task whose own fingerprint is recorded as done is
skipped, so a killed run resumes where it stopped. Tasks run on an `Executor` (local process
pool or Ray); results come back in task order, so outputs never depend on the executor or on
the number of workers.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mixer.errors import MixerError
from mixer.executor import Executor, LocalExecutor
from mixer.io import config_hash, read_json, write_json_atomic
from mixer.schema import state_dir


@dataclass(frozen=True)
class Task:
    """One unit of work. `key` is unique within its stage and stable across runs (it names the
    completion record); `fingerprint` covers what the task reads (file names, sizes, mtimes or
    hashes), so a changed input reruns only the tasks that read it; `args` go to `run_task`;
    `weight` (in the stage's `progress_unit`: bytes, documents, tokens) drives progress bars."""

    key: str
    args: Any = None
    fingerprint: Any = None
    weight: int = 1
    outputs: tuple = ()  # files the task writes: a recorded task whose outputs are gone reruns


@dataclass
class RunContext:
    """What every stage sees while it runs: the workdir, the executor, progress and echo."""

    workdir: Path
    executor: Executor = field(default_factory=LocalExecutor)
    progress: bool = True
    echo: Callable[[str], None] = print
    force: frozenset = frozenset()  # stage names (or groups) to rerun whatever the state says
    # filled by run_stage for the caller: {stage name: {"tasks": n, "ran": n, "skipped": bool}}
    stats: dict = field(default_factory=dict)
    # a workdir on object storage: `workdir` is its local mirror, kept in step around every
    # stage and task (mixer/remote_workdir.py); None for a local or shared-filesystem workdir
    remote: Any = None

    def __post_init__(self):
        if self.remote is None:
            from mixer.remote_workdir import check_local_workdir

            check_local_workdir(self.workdir)


class Stage:
    """Base class of every stage. Subclasses set `name` (and `group` when several stages make
    one step of `mixer run`), keep their settings in `config` (a dataclass or a dict of plain
    values), and implement `tasks`, `run_task` and `finish`.

    A stage object is sent to the workers that run its tasks, so it must pickle: keep paths and
    plain settings on it, open models and files inside `run_task` (cache them per process with
    `functools.lru_cache` or a module-level dict when loading is costly).
    """

    name: str = ""
    group: str = ""
    progress_unit: str = "task"  # what its tasks' `weight` counts: "B" (bytes), "doc", "tok"

    def __init__(self, workdir: str | Path, config: Any = None):
        self.workdir = Path(workdir)
        self.config = config

    # -- what the stage is
    def config_dict(self) -> dict:
        c = self.config
        if c is None:
            return {}
        if dataclasses.is_dataclass(c):
            return dataclasses.asdict(c)
        return dict(c)

    def task_config(self) -> Any:
        """The part of the config every task's completion depends on (default: all of it).
        A stage whose tasks depend on a slice of the config (a tagger's settings for the parts
        it tags) returns less here and puts that slice into each `Task.fingerprint`."""
        return self.config_dict()

    def input_fingerprint(self) -> Any:
        """What the stage as a whole reads (files' names, sizes, mtimes). Tasks add their own."""
        return None

    def outputs(self) -> list[Path]:
        """Files or folders that must exist for a finished stage to count as done."""
        return []

    # -- the work
    def tasks(self) -> list[Task]:
        return []

    def run_task(self, task: Task) -> Any:
        raise NotImplementedError

    def finish(self, results: list[Any]) -> Any:
        """Reduce the tasks' results on the driver (small summaries only). The default returns
        them as they are."""
        return results

    # -- hooks
    def setup(self, ctx: RunContext) -> None:
        """Runs on the driver before tasks are listed (create folders, clean temporaries)."""

    def describe(self) -> str:
        return self.name

    def next_stage(self, result: Any) -> Stage | None:
        """A stage to run right after this one, chosen on the driver from this one's result
        (`finish`'s, or the recorded one when skipped): the rounds of an iterative algorithm
        whose number depends on the data (dedup's connected components). Default: none."""
        return None


# ------------------------------------------------------------------ completion records


def _state_root(workdir: Path, stage: Stage) -> Path:
    return state_dir(workdir) / "stages" / stage.name


def stage_fingerprint(stage: Stage) -> str:
    return config_hash(
        {"stage": stage.name, "config": stage.config_dict(), "inputs": stage.input_fingerprint()}
    )


def task_fingerprint(stage: Stage, task: Task) -> str:
    return config_hash({"config": stage.task_config(), "task": task.fingerprint, "key": task.key})


def _safe_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in key) + "-" + config_hash(key)


def _run_one(stage: Stage, task: Task, record: str | None, fp: str, remote=None) -> Any:
    # Runs on a worker: do the task and record it as done where every node can read it.
    if remote is not None:  # an object-storage workdir: bring this node's mirror up to date
        remote.before_task()
    result = stage.run_task(task)
    if record is not None:
        write_json_atomic(record, {"fingerprint": fp, "result": result})
    if remote is not None:  # the outputs, then the record: the record commits the task
        remote.push()
    return result


def run_stage(stage: Stage, ctx: RunContext) -> Any:
    """Run one stage with caching at stage and task level, then the stages its `next_stage`
    chooses, one after the other. Returns the last one's `finish(results)`."""
    result = _run_stage(stage, ctx)
    while (stage := stage.next_stage(result)) is not None:
        result = _run_stage(stage, ctx)
    return result


def _run_stage(stage: Stage, ctx: RunContext) -> Any:
    remote = ctx.remote  # an object-storage workdir (None: a local one)
    if remote is not None:
        remote.refresh()
    root = _state_root(ctx.workdir, stage)
    done_path = root / "stage.json"
    forced = stage.name in ctx.force or (stage.group and stage.group in ctx.force)
    stage.setup(ctx)
    fp = stage_fingerprint(stage)
    done = read_json(done_path)
    if (
        not forced
        and done
        and done.get("fingerprint") == fp
        and all(Path(o).exists() for o in stage.outputs())
    ):
        ctx.echo(f"[{stage.name}] up to date, skipped")
        ctx.stats[stage.name] = {"tasks": 0, "ran": 0, "skipped": True}
        return done.get("result")
    start = time.perf_counter()
    tasks = stage.tasks()
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise RuntimeError(f"stage {stage.name}: task keys are not unique")
    todo, results = [], {}
    for t in tasks:
        tfp = task_fingerprint(stage, t)
        rec = root / "tasks" / (_safe_key(t.key) + ".json")
        prev = None if forced else read_json(rec)
        if prev and prev.get("fingerprint") == tfp and all(Path(o).exists() for o in t.outputs):
            results[t.key] = prev["result"]
        else:
            todo.append((t, str(rec), tfp))
    ctx.stats[stage.name] = {"tasks": len(tasks), "ran": len(todo), "skipped": False}
    if tasks:
        ctx.echo(
            f"[{stage.name}] running {len(todo)} of {len(tasks)} task(s)"
            + (f" on {ctx.executor.describe()}" if todo else "")
        )
    else:
        ctx.echo(f"[{stage.name}] running")
    weights = [t.weight for t, _, _ in todo]
    extra = ()
    if remote is not None and todo:  # local workers share the driver's mirror
        extra = (remote.for_tasks(shared=isinstance(ctx.executor, LocalExecutor)),)
    for (t, _, _), result in zip(
        todo,
        ctx.executor.map(
            _run_one,
            [(stage, t, rec, tfp, *extra) for t, rec, tfp in todo],
            weights=weights,
            desc=stage.name,
            progress=ctx.progress,
            unit=stage.progress_unit,
        ),
        strict=True,
    ):
        results[t.key] = result
    if remote is not None:
        remote.refresh()  # what tasks on other nodes wrote
    result = stage.finish([results[k] for k in keys])
    if remote is not None:
        remote.push()  # what finish wrote (mtimes settle here, before the fingerprint)
    seconds = time.perf_counter() - start
    # Fingerprint again: a stage may write under inputs it reads (e.g. attributes it also reads).
    write_json_atomic(
        done_path,
        {"fingerprint": stage_fingerprint(stage), "result": result, "seconds": round(seconds, 3)},
    )
    if remote is not None:
        remote.push()  # the stage record, last
    ctx.echo(f"[{stage.name}] done in {seconds:.1f}s")
    return result


def run_stages(stages: Iterable[Stage], ctx: RunContext) -> list[Any]:
    """Run stages in order (each may depend on the outputs of the ones before)."""
    return [run_stage(s, ctx) for s in stages]


def run_command_stages(
    stages: Sequence[Stage],
    workdir: str | Path,
    executor: Executor | None = None,
    workers: int | None = 1,
    progress: bool = False,
    echo: Callable[[str], None] | None = None,
) -> tuple[list[Any], bool]:
    """What a single-stage command does (`mixer decon-index`, `mixer mix`, ...): run `stages` in
    order under the workdir lock on `executor` (default: a local pool of `workers`, closed at
    the end). Returns (their results, whether every one was up to date and skipped)."""
    ctx = RunContext(
        Path(workdir), executor or LocalExecutor(workers), progress, echo or (lambda _m: None)
    )
    try:
        with workdir_lock(workdir):
            results = run_stages(stages, ctx)
    finally:
        if executor is None:
            ctx.executor.close()
    return results, all(ctx.stats[s.name]["skipped"] for s in stages)


# ------------------------------------------------------------------ one run per workdir

_held: dict[str, list] = {}  # workdir -> [open lock file, depth]: reentrant within a process
_held_lock = threading.Lock()


@contextmanager
def workdir_lock(workdir: str | Path):
    """Hold WORKDIR/state/.lock (an fcntl lock) while stages write into the workdir.

    A second mixer process on the same workdir gets a one-line MixerError (exit 2) naming the
    workdir and the holder's pid. The kernel drops the lock when its process dies, so a run
    killed with -9 leaves nothing stale behind. Nested use in one process is allowed."""
    import fcntl

    from mixer.remote_workdir import check_local_workdir

    check_local_workdir(workdir)
    path = state_dir(Path(workdir)) / ".lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MixerError(f"workdir {workdir}: not writable ({e.strerror})") from None
    key = str(path.resolve())
    with _held_lock:
        if key in _held:
            _held[key][1] += 1
        else:
            f = open(path, "a+")  # noqa: SIM115 (held until the run ends)
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                holder = f.read().strip() or "unknown"
                f.close()
                raise MixerError(
                    f"workdir {workdir} is in use by another mixer process (pid {holder}); "
                    "wait for it to finish or stop it"
                ) from None
            f.seek(0)
            f.truncate()
            f.write(str(os.getpid()))
            f.flush()
            _held[key] = [f, 1]
    try:
        yield
    finally:
        with _held_lock:
            _held[key][1] -= 1
            if _held[key][1] == 0:
                _held.pop(key)[0].close()  # closing the file releases the lock


# ------------------------------------------------------------------ fingerprints of files


def tree_fingerprint(*paths: str | Path) -> list:
    """Names, sizes and mtimes of every finished file under `paths` (no content reads)."""
    out = []
    for root in paths:
        root = Path(root)
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(
                p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".tmp-")
            )
        else:
            files = []
        for p in files:
            st = p.stat()
            out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def files_fingerprint(files: Sequence[str | Path]) -> list:
    """Like tree_fingerprint for an explicit list of files (a task's inputs)."""
    return tree_fingerprint(*files)
