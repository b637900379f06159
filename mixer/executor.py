"""Where per-shard work runs: a local process pool, or Ray tasks on a cluster.

Stages hand an executor a function and a list of argument tuples; results come back in task
order, so outputs do not depend on which executor ran them. A per-process `initializer`
(loading models once per worker) runs once per worker process in both executors.
"""

from __future__ import annotations

import atexit
import multiprocessing as mp
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from mixer.errors import MixerError


class Executor:
    """Runs fn(*args) for each argument tuple and yields the results in the order given."""

    workers: int | None = None

    def map(
        self,
        fn: Callable,
        arglists: list[tuple],
        weights: list[int] | None = None,
        desc: str = "",
        progress: bool = False,
        unit: str = "task",
    ) -> Iterator:
        """`weights` (one per argument tuple) advance the progress bar in `unit`s ("B":
        bytes, shown as KB, MB, ...); without them each call counts one."""
        from tqdm import tqdm

        unit = unit if weights else "task"
        bar = tqdm(
            total=sum(weights) if weights else len(arglists),
            desc=desc,
            disable=not progress or not arglists,
            unit=unit,
            unit_scale=unit != "task",  # 2.61M/2.61M, 9.47MB/s; tasks as counted: 3/3
            unit_divisor=1024 if unit == "B" else 1000,
        )
        try:
            for i, result in enumerate(self._map(fn, arglists)):
                bar.update(weights[i] if weights else 1)
                yield result
        finally:
            bar.close()

    def _map(self, fn: Callable, arglists: list[tuple]) -> Iterator:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (a no-op where there is nothing to release)."""


class LocalExecutor(Executor):
    """A pool of spawned processes on this machine (the calling process itself when workers=1).

    The pool starts on first use and is kept for the executor's life, so the stages of one run
    share warm workers (and the models they cached); `close()` (or exit) stops it."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1
        self._pool: ProcessPoolExecutor | None = None
        self._desc = ""

    def map(self, fn, arglists, weights=None, desc="", progress=False, unit="task"):
        self._desc = desc
        return super().map(fn, arglists, weights, desc, progress, unit)

    def _map(self, fn, arglists):
        # With workers > 1 even a lone task runs in the pool: heavy single tasks (a dedup
        # partition, a model to train) never grow the driver.
        if self.workers == 1:
            for args in arglists:
                yield fn(*args)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"))
            atexit.register(self.close)
        futures = [self._pool.submit(fn, *args) for args in arglists]
        try:
            for f in futures:
                try:
                    yield f.result()
                except BrokenProcessPool:
                    raise MixerError(
                        f"{self._desc or 'a task'}: a worker process died (killed for memory or "
                        "by a signal); run the same command again to resume (finished tasks are "
                        "kept)"
                    ) from None
        except BaseException:
            for f in futures:
                f.cancel()
            self.close()  # a failed task may have left a broken pool
            raise

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __getstate__(self):
        return {"workers": self.workers, "_pool": None, "_desc": ""}

    def describe(self) -> str:
        return f"{self.workers} local worker(s)"


class RayExecutor(Executor):
    """Ray tasks over the nodes of a cluster (`address`) or a local Ray instance.

    Tasks are placed on nodes up front, heaviest first onto the node with the least work per
    CPU (by the tasks' weights: bytes, documents), with a soft node affinity: Ray still moves a
    task when its node is gone. Plain SPREAD is not enough: Ray reuses a leased worker for the
    next task of the same kind, so short tasks pile onto one node. Each task is named after its
    stage, as Ray's dashboard and state API show it."""

    def __init__(self, address: str | None = None, workers: int | None = None):
        self.address = address
        self.workers = workers

    def _init(self):
        return _ray_init(self.address, self.workers)

    def map(self, fn, arglists, weights=None, desc="", progress=False, unit="task"):
        self._name = desc or getattr(fn, "__name__", "task")
        self._weights = weights
        return super().map(fn, arglists, weights, desc, progress, unit)

    def _map(self, fn, arglists):
        ray = self._init()
        name = getattr(self, "_name", None) or fn.__name__
        weights = getattr(self, "_weights", None) or [1] * len(arglists)
        self._weights = None
        remote = ray.remote(fn)
        nodes = _task_nodes(ray)
        refs = []
        if len(nodes) > 1 and arglists:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            placed = place(weights, [cpus for _, cpus in nodes])
            for args, k in zip(arglists, placed, strict=True):
                strategy = NodeAffinitySchedulingStrategy(node_id=nodes[k][0], soft=True)
                refs.append(remote.options(scheduling_strategy=strategy, name=name).remote(*args))
        else:
            opts = remote.options(scheduling_strategy="SPREAD", name=name)
            refs = [opts.remote(*args) for args in arglists]
        for ref in refs:
            yield _ray_get(ray, ref, name)

    def describe(self) -> str:
        return f"Ray ({self.address or 'local instance'})"


def _ray_get(ray, ref, name: str):
    """A task's result. Its own MixerError comes back as raised (one line, not Ray's remote
    traceback); a task Ray lost beyond its retries (its worker or node died) is a one-line
    MixerError: a rerun resumes, since every finished task is recorded."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, MixerError):
            raise e.cause from None
        raise
    except ray.exceptions.RayError as e:
        why = (str(e).strip().splitlines() or [""])[0].split(". ")[0]  # Ray's first sentence
        raise MixerError(
            f"{name}: a Ray task was lost ({type(e).__name__}: {why}); "
            "run the same command again to resume (finished tasks are kept)"
        ) from None


def _task_nodes(ray) -> list[tuple[str, float]]:
    """(node id, CPUs) of the alive nodes that can run tasks, in a stable order."""
    out = []
    for n in ray.nodes():
        cpus = n.get("Resources", {}).get("CPU", 0)
        if n.get("Alive") and cpus > 0:
            out.append((n["NodeID"], float(cpus)))
    return sorted(out)


def place(weights: list[int], capacities: list[float]) -> list[int]:
    """For each task, the index of the node it goes to: heaviest task first, each to the node
    whose load per unit of capacity is then the smallest (ties: the lower index)."""
    load = [0.0] * len(capacities)
    out = [0] * len(weights)
    for i in sorted(range(len(weights)), key=lambda i: (-weights[i], i)):
        k = min(range(len(capacities)), key=lambda k: ((load[k] + weights[i]) / capacities[k], k))
        load[k] += weights[i]
        out[i] = k
    return out


def _ray_init(address: str | None, workers: int | None):
    try:
        import ray
    except ImportError:
        raise MixerError("--executor ray needs Ray: pip install 'mixer[ray]'") from None
    # Every result is fetched, in task order; after the first failure the rest are dropped on
    # purpose, and Ray would log each of them ("Unhandled error ...") under the one-line error.
    os.environ.setdefault("RAY_IGNORE_UNHANDLED_ERRORS", "1")
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local instance, started for this command
            ray.init(
                num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False
            )
    return ray


def make_executor(kind: str = "local", workers: int | None = None, address: str | None = None):
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(address, workers)
    raise MixerError(f"unknown executor {kind!r} (local or ray)")


# ------------------------------------------------------------------ single-stage commands
# `mixer run` hands its executor to every stage through RunContext. The thin wrappers a
# single-stage command calls (ingest(), run_dedup(), tag_workdir(), ...) take it from `use`.

_current: list = [None]  # the Executor object `use` set, if any


@contextmanager
def use(executor: Executor):
    """Make `executor` the one the stage wrappers (ingest(), run_dedup(), tag_workdir(), ...)
    run on inside this block: what `--executor` chose for a single-stage command."""
    before = _current[0]
    _current[0] = executor
    try:
        yield executor
    finally:
        _current[0] = before


def current_executor(workers: int | None = None) -> Executor:
    """The executor a stage wrapper runs on: the one `use` set, else a local pool of `workers`."""
    return _current[0] if _current[0] is not None else LocalExecutor(workers)
