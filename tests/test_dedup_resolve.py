"""Connected components in rounds of partitioned tasks (large-star / small-star) against a
plain union-find, and the greedy keep rule per component against the greedy over the whole
graph: random graphs, long paths, stars, many small components."""

from __future__ import annotations

import random

import numpy as np
import pytest

from mixer.dedup import resolve
from mixer.errors import MixerError


def _union_find(edges) -> dict[int, int]:
    """Each node -> the smallest node of its component (a plain reference)."""
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


def _check(edges, partitions: int) -> int:
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    nodes, smallest, rounds = resolve.components_in_rounds(edges, partitions)
    ref = _union_find(edges.tolist())
    assert nodes.tolist() == sorted(ref)
    assert smallest.tolist() == [ref[n] for n in sorted(ref)]
    return rounds


def _random_graph(rng: random.Random, n_nodes: int, n_edges: int, span: int) -> list:
    ids = rng.sample(range(span), n_nodes)
    return [(ids[rng.randrange(n_nodes)], ids[rng.randrange(n_nodes)]) for _ in range(n_edges)]


@pytest.mark.parametrize("partitions", [1, 2, 7])
def test_components_match_union_find_on_random_graphs(partitions):
    rng = random.Random(partitions)
    for trial in range(30):
        n = rng.randint(2, 300)
        edges = _random_graph(rng, n, rng.randint(1, 2 * n), 10**9 if trial % 2 else 3 * n)
        edges = [(a, b) for a, b in edges if a != b] or [(1, 2)]
        _check(edges, partitions)


def test_many_small_components_converge_in_two_rounds():
    rng = random.Random(3)
    edges = []
    for _ in range(2000):  # pairs, triangles and small stars far apart
        base = rng.randrange(10**12)
        k = rng.choice([2, 2, 3, 4])
        edges += [(base, base + rng.randint(1, 10**6)) for _ in range(k - 1)]
    rounds = _check(edges, 8)
    assert rounds <= 4


@pytest.mark.parametrize("order", ["ascending", "descending", "shuffled"])
def test_long_path_needs_few_rounds(order):
    n = 10_000
    ids = list(range(n))
    if order == "descending":
        ids.reverse()
    elif order == "shuffled":
        random.Random(5).shuffle(ids)
    edges = list(zip(ids[:-1], ids[1:], strict=True))
    rounds = _check(edges, 6)
    # naive min-label propagation needs ~n rounds here; the stars need O(log n)
    assert rounds <= 4 * int(np.log2(n)), rounds


def test_stars_and_a_complete_graph():
    star = [(0, i) for i in range(1, 500)] + [(10_000 + i, 10_000) for i in range(1, 500)]
    assert _check(star, 5) <= 4
    clique = [(a, b) for a in range(60) for b in range(a + 1, 60)]
    _check(clique, 3)


def test_rounds_are_bounded():
    edges = list(zip(range(1000), range(1, 1001), strict=True))
    with pytest.raises(MixerError, match="did not converge in 2 rounds"):
        resolve.components_in_rounds(np.array(edges), 4, max_rounds=2)


def _greedy_reference(nodes, order, edges):
    rank = {int(nodes[i]): r for r, i in enumerate(order)}
    nbrs: dict[int, set] = {}
    for a, b in edges:
        nbrs.setdefault(int(a), set()).add(int(b))
        nbrs.setdefault(int(b), set()).add(int(a))
    kept, removed = set(), {}
    for x in sorted(rank, key=rank.get):
        earlier = sorted((y for y in nbrs.get(x, ()) if rank[y] < rank[x] and y in kept),
                         key=rank.get)  # fmt: skip
        if earlier:
            removed[x] = earlier[0]
        else:
            kept.add(x)
    return removed


def test_greedy_per_component_equals_greedy_on_the_whole_graph():
    rng = random.Random(8)
    for _ in range(20):
        n = rng.randint(5, 400)
        edges = np.array(_random_graph(rng, n, rng.randint(1, 3 * n), 5 * n), dtype=np.int64)
        edges = edges[edges[:, 0] != edges[:, 1]]
        if not len(edges):
            continue
        edges = np.unique(np.sort(edges, axis=1), axis=0)
        nodes = np.unique(edges)
        order = np.array(rng.sample(range(len(nodes)), len(nodes)))  # any keep-rule order
        rem, kept_for = resolve.greedy(nodes, order, edges)
        assert dict(zip(rem.tolist(), kept_for.tolist(), strict=True)) == _greedy_reference(
            nodes, order, edges
        )
        # split by component over 3 partitions, run the greedy per partition: the same choice
        comp_nodes, smallest, _ = resolve.components_in_rounds(edges, 3)
        label = dict(zip(comp_nodes.tolist(), smallest.tolist(), strict=True))
        rank = np.empty(len(nodes), np.int64)
        rank[order] = np.arange(len(nodes))
        union = {}
        part = resolve.node_part(np.array([label[int(a)] for a in edges[:, 0]]), 3)
        for p in range(3):
            e = edges[part == p]
            if not len(e):
                continue
            sub = np.unique(e)
            sub_order = np.argsort(rank[np.searchsorted(nodes, sub)], kind="stable")
            r, k = resolve.greedy(sub, sub_order, e)
            union.update(zip(r.tolist(), k.tolist(), strict=True))
        assert union == dict(zip(rem.tolist(), kept_for.tolist(), strict=True))


def test_routed_files_round_trip(tmp_path):
    rows = np.arange(40, dtype=np.int64).reshape(20, 2)
    dest = np.array([3, 0, 1, 3, 2] * 4)
    ids = [f"id-{i}-é" for i in range(20)]
    resolve.route(tmp_path / "a", rows, dest, 4, ids)
    resolve.route(tmp_path / "b", rows[:0], dest[:0], 4, [])
    for d in range(4):
        got, strings = resolve.gather_ids([tmp_path / "a", tmp_path / "b"], d, 2)
        want = np.flatnonzero(dest == d)
        assert got.tolist() == rows[want].tolist()
        assert strings.to_pylist() == [ids[i] for i in want]
        assert resolve.gather([tmp_path / "b"], d, 2).shape == (0, 2)


def test_stages_stop_with_a_clear_error_past_the_round_limit(tmp_path, monkeypatch):
    from mixer.dedup import run_dedup
    from tests.test_dedup_stage import _text, write_documents

    rng = random.Random(9)
    docs = []
    for i in range(20):
        t = _text(rng, 60)
        docs += [(f"a{i}", t), (f"b{i}", t)]  # exact pairs: 20 graph rows
    write_documents(tmp_path, "web", 0, docs)
    monkeypatch.setattr(resolve, "ROW_BYTES", 20_000)  # R = 4 at a 100KB limit
    monkeypatch.setattr(resolve, "MAX_ROUNDS", 1)  # pairs need 2 rounds at R > 1
    with pytest.raises(MixerError, match="did not converge in 1 rounds"):
        run_dedup(tmp_path, workers=1, progress=False, memory_limit="100KB")
    monkeypatch.setattr(resolve, "MAX_ROUNDS", 200)
    stats = run_dedup(tmp_path, workers=1, progress=False, memory_limit="100KB")
    assert stats["removed"] == 20 and stats["resolve_partitions"] == 4
    assert stats["components_rounds"] == 2 and stats["clusters_by_size"] == {"2": 20}
    # a rerun skips every stage and every round
    again = run_dedup(tmp_path, workers=1, progress=False, memory_limit="100KB")
    assert again["cached"] is True and again["removed"] == 20
