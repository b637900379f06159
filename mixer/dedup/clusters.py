"""Connected components over candidate edges and the choice of the kept member of each cluster.

Documents are numbered by their ordinal in corpus order (sources sorted by name, parts by
index, rows in order). A cluster's value is the ordinal of its first member, so it is
deterministic and independent of how the edges were found.
"""

from __future__ import annotations

import numpy as np

KEEP_RULES = ("quality", "longest", "shortest", "first", "last")
DEFAULT_KEEP_RULE = "quality,longest,first"


def components(n: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cluster value (smallest ordinal in the component) of every document 0..n-1."""
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if len(a) == 0:
        return np.arange(n, dtype=np.int64)
    from scipy.sparse import coo_matrix  # imported here: scipy is slow to load for every CLI call
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    first = np.full(labels.max() + 1, n, dtype=np.int64)
    np.minimum.at(first, labels, np.arange(n, dtype=np.int64))
    return first[labels]


def exact_edges(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges from each document to the first document with the same exact key."""
    _, first_idx, inverse = np.unique(keys, return_index=True, return_inverse=True)
    root = first_idx[inverse].astype(np.int64)
    docs = np.flatnonzero(root != np.arange(len(keys)))
    return root[docs], docs.astype(np.int64)


def parse_keep_rule(rule: str) -> list[str]:
    parts = [p.strip() for p in rule.split(",") if p.strip()]
    bad = [p for p in parts if p not in KEEP_RULES]
    if not parts or bad:
        raise ValueError(f"keep rule {rule!r}: use a comma list of {', '.join(KEEP_RULES)}")
    return parts


def choose_kept(
    cluster: np.ndarray, lengths: np.ndarray, quality: np.ndarray | None, rule: str
) -> np.ndarray:
    """Boolean mask: True for the one member each cluster keeps, by the keys of `rule` in order.

    quality: highest quality__score first (documents without a score last); longest / shortest:
    by characters of text; first / last: by corpus order. Corpus order always breaks the
    remaining ties, so the choice is deterministic.
    """
    n = len(cluster)
    ordinal = np.arange(n, dtype=np.int64)
    keys: list[np.ndarray] = []  # most significant first
    for part in parse_keep_rule(rule):
        if part == "quality":
            q = np.full(n, -np.inf) if quality is None else np.nan_to_num(quality, nan=-np.inf)
            keys.append(-q)
        elif part == "longest":
            keys.append(-lengths)
        elif part == "shortest":
            keys.append(lengths)
        elif part == "first":
            keys.append(ordinal)
        elif part == "last":
            keys.append(-ordinal)
    keys.append(ordinal)
    order = np.lexsort(tuple(reversed([cluster, *keys])))
    sorted_clusters = cluster[order]
    first_of_cluster = np.r_[True, sorted_clusters[1:] != sorted_clusters[:-1]]
    kept = np.zeros(n, dtype=bool)
    kept[order[first_of_cluster]] = True
    return kept
