"""Where per-shard work runs: a local process pool, or Ray tasks on a cluster.

Stages hand an executor a function and a list of argument tuples; results come back in task
order, so outputs do not depend on which executor ran them. A per-process `initializer`
(loading models once per worker) runs once per worker process in both executors.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor

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
    ) -> Iterator:
        from tqdm import tqdm

        bar = tqdm(
            total=sum(weights) if weights else len(arglists),
            desc=desc,
            disable=not progress or not arglists,
            unit_scale=True,
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


class LocalExecutor(Executor):
    """A pool of spawned processes on this machine (or the calling process when workers=1)."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or os.cpu_count() or 1

    def _map(self, fn, arglists):
        n = max(1, min(self.workers, len(arglists)))
        if n == 1:
            for args in arglists:
                yield fn(*args)
            return
        with ProcessPoolExecutor(n, mp_context=mp.get_context("spawn")) as ex:
            futures = [ex.submit(fn, *args) for args in arglists]
            for f in futures:
                yield f.result()

    def describe(self) -> str:
        return f"{self.workers} local worker(s)"


class RayExecutor(Executor):
    """Ray tasks, spread over the nodes of a cluster (`address`) or a local Ray instance."""

    def __init__(self, address: str | None = None, workers: int | None = None):
        self.address = address
        self.workers = workers

    def _init(self):
        try:
            import ray
        except ImportError:
            raise MixerError("--executor ray needs Ray: pip install 'mixer[ray]'") from None
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, log_to_driver=False)
            else:
                ray.init(
                    num_cpus=self.workers or os.cpu_count(),
                    include_dashboard=False,
                    log_to_driver=False,
                )
        return ray

    def _map(self, fn, arglists):
        ray = self._init()
        remote = ray.remote(fn).options(scheduling_strategy="SPREAD")
        refs = [remote.remote(*args) for args in arglists]
        for ref in refs:
            yield ray.get(ref)

    def describe(self) -> str:
        return f"Ray ({self.address or 'local instance'})"


def make_executor(kind: str = "local", workers: int | None = None, address: str | None = None):
    if kind == "local":
        return LocalExecutor(workers)
    if kind == "ray":
        return RayExecutor(address, workers)
    raise MixerError(f"unknown executor {kind!r} (local or ray)")


_settings = {"kind": "local", "address": None}
_last_init: list = [None]  # the initializer call this process last ran


def configure(kind: str = "local", address: str | None = None) -> None:
    """Choose the executor for the stages that follow (called by the CLI)."""
    if kind not in ("local", "ray"):
        raise MixerError(f"unknown executor {kind!r} (local or ray)")
    _settings.update(kind=kind, address=address)


def current_kind() -> str:
    return _settings["kind"]


def _call(fn, args, initializer, initargs):
    # Runs inside a worker (Ray task or pool process): initialise once per process and settings.
    if initializer is not None:
        key = (initializer.__module__, initializer.__name__, repr(initargs))
        if _last_init[0] != key:
            initializer(*initargs)
            _last_init[0] = key
    return fn(*args)


def run_tasks(
    fn: Callable,
    tasks: list[tuple],
    workers: int | None = None,
    initializer: Callable | None = None,
    initargs: tuple = (),
) -> Iterator:
    """Yield fn(*task) for each task, in task order."""
    if not tasks:
        return
    if _settings["kind"] == "ray":
        yield from _run_ray(fn, tasks, workers, initializer, initargs)
        return
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    if workers == 1:
        for t in tasks:
            yield _call(fn, t, initializer, initargs)
        return
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as ex:
        futures = [ex.submit(_call, fn, t, initializer, initargs) for t in tasks]
        for f in futures:
            yield f.result()


def _run_ray(fn, tasks, workers, initializer, initargs):
    try:
        import ray
    except ImportError:
        raise MixerError("--executor ray needs Ray: pip install 'mixer[ray]'") from None
    if not ray.is_initialized():
        address = _settings["address"]
        if address:
            ray.init(address=address, log_to_driver=False)
        else:  # a local instance, started for this command
            ray.init(
                num_cpus=workers or os.cpu_count(), include_dashboard=False, log_to_driver=False
            )
    remote = ray.remote(_call)
    refs = [remote.remote(fn, t, initializer, initargs) for t in tasks]
    for ref in refs:
        yield ray.get(ref)
