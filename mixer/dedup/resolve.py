"""Dedup resolution as stages over the one stage interface: no task holds every edge.

After dedup.exact (member -> representative of each exact group, per exact-key partition) and
dedup.verify (verified near-duplicate edges, per pair partition), these stages decide which
documents are removed and write the attributes:

    dedup.graph       a task per exact partition and per pair partition: its rows become
                      edges of one graph (an exact member with its group's smallest document,
                      a verified or --exact-field pair), routed by a hash of the node into R
                      partitions; the original rows (member -> representative, pairs) are
                      kept beside them, routed the same way.
    dedup.components  connected components in rounds: each round is a task per node partition,
                      alternating large-star and small-star (Kiveris et al., "Connected
                      components in MapReduce and beyond", 2014): every component ends as a
                      star around its smallest document. A round's tasks return how many edges
                      they changed; the driver stops after two rounds in a row change nothing.
                      With R = 1 (every edge fits one task's memory) the one task runs
                      union-find (scipy) and the first round is the last.
                      Rounds after the first are stages dedup.components.r002, ...
    dedup.labels      a task per node partition: each original row gets its component id (the
                      smallest document) and is routed by a hash of it, so that the next
                      stage's tasks hold whole components.
    dedup.resolve     a task per component partition: exact members map to representatives,
                      and the greedy keep rule runs on the representatives' verified edges:
                      documents in keep-rule order, each kept unless a verified neighbour
                      earlier in that order was kept (then removed for the earliest such one).
                      The greedy choice in one component never depends on another, so the
                      union over tasks is what one process would choose for the whole graph.
                      Removed documents go out with the document kept for them, routed by the
                      write group of the kept one.
    dedup.clusters    a task per write group: cluster sizes and the ids of its kept documents;
                      each removed document's record (kept document, its id, cluster size) is
                      routed to the write group of the removed one. The largest clusters are a
                      top-10 merge of the tasks' own top 10 on the driver.
    dedup.write       a task per write group: attributes/dedup/<source>/part-NNNNN.parquet.

Every hop is a routed file per task (rows sorted by destination and the destination bounds):
a task reads its slice of each source's file, so memory per task follows its share of the
rows, and the driver reads only the tasks' small summaries. Outputs are the same bytes
whatever R, the number of workers or the executor.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mixer.dedup import lsh
from mixer.dedup.normalize import U64, fmix64
from mixer.dedup.paragraphs import spans_column
from mixer.dedup.stages import (
    SAMPLE_IDS,
    TOP_CLUSTERS,
    _concat,
    _DedupStage,
    _load,
    _partition,
    _rows_sorted_unique,
    _save,
    hex16,
    priority_order,
)
from mixer.errors import MixerError
from mixer.io import (
    clean_temporaries,
    config_hash,
    read_json,
    write_json_atomic,
    write_parquet_atomic,
)
from mixer.schema import attributes_dir, part_name, state_dir
from mixer.stage import Stage, Task, tree_fingerprint

ROW_BYTES = 160  # per graph row in a resolve task: both directions, sorting and lookups
MAX_ROUNDS = 200  # components: the rounds allowed before giving up (a path of 1M nodes: ~45)
NODE_SALT = 0x2545F4914F6CDD1D
KEPT = 2  # kind of a record for a kept document (0: exact duplicate, 1: near duplicate)

# ---------------------------------------------------------------------------- routed files


def node_part(x: np.ndarray, n: int) -> np.ndarray:
    """Partition of each document ordinal: a hash of it, so a range of ordinals spreads out."""
    if n == 1:
        return np.zeros(len(x), dtype=np.int64)
    with np.errstate(over="ignore"):
        h = fmix64(x.astype(np.uint64) ^ U64(NODE_SALT))
    return _partition(h.view(np.int64), n)


def route(stem: Path, rows: np.ndarray, dest: np.ndarray, n: int, ids: list | None = None):
    """Write `rows` sorted by destination (0..n-1) with the bounds of each destination's slice:
    STEM.rows.npy, STEM.bounds.npy (and with `ids`, one string per row: STEM.ids.npy as UTF-8
    bytes with STEM.idoff.npy). The bounds are written last."""
    order = np.argsort(dest, kind="stable")
    bounds = np.searchsorted(dest[order], np.arange(n + 1)).astype(np.int64)
    _save(f"{stem}.rows.npy", rows[order])
    if ids is not None:
        enc = [ids[i].encode() for i in order.tolist()]
        off = np.r_[0, np.cumsum([len(b) for b in enc], dtype=np.int64)].astype(np.int64)
        _save(f"{stem}.ids.npy", np.frombuffer(b"".join(enc), dtype=np.uint8))
        _save(f"{stem}.idoff.npy", off)
    _save(f"{stem}.bounds.npy", bounds)


def route_outputs(stem: Path, ids: bool = False) -> tuple:
    names = ("rows", "bounds") + (("ids", "idoff") if ids else ())
    return tuple(Path(f"{stem}.{n}.npy") for n in names)


def gather(stems: list[Path], dest: int, cols: int) -> np.ndarray:
    """Destination `dest`'s rows from every routed file in `stems` (in that order)."""
    out = []
    for stem in stems:
        b = _load(f"{stem}.bounds.npy", mmap=True)
        lo, hi = int(b[dest]), int(b[dest + 1])
        if hi > lo:
            out.append(np.asarray(_load(f"{stem}.rows.npy", mmap=True)[lo:hi]))
    return _concat(out, cols)


def gather_ids(stems: list[Path], dest: int, cols: int) -> tuple[np.ndarray, pa.Array]:
    """Like gather, with each row's string (a large_string array in the same order)."""
    rows, data, offs, base = [], [], [np.zeros(1, np.int64)], 0
    for stem in stems:
        b = _load(f"{stem}.bounds.npy", mmap=True)
        lo, hi = int(b[dest]), int(b[dest + 1])
        if hi <= lo:
            continue
        rows.append(np.asarray(_load(f"{stem}.rows.npy", mmap=True)[lo:hi]))
        off = np.asarray(_load(f"{stem}.idoff.npy", mmap=True)[lo : hi + 1])
        data.append(np.asarray(_load(f"{stem}.ids.npy", mmap=True)[off[0] : off[-1]]))
        offs.append(off[1:] - off[0] + base)
        base += int(off[-1] - off[0])
    offsets = np.concatenate(offs).astype(np.int64)
    buf = np.concatenate(data) if data else np.zeros(0, np.uint8)
    strings = pa.LargeStringArray.from_buffers(
        len(offsets) - 1, pa.py_buffer(offsets.tobytes()), pa.py_buffer(buf.tobytes())
    )
    return _concat(rows, cols), strings


def _both_ways(edges: np.ndarray) -> np.ndarray:
    """Undirected edges (x, y) as directed rows (x, y) and (y, x)."""
    return np.concatenate([edges, edges[:, ::-1]]) if len(edges) else np.zeros((0, 2), np.int64)


def route_edges(stem: Path, edges: np.ndarray, n: int) -> None:
    rows = _both_ways(edges)
    route(stem, rows, node_part(rows[:, 0], n), n)


# ---------------------------------------------------------------------------- components


def large_star(adj: np.ndarray) -> tuple[np.ndarray, int]:
    """adj: distinct rows (u, v) sorted, every neighbour v of each node u held here. Each node
    u links its larger neighbours to the smallest of u and its neighbours. Returns the new
    undirected edges and how many edges changed."""
    if len(adj) == 0:
        return np.zeros((0, 2), np.int64), 0
    u, v = adj[:, 0], adj[:, 1]
    start = np.r_[True, u[1:] != u[:-1]]
    m = np.minimum(u[start], v[start])[np.cumsum(start) - 1]  # rows sorted: first v is min
    sel = v > u
    return np.stack([v[sel], m[sel]], axis=1), int((m[sel] != u[sel]).sum())


def small_star(adj: np.ndarray) -> tuple[np.ndarray, int]:
    """Each node u links itself and its smaller neighbours to the smallest of them."""
    u, v = adj[:, 0], adj[:, 1]
    sel = v < u
    u, v = u[sel], v[sel]
    if len(u) == 0:
        return np.zeros((0, 2), np.int64), 0
    start = np.r_[True, u[1:] != u[:-1]]
    m = v[start][np.cumsum(start) - 1]
    moved = v != m
    out = np.concatenate([np.stack([v[moved], m[moved]], axis=1),
                          np.stack([u[start], v[start]], axis=1)])  # fmt: skip
    return out, int(moved.sum())


def components_at_once(adj: np.ndarray) -> np.ndarray:
    """Union-find over every edge at once (scipy): each node with its component's smallest
    node, as undirected edges (node, smallest) for the nodes that are not the smallest."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    if len(adj) == 0:
        return np.zeros((0, 2), np.int64)
    nodes = np.unique(adj)
    a, b = np.searchsorted(nodes, adj[:, 0]), np.searchsorted(nodes, adj[:, 1])
    g = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(len(nodes), len(nodes)))
    _, label = connected_components(g, directed=False)
    labels, first = np.unique(label, return_index=True)  # nodes ascending: first = smallest
    smallest = np.empty(len(labels), np.int64)
    smallest[labels] = nodes[first]
    m = smallest[label]
    keep = nodes != m
    return np.stack([nodes[keep], m[keep]], axis=1)


def component_round(adj: np.ndarray, r: int) -> tuple[np.ndarray, int]:
    """Round r (1, 2, ...) over a partition's rows: large-star on odd rounds, small-star on
    even ones."""
    return large_star(adj) if r % 2 else small_star(adj)


def star_labels(adj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct sorted rows of converged stars: each node and its component's smallest node."""
    if len(adj) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    u, v = adj[:, 0], adj[:, 1]
    start = np.r_[True, u[1:] != u[:-1]]
    return u[start], np.minimum(u[start], v[start])


def components_in_rounds(edges: np.ndarray, partitions: int, max_rounds: int = MAX_ROUNDS):
    """In memory, what the dedup.components stages do over `partitions` node partitions:
    (nodes, smallest node of each one's component, rounds). For tests and small graphs."""
    rows = _both_ways(np.asarray(edges, np.int64).reshape(-1, 2))
    parts = [_rows_sorted_unique(rows[node_part(rows[:, 0], partitions) == p])
             for p in range(partitions)]  # fmt: skip
    zeros, r = 0, 0
    while zeros < 2:
        r += 1
        if r > max_rounds:
            raise MixerError(f"connected components did not converge in {max_rounds} rounds")
        if partitions == 1:
            new, changed, zeros = components_at_once(parts[0]), 0, 2
        else:
            outs = [component_round(a, r) for a in parts]
            new = _concat([o[0] for o in outs], 2)
            changed = sum(o[1] for o in outs)
            zeros = zeros + 1 if changed == 0 else 0
        rows = _both_ways(new)
        dest = node_part(rows[:, 0], partitions)
        parts = [_rows_sorted_unique(rows[dest == p]) for p in range(partitions)]
    labels = [star_labels(a) for a in parts]
    nodes = _concat([x[0] for x in labels], 0, np.int64).reshape(-1)
    smallest = _concat([x[1] for x in labels], 0, np.int64).reshape(-1)
    order = np.argsort(nodes)
    return nodes[order], smallest[order], r


# ---------------------------------------------------------------------------- the stages


class _ResolveStage(_DedupStage):
    """Shared by the resolution stages: R (node and component partitions), decided by
    dedup.graph's setup from the size of its inputs and written to state/dedup/graph.json."""

    def setup(self, ctx) -> None:
        super().setup(ctx)
        meta = read_json(self.state / "graph.json")
        if meta is None:
            raise MixerError("dedup: no state/dedup/graph.json (run the dedup.graph stage first)")
        self.R = meta["partitions"]

    @property
    def W(self) -> int:
        return len(self.plan["write_groups"])

    def write_group_of(self, docs: np.ndarray) -> np.ndarray:
        los = np.array([g["lo"] for g in self.plan["write_groups"]], dtype=np.int64)
        return np.searchsorted(los, docs, side="right") - 1

    def graph_sources(self) -> list[tuple[str, dict]]:
        """(key, what it reads) of each dedup.graph task."""
        P = self.plan["partitions"]
        out = [(f"p{p:04d}", {"map": p, "field": p if self.config["exact_field"] else None})
               for p in range(P)]  # fmt: skip
        if self.config["minhash"]:
            out += [(f"q{q:04d}", {"edges": q}) for q in range(self.plan["pair_partitions"])]
        return out

    def stems(self, stage: str, keys: list[str], kind: str = "") -> list[Path]:
        return [self.state / stage / (k + kind) for k in keys]

    def round_dir(self, r: int) -> str:
        return f"cc/r{r:03d}"

    def final_round(self) -> int:
        """The round whose rows are the converged stars: follow the rounds' records."""
        r = 1
        while True:
            done = read_json(state_dir(self.workdir) / "stages" / round_name(r) / "stage.json")
            if not done or not done.get("result"):
                raise MixerError("dedup: components unfinished (run dedup.components first)")
            if done["result"].get("final"):
                return r
            r += 1

    def inputs_digest(self) -> str:
        """The stage's input fingerprint as one hash: what each of its tasks records (every task
        reads a slice of every input, and a list of W tasks each holding W file entries would
        grow the driver with the square of the corpus)."""
        return config_hash(self.input_fingerprint())

    def parts_keys(self, n: int, prefix: str) -> list[str]:
        return [f"{prefix}{i:04d}" for i in range(n)]


class _RoutedStage(_ResolveStage):
    """A resolution step whose tasks each read a slice of every file of `sources()` and route
    their rows to `<out_dir>/<prefix>NNNN`: task i gets args {prefix: i}."""

    prefix = "r"  # the task argument and key prefix
    ids = False  # the routed files carry document ids too

    def out_dir(self) -> str:
        raise NotImplementedError

    def n_tasks(self) -> int:
        return self.R

    def fingerprint_files(self) -> list[Path]:
        return self.sources()

    def fingerprint_extra(self) -> dict:
        return {"partitions": self.R}

    def input_fingerprint(self) -> Any:
        files = (f"{s}.rows.npy" for s in self.fingerprint_files())
        return {"inputs": tree_fingerprint(*files), **self.fingerprint_extra()}

    def task_outputs(self, key: str) -> tuple:
        return route_outputs(self.state / self.out_dir() / key, ids=self.ids)

    def outputs(self) -> list[Path]:
        keys = self.parts_keys(self.n_tasks(), self.prefix)
        return [p for k in keys for p in self.task_outputs(k)]

    def tasks(self) -> list[Task]:
        fp = self.inputs_digest()  # once: every task reads a slice of every input
        keys = self.parts_keys(self.n_tasks(), self.prefix)
        return [Task(key=k, args={self.prefix: i}, fingerprint=fp, outputs=self.task_outputs(k))
                for i, k in enumerate(keys)]  # fmt: skip


def round_name(r: int) -> str:
    return "dedup.components" if r == 1 else f"dedup.components.r{r:03d}"


class GraphStage(_ResolveStage):
    name = "dedup.graph"

    def setup(self, ctx) -> None:
        _DedupStage.setup(self, ctx)
        # R: the graph rows (16 bytes each after a 128-byte .npy header) of one task within the
        # memory limit
        rows = sum(max(0, size - 128) // 16 for _, size, _ in tree_fingerprint(*self._inputs()))
        self.R = max(1, math.ceil(rows * ROW_BYTES / self.config["memory_limit"]))
        meta = {"partitions": self.R}
        if read_json(self.state / "graph.json") != meta:
            write_json_atomic(self.state / "graph.json", meta)

    def _inputs(self, src: dict | None = None) -> list[Path]:
        srcs = [src] if src else [s for _, s in self.graph_sources()]
        out = []
        for s in srcs:
            if "map" in s:
                out.append(self.state / "exact" / f"p{s['map']:04d}.map.npy")
                if s["field"] is not None:
                    out.append(self.state / "exact" / f"p{s['field']:04d}.field.npy")
            else:
                out.append(self.state / "edges" / f"q{s['edges']:04d}.npy")
        return out

    def input_fingerprint(self) -> Any:
        return {"inputs": tree_fingerprint(*self._inputs()), "partitions": self.R}

    def outputs(self) -> list[Path]:
        return [p for k, _ in self.graph_sources()
                for kind in (".cc", ".orig") for p in route_outputs(self.state / "graph" / (k + kind))]  # fmt: skip

    def tasks(self) -> list[Task]:
        return [
            Task(key=k, args={"key": k, "src": src, "R": self.R},
                 fingerprint=[tree_fingerprint(*self._inputs(src)), self.R],
                 outputs=route_outputs(self.state / "graph" / (k + ".cc"))
                 + route_outputs(self.state / "graph" / (k + ".orig")))
            for k, src in self.graph_sources()
        ]  # fmt: skip

    def run_task(self, task: Task) -> dict:
        a = task.args
        key, src, R = a["key"], a["src"], a["R"]
        edges, orig = [], []
        if "map" in src:
            m = _load(self.state / "exact" / f"p{src['map']:04d}.map.npy")
            if len(m):
                # every member joins its group's smallest document: stars from the start
                mem, rep = m[:, 0], m[:, 1]
                order = np.argsort(rep, kind="stable")
                rs = rep[order]
                start = np.r_[True, rs[1:] != rs[:-1]]
                idx = np.flatnonzero(start)
                smallest = np.minimum(np.minimum.reduceat(mem[order], idx), rs[start])
                low = np.empty(len(m), np.int64)
                low[order] = smallest[np.cumsum(start) - 1]
                e = np.concatenate([np.stack([mem, low], axis=1),
                                    np.stack([rs[start], smallest], axis=1)])  # fmt: skip
                edges.append(e[e[:, 0] != e[:, 1]])
                orig.append(np.stack([mem, rep, np.zeros(len(m), np.int64)], axis=1))
            if src["field"] is not None:
                f = _load(self.state / "exact" / f"p{src['field']:04d}.field.npy")
                edges.append(f)
                orig.append(np.stack([f[:, 0], f[:, 1], np.ones(len(f), np.int64)], axis=1))
        else:
            q = _load(self.state / "edges" / f"q{src['edges']:04d}.npy")
            edges.append(q)
            orig.append(np.stack([q[:, 0], q[:, 1], np.ones(len(q), np.int64)], axis=1))
        e, o = _concat(edges, 2), _concat(orig, 3)
        route_edges(self.state / "graph" / (key + ".cc"), e, R)
        route(self.state / "graph" / (key + ".orig"), o, node_part(o[:, 0], R), R)
        return {"edges": len(e), "rows": len(o)}

    def finish(self, results: list) -> dict:
        return {"partitions": self.R, "graph_edges": sum(r["edges"] for r in results),
                "rows": sum(r["rows"] for r in results)}  # fmt: skip


class ComponentsStage(_RoutedStage):
    """One round of connected components; `next_stage` decides whether another follows."""

    def __init__(self, workdir, settings: dict, round: int = 1, zeros: int = 0):
        super().__init__(workdir, settings)
        self.round = round
        self.zeros = zeros  # rounds in a row before this one that changed nothing
        self.name = round_name(round)

    def sources(self) -> list[Path]:
        if self.round == 1:
            return self.stems("graph", [k for k, _ in self.graph_sources()], ".cc")
        return self.stems(self.round_dir(self.round - 1), self.parts_keys(self.R, "r"))

    def out_dir(self) -> str:
        return self.round_dir(self.round)

    def fingerprint_extra(self) -> dict:
        return {"round": self.round, "partitions": self.R}

    def run_task(self, task: Task) -> dict:
        r = task.args["r"]
        adj = _rows_sorted_unique(gather(self.sources(), r, 2))
        if self.R == 1:  # every edge here: union-find gives the stars at once
            new, changed = components_at_once(adj), 0
        else:
            new, changed = component_round(adj, self.round)
        route_edges(self.state / self.round_dir(self.round) / f"r{r:04d}", new, self.R)
        return {"rows": len(adj), "changed": changed}

    def finish(self, results: list) -> dict:
        changed = sum(r["changed"] for r in results)
        zeros = self.zeros + 1 if changed == 0 else 0
        return {"round": self.round, "changed": changed, "zeros": zeros,
                "rows": max((r["rows"] for r in results), default=0),
                "final": self.R == 1 or zeros >= 2}  # fmt: skip

    def next_stage(self, result: Any) -> Stage | None:
        if result["final"]:
            return None
        if self.round >= MAX_ROUNDS:
            raise MixerError(
                f"dedup: connected components did not converge in {MAX_ROUNDS} rounds "
                f"({result['changed']} edges still changing)"
            )
        return ComponentsStage(self.workdir, self.config, self.round + 1, result["zeros"])


class LabelsStage(_RoutedStage):
    name = "dedup.labels"

    def sources(self) -> tuple[list[Path], list[Path]]:
        stars = self.stems(self.round_dir(self.final_round()), self.parts_keys(self.R, "r"))
        return stars, self.stems("graph", [k for k, _ in self.graph_sources()], ".orig")

    def fingerprint_files(self) -> list[Path]:
        stars, orig = self.sources()
        return stars + orig

    def out_dir(self) -> str:
        return "labels"

    def run_task(self, task: Task) -> dict:
        r = task.args["r"]
        stars, orig = self.sources()
        nodes, smallest = star_labels(_rows_sorted_unique(gather(stars, r, 2)))
        o = gather(orig, r, 3)
        i = np.minimum(np.searchsorted(nodes, o[:, 0]), max(len(nodes) - 1, 0))
        if len(o) and not (nodes[i] == o[:, 0]).all():
            raise RuntimeError("dedup.labels: a node without a component")
        label = smallest[i] if len(o) else np.zeros(0, np.int64)
        rows = np.concatenate([label[:, None], o], axis=1)
        route(self.state / "labels" / f"r{r:04d}", rows, node_part(label, self.R), self.R)
        return {"rows": len(rows), "components": int((nodes == smallest).sum())}

    def finish(self, results: list) -> dict:
        return {"components": sum(r["components"] for r in results)}


class ResolveStage(_RoutedStage):
    name = "dedup.resolve"

    def sources(self) -> list[Path]:
        return self.stems("labels", self.parts_keys(self.R, "r"))

    prefix = "c"

    def out_dir(self) -> str:
        return "resolve"

    def run_task(self, task: Task) -> dict:
        c = task.args["c"]
        rows = gather(self.sources(), c, 4)  # (component, a, b, kind): whole components
        exact = rows[:, 3] == 0
        # identical texts: every member -> its group's representative
        emap = rows[exact][:, 1:3]
        emap = emap[np.argsort(emap[:, 0], kind="stable")]

        def rep(x: np.ndarray) -> np.ndarray:
            if not len(emap):
                return x
            i = np.minimum(np.searchsorted(emap[:, 0], x), len(emap) - 1)
            return np.where(emap[i, 0] == x, emap[i, 1], x)

        e = rows[~exact][:, 1:3]
        if len(e):
            e = np.stack([rep(e[:, 0]), rep(e[:, 1])], axis=1)
            e = e[e[:, 0] != e[:, 1]]
            e = _rows_sorted_unique(np.stack([e.min(axis=1), e.max(axis=1)], axis=1))
        near_removed, near_kept = self._greedy(e)
        order = np.argsort(near_removed)
        near_removed, near_kept = near_removed[order], near_kept[order]

        def kept_of(x: np.ndarray) -> np.ndarray:
            if not len(near_removed):
                return x
            i = np.minimum(np.searchsorted(near_removed, x), len(near_removed) - 1)
            return np.where(near_removed[i] == x, near_kept[i], x)

        # near-removed representatives, and every exact member (to its representative's kept
        # document when the representative itself was removed)
        removed = np.concatenate([
            np.stack([emap[:, 0], kept_of(emap[:, 1]), np.zeros(len(emap), np.int64)], axis=1),
            np.stack([near_removed, near_kept, np.ones(len(near_removed), np.int64)], axis=1),
        ])  # fmt: skip
        W = self.W
        route(self.state / "resolve" / f"c{c:04d}", removed, self.write_group_of(removed[:, 1]), W)
        return {"removed": len(removed), "near_removed": len(near_removed), "edges": len(e),
                "rows": len(rows)}  # fmt: skip

    def _greedy(self, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Documents in keep-rule order; each is kept unless a verified neighbour earlier in that
        order was kept, and then removed for the earliest such neighbour."""
        if len(e) == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        nodes = np.unique(e)
        grp = self.group_of(nodes)
        length = np.empty(len(nodes), np.int64)
        quality = np.empty(len(nodes), np.float64)
        for g in np.unique(grp):
            sel = np.flatnonzero(grp == g)
            lo = self.plan["groups"][int(g)]["lo"]
            length[sel] = _load(self.sig_file(int(g), "len"), mmap=True)[nodes[sel] - lo]
            quality[sel] = _load(self.sig_file(int(g), "quality"), mmap=True)[nodes[sel] - lo]
        order = np.lexsort(priority_order(nodes, length, quality, self.config["keep_rule"]))
        return greedy(nodes, order, e)

    def finish(self, results: list) -> dict:
        return {k: sum(r[k] for r in results) for k in ("removed", "near_removed", "edges")}


def greedy(nodes: np.ndarray, order: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """nodes sorted, `order` the keep-rule order of them, e the edges between them: (removed,
    kept for each) where each node in order is kept unless an earlier neighbour was kept."""
    rank = np.empty(len(nodes), np.int64)
    rank[order] = np.arange(len(nodes))
    ra, rb = rank[np.searchsorted(nodes, e[:, 0])], rank[np.searchsorted(nodes, e[:, 1])]
    hi_, lo_ = np.minimum(ra, rb), np.maximum(ra, rb)  # hi_: earlier in keep order
    # for each node, its earlier neighbours (CSR by the later node, earlier ones ascending)
    o = np.lexsort((hi_, lo_))
    nbr = hi_[o]
    start = np.searchsorted(lo_[o], np.arange(len(nodes) + 1))
    kept_for = np.full(len(nodes), -1, dtype=np.int64)
    start_l, nbr_l = start.tolist(), nbr.tolist()
    kept_l = [True] * len(nodes)
    for r in range(len(nodes)):  # in keep order: earlier neighbours are decided already
        for j in range(start_l[r], start_l[r + 1]):
            if kept_l[nbr_l[j]]:
                kept_l[r] = False
                kept_for[r] = nbr_l[j]
                break
    removed_r = np.flatnonzero(~np.array(kept_l, dtype=bool))
    return nodes[order[removed_r]], nodes[order[kept_for[removed_r]]]


class ClustersStage(_RoutedStage):
    name = "dedup.clusters"

    def sources(self) -> list[Path]:
        return self.stems("resolve", self.parts_keys(self.R, "c"))

    prefix = "w"
    ids = True

    def out_dir(self) -> str:
        return "clusters"

    def n_tasks(self) -> int:
        return self.W

    def fingerprint_extra(self) -> dict:
        return {"write_groups": self.W}

    def run_task(self, task: Task) -> dict:
        w = task.args["w"]
        removed = gather(self.sources(), w, 3)  # (doc, kept, kind): kept documents of this group
        removed = removed[np.lexsort((removed[:, 0], removed[:, 1]))]
        kept, first, sizes = np.unique(removed[:, 1], return_index=True, return_counts=True)
        sizes = sizes + 1
        ids = self._ids(kept)
        # to the removed documents' write groups: (doc, kept, size, kind) and the kept id; the
        # kept documents' own records stay here
        i = np.searchsorted(kept, removed[:, 1])
        rows = np.concatenate([
            np.stack([removed[:, 0], removed[:, 1], sizes[i], removed[:, 2]], axis=1),
            np.stack([kept, kept, sizes, np.full(len(kept), KEPT)], axis=1),
        ])  # fmt: skip
        strings = [ids[j] for j in i.tolist()] + [""] * len(kept)
        route(self.state / "clusters" / f"w{w:04d}", rows,
              self.write_group_of(rows[:, 0]), self.W, strings)  # fmt: skip
        # this group's largest clusters, with the first removed members in corpus order
        top = np.lexsort((kept, -sizes))[:TOP_CLUSTERS]
        largest = [[int(sizes[j]), int(kept[j]), ids[j],
                    removed[first[j] : first[j] + min(SAMPLE_IDS, sizes[j]) - 1, 0].tolist()] for j in top]  # fmt: skip
        hist = np.unique(sizes, return_counts=True)
        return {"removed": len(removed), "clusters": len(kept),
                "sizes": [[int(k), int(v)] for k, v in zip(*hist, strict=True)],
                "largest": largest}  # fmt: skip

    def _ids(self, docs: np.ndarray) -> list[str]:
        return _lookup_ids(self.plan["parts"], docs, self.part_of(docs))

    def finish(self, results: list) -> dict:
        largest = sorted((c for r in results for c in r["largest"]), key=lambda c: (-c[0], c[1]))
        out = []
        for size, kept, kept_id, members in largest[:TOP_CLUSTERS]:
            m = np.array([kept, *members], dtype=np.int64)
            out.append({"cluster": kept, "size": size, "kept_id": kept_id,
                        "sample_ids": _lookup_ids(self.plan["parts"], m, self.part_of(m))})  # fmt: skip
        sizes: dict[int, int] = {}
        for r in results:
            for k, v in r["sizes"]:
                sizes[k] = sizes.get(k, 0) + v
        n_docs = self.plan["documents"]
        removed = sum(r["removed"] for r in results)
        clusters = sum(r["clusters"] for r in results)
        by_size = {"1": int(n_docs - removed - clusters)} if n_docs else {}
        by_size.update({str(k): sizes[k] for k in sorted(sizes)})
        return {"removed": removed,
                "clusters_by_size": {k: v for k, v in by_size.items() if v},
                "largest_clusters": out}  # fmt: skip


def _lookup_ids(parts: list[dict], docs: np.ndarray, part_of: np.ndarray) -> list[str]:
    ids = [""] * len(docs)
    for pi in np.unique(part_of):
        p = parts[int(pi)]
        sel = np.flatnonzero(part_of == pi)
        col = (
            pq.ParquetFile(p["path"])
            .read(columns=["id"])
            .column(0)
            .take(pa.array(docs[sel] - p["base"]))
        )
        for i, v in zip(sel.tolist(), col.to_pylist(), strict=True):
            ids[i] = v
    return ids


# ---------------------------------------------------------------------------- write


class WriteStage(_ResolveStage):
    name = "dedup.write"
    progress_unit = "B"

    def sources(self) -> list[Path]:
        return self.stems("clusters", self.parts_keys(self.W, "w"))

    def input_fingerprint(self) -> Any:
        return [self.dir_fingerprint("exact"),
                tree_fingerprint(*(f"{s}.rows.npy" for s in self.sources()))]  # fmt: skip

    def setup(self, ctx) -> None:
        super().setup(ctx)
        # a task killed while writing (its worker or node lost) leaves a .tmp- file beside
        # the part; the workdir lock says no other run writes here
        clean_temporaries(attributes_dir(self.workdir, "dedup"))

    def outputs(self) -> list[Path]:
        return [self.attr_path(p) for p in self.plan["parts"]] + [self.state / "stats.json"]

    def _outputs_state(self, grp: dict) -> Any:
        """The task's attribute files as they are; when one is missing (never written, or removed
        by hand) a value no record can hold, so the task runs again."""
        paths = [self.attr_path(self.plan["parts"][i]) for i in grp["parts"]]
        if all(p.exists() for p in paths):
            return tree_fingerprint(*paths)
        return ["missing", time.time_ns()]

    def attr_path(self, part: dict) -> Path:
        return attributes_dir(self.workdir, "dedup", part["source"]) / part_name(part["index"])

    def tasks(self) -> list[Task]:
        fp = self.inputs_digest()
        return [
            Task(key=f"w{g:05d}", args={"g": g}, weight=grp["bytes"],
                 fingerprint=[[self.plan["parts"][i] for i in grp["parts"]], fp,
                              self._outputs_state(grp)])
            for g, grp in enumerate(self.plan["write_groups"])
        ]  # fmt: skip

    def run_task(self, task: Task) -> list[dict]:
        s, g = self.config, task.args["g"]
        grp = self.plan["write_groups"][g]
        P = self.plan["partitions"]
        # (doc, kept, size, kind) of this group's removed documents and of its kept documents
        # with a cluster, and the kept document's id of each removed one
        rec, kept_ids = gather_ids(self.sources(), g, 4)
        order = np.argsort(rec[:, 0], kind="stable")
        rec, kept_ids = rec[order], kept_ids.take(pa.array(order))
        keys = self.doc_values("key", grp["lo"], grp["hi"])
        spans = None
        if s["paragraphs"]:
            chunks = []
            for p in range(P):
                sp = _load(self.state / "exact" / f"p{p:04d}.spans.npy", mmap=True)
                j0, j1 = np.searchsorted(sp[:, 0], [grp["lo"], grp["hi"]])
                chunks.append(np.asarray(sp[j0:j1]))
            spans = _concat(chunks, 3)
            spans = spans[np.lexsort((spans[:, 1], spans[:, 0]))]
        summaries = []
        for pi in grp["parts"]:
            part = self.plan["parts"][pi]
            lo, hi = part["base"], part["base"] + part["rows"]
            n = part["rows"]
            r0, r1 = np.searchsorted(rec[:, 0], [lo, hi])
            r = rec[r0:r1]
            rel = r[:, 0] - lo
            gone = r[:, 3] != KEPT
            keep = np.ones(n, dtype=bool)
            keep[rel[gone]] = False
            cluster = np.arange(lo, hi, dtype=np.int64)
            cluster[rel] = r[:, 1]
            size = np.ones(n, dtype=np.int64)
            size[rel] = r[:, 2]
            dup_of = pa.nulls(n, pa.string())
            if gone.any():
                idx = np.full(n, -1, dtype=np.int64)
                idx[rel[gone]] = r0 + np.flatnonzero(gone)
                dup_of = kept_ids.take(pa.array(idx, mask=keep)).cast(pa.string())
            ids = pq.ParquetFile(part["path"]).read(columns=["id"]).column("id")
            key = keys[lo - grp["lo"] : hi - grp["lo"]]
            cols = {
                "id": ids,
                "dedup__exact_cluster": hex16(key),
                "dedup__minhash_cluster": pa.array(cluster, pa.int64()),
                "dedup__cluster_size": pa.array(size, pa.int64()),
                "dedup__keep": pa.array(keep, pa.bool_()),
                "dedup__duplicate_of": dup_of,
            }  # fmt: skip
            if spans is not None:
                sel = (spans[:, 0] >= lo) & (spans[:, 0] < hi)
                cols["dedup__paragraph_spans"] = spans_column(
                    n, spans[sel, 0] - lo, spans[sel, 1], spans[sel, 2]
                )
            write_parquet_atomic(self.attr_path(part), pa.table(cols))
            summaries.append({
                "source": part["source"], "documents": n, "removed": int((~keep).sum()),
                "exact_duplicates": int((r[:, 3] == 0).sum()),
            })  # fmt: skip
        return summaries

    def finish(self, results: list) -> dict:
        per_source: dict[str, dict] = {
            s: {"documents": 0, "removed": 0, "kept": 0, "exact_duplicates": 0}
            for s in self.plan["sources"]
        }
        for r in (x for task in results for x in task):
            d = per_source[r["source"]]
            d["documents"] += r["documents"]
            d["removed"] += r["removed"]
            d["exact_duplicates"] += r["exact_duplicates"]
        for d in per_source.values():
            d["kept"] = d["documents"] - d["removed"]
        self._remove_stale()
        names = ("dedup.signatures", "dedup.exact", "dedup.candidates", "dedup.verify",
                 "dedup.graph", "dedup.labels", "dedup.resolve", "dedup.clusters")  # fmt: skip
        prior = {n: read_json(state_dir(self.workdir) / "stages" / n / "stage.json") or {}
                 for n in names}  # fmt: skip
        res = {k: (v.get("result") or {}) for k, v in prior.items()}
        exact, verify = res["dedup.exact"], res["dedup.verify"]
        resolve, clusters = res["dedup.resolve"], res["dedup.clusters"]
        s = self.config
        n_docs = self.plan["documents"]
        removed = sum(d["removed"] for d in per_source.values())
        settings = {k: s[k] for k in sorted(s) if k not in ("task_bytes", "memory_limit")}
        seconds = {n.split(".")[1]: prior[n].get("seconds") for n in names}
        seconds["components"] = self._components_seconds()
        stats = {
            "documents": n_docs,
            "removed": removed,
            "kept": n_docs - removed,
            "settings": settings,
            "lsh": lsh.lsh_summary(s["threshold"], s["bands"], s["rows"]) if s["minhash"] else None,
            "clusters_by_size": clusters.get("clusters_by_size", {}),
            "largest_cluster": max((c["size"] for c in clusters.get("largest_clusters", [])), default=1),
            "exact_clusters_by_size": _exact_hist(n_docs, exact),
            "removed_per_source": {k: v["removed"] for k, v in per_source.items()},
            "per_source": per_source,
            "largest_clusters": clusters.get("largest_clusters", []),
            "verified_edges": resolve.get("edges", 0),
            "seconds": seconds,
            "partitions": self.plan["partitions"],
            "resolve_partitions": self.R,
            "components_rounds": self.final_round(),
            "tasks": len(self.plan["groups"]),
            "cached": False,
        }  # fmt: skip
        if s["exact_field"]:
            stats["exact_field_edges"] = exact.get("field_edges", 0)
        if s["minhash"]:
            stats["candidate_pairs"] = verify.get("candidates", 0)
            if s["signature_check"]:
                stats["signature_rejected"] = verify.get("signature_rejected", 0)
                stats["signature_checked_pairs"] = (
                    stats["candidate_pairs"] - stats["signature_rejected"]
                )
            if s["verify"]:
                stats["verification_rejected"] = verify.get("verification_rejected", 0)
                stats["verified_pairs"] = verify.get("verified", 0)
        if s["paragraphs"]:
            stats["paragraphs"] = self._paragraph_stats()
        write_json_atomic(self.state / "stats.json", stats)
        return stats

    def _components_seconds(self) -> float:
        total = 0.0
        for r in range(1, self.final_round() + 1):
            done = read_json(state_dir(self.workdir) / "stages" / round_name(r) / "stage.json")
            total += (done or {}).get("seconds") or 0.0
        return round(total, 3)

    def _paragraph_stats(self) -> dict:
        flagged = chars = 0
        docs = []
        for p in range(self.plan["partitions"]):
            sp = _load(self.state / "exact" / f"p{p:04d}.spans.npy", mmap=True)
            flagged += len(sp)
            chars += int((sp[:, 2] - sp[:, 1]).sum()) if len(sp) else 0
            docs.append(np.unique(sp[:, 0]))
        return {"flagged": flagged, "chars": chars,
                "documents_with_spans": int(len(np.unique(_concat(docs, 0).reshape(-1))))}  # fmt: skip

    def _remove_stale(self) -> None:
        """Remove dedup attribute parts that an earlier run wrote (named in its record) and this
        run did not: their clusters refer to another corpus. Nothing else is touched."""
        record = self.state / "written.json"
        now = sorted(str(self.attr_path(p)) for p in self.plan["parts"])
        keep = set(now)
        for path in (read_json(record) or {}).get("files", []):
            if path not in keep and Path(path).is_file():
                Path(path).unlink()
                parent = Path(path).parent
                if parent.is_dir() and not any(parent.iterdir()):
                    parent.rmdir()
        write_json_atomic(record, {"files": now})


def _exact_hist(n_docs: int, exact: dict) -> dict:
    sizes = {k: v for k, v in exact.get("exact_group_sizes", {}).items()}
    in_groups = sum(int(k) * v for k, v in sizes.items())
    out = {"1": n_docs - in_groups} if n_docs - in_groups else {}
    out.update(sorted(sizes.items(), key=lambda kv: int(kv[0])))
    return out


def resolve_stages(workdir, settings: dict) -> list[Stage]:
    """The resolution stages for validated settings (dedup.components chains its own rounds)."""
    return [GraphStage(workdir, settings), ComponentsStage(workdir, settings),
            LabelsStage(workdir, settings), ResolveStage(workdir, settings),
            ClustersStage(workdir, settings), WriteStage(workdir, settings)]  # fmt: skip
