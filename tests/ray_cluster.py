"""A Ray cluster of separate nodes on loopback, for tests (not a test module itself).

Each node is `ray start --block` in its own session (start_new_session=True), so every process
of one node (raylet, agents, workers) shares that node's session id: `kill_node` SIGKILLs
exactly those processes, as a machine that dies would lose them, and nothing of another node
or of another Ray instance on this machine. Ports are free ones picked here (the GCS, the
dashboard, the client server), so tests of several sessions on one machine do not collide.

DESIGN.md pitfalls: Ray 2.60 keeps an auth token in ~/.ray once one is generated, and a
second `ray start --address` on loopback then fails; every node and the driver run with
RAY_AUTH_MODE=disabled (`cluster.env`).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).parent / "ray"
# A dead node is noticed within a few seconds (defaults: about 30 s), so that a test that kills
# one does not wait on the health check.
FAST_FAILURE_DETECTION = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    address: str
    dashboard: str  # the state API's address
    env: dict
    temp: Path
    nodes: list[subprocess.Popen] = field(default_factory=list)

    def start_node(self, *args: str) -> subprocess.Popen:
        node = subprocess.Popen(
            [str(RAY), "start", "--block", "--disable-usage-stats", *args],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.nodes.append(node)
        return node

    def add_worker_node(self, resource: str, timeout: float = 120) -> subprocess.Popen:
        """A node with 1 CPU and the custom resource `resource` (a name not used before);
        returns once Ray's state API shows it alive. (Nodes started at the same moment on one
        machine may collide: add them one at a time.)"""
        node = self.start_node(
            f"--address={self.address}", "--num-cpus=1", f'--resources={{"{resource}": 1}}'
        )
        deadline = time.time() + timeout
        while not any(resource in (n.resources_total or {}) for n in self.alive_nodes()):
            if time.time() > deadline or node.poll() is not None:
                raise RuntimeError(f"the node with resource {resource} did not join")
            time.sleep(0.5)
        return node

    def alive_nodes(self) -> list:
        """Alive nodes, by Ray's state API (none while the head's dashboard is not up)."""
        from ray.util.state import list_nodes

        try:
            return list_nodes(
                address=self.dashboard,
                filters=[("state", "=", "ALIVE")],
                raise_on_missing_output=False,  # a dead node counts as "missing" there
            )
        except Exception:  # noqa: BLE001 (not serving yet)
            return []


def processes(node: subprocess.Popen) -> dict[int, str]:
    """{pid: command line} of every process in the node's session (Ray names a worker after
    the task it runs: `ray::dedup.signatures`; `ray::IDLE` between tasks)."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            sid = int(stat.rsplit(")", 1)[1].split()[3])  # state ppid pgrp session
            if sid == node.pid:
                out[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError, IndexError):
            continue
    return out


def kill_node(node: subprocess.Popen) -> list[str]:
    """SIGKILL every process of the node (no `ray stop`: the node dies as a machine would);
    returns their command lines."""
    procs = processes(node)
    for pid in procs:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    node.wait(timeout=30)
    return list(procs.values())


def wait_for_task(node: subprocess.Popen, prefix: str, timeout: float, stop=None) -> str | None:
    """Poll the node's processes until a worker runs a task whose name starts with `prefix`;
    returns its title (None on timeout, or when `stop()` becomes true first)."""
    deadline = time.time() + timeout
    while time.time() < deadline and not (stop and stop()):
        for cmd in processes(node).values():
            if cmd.startswith(prefix):
                return cmd.strip()
        time.sleep(0.01)
    return None


@contextmanager
def ray_cluster(env_extra: dict | None = None, timeout: float = 90, attempts: int = 3):
    """A head node (1 CPU, its own temp dir and ports); `add_worker_node` adds more. Every node
    is stopped (its session SIGTERMed, then SIGKILLed) and the temp dir removed on exit. A head
    that dies while starting (another Ray instance on this machine, e.g. a test of another
    pytest worker, took a port it needed) is started again on fresh ports, up to `attempts`."""
    cluster = None
    try:
        for _ in range(attempts):
            cluster = _start_head(env_extra, timeout)
            if cluster is not None:
                break
        else:
            raise RuntimeError(f"the Ray head node did not start ({attempts} tries)")
        yield cluster
    finally:
        if cluster is not None:
            _stop_cluster(cluster)


def _start_head(env_extra: dict | None, timeout: float) -> Cluster | None:
    """A running head node, or None (and nothing left behind) if it died or never came up."""
    port, dash, client = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "disabled",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **(env_extra or {}),
    }
    temp = Path(f"/tmp/mx-ray-{port}")  # short: Ray's socket paths have a length limit
    cluster = Cluster(f"127.0.0.1:{port}", f"http://127.0.0.1:{dash}", env, temp)
    try:
        head = cluster.start_node(
            "--head", f"--port={port}", f"--dashboard-port={dash}", "--num-cpus=1",
            "--include-dashboard=true", f"--ray-client-server-port={client}",
            f"--temp-dir={temp}",
        )  # fmt: skip
        deadline = time.time() + timeout
        while not cluster.alive_nodes():
            if time.time() > deadline or head.poll() is not None:
                _stop_cluster(cluster)
                return None
            time.sleep(0.5)
    except BaseException:
        _stop_cluster(cluster)
        raise
    return cluster


def _stop_cluster(cluster: Cluster) -> None:
    for node in reversed(cluster.nodes):
        _stop(node)
    shutil.rmtree(cluster.temp, ignore_errors=True)


def _stop(node: subprocess.Popen) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes(node) or ([node.pid] if node.poll() is None else []):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        try:
            node.wait(timeout=15)
        except subprocess.TimeoutExpired:
            continue
        if not processes(node):
            return
        time.sleep(0.5)
