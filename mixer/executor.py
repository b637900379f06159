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
