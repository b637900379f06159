"""The held-out split: documents of every source that no mix may train on.

A document is held out when a seeded 64-bit hash of its id falls below `fraction` of the hash
range. The choice depends only on (id, seed, fraction), never on the recipe's filters, budget,
seed or on the order of the rows, so every recipe of an ablation that uses the same
`mix.heldout_fraction` and `mix.heldout_seed` holds out the same documents, and the mix stage
drops them before its filters (mixer/mix.py, `_outside_heldout`). A larger fraction holds out a
superset of a smaller one's documents.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mixer.hashing import mix64, seeded_hash

# Decorrelates the held-out hash from the mix's own selection hash (seeded_hash(id, recipe
# seed)) when the two seeds happen to be equal.
_SALT = np.uint64(0x68656C646F7574)  # "heldout"


def heldout_hash(ids: pa.Array | pa.ChunkedArray | list, seed: int) -> np.ndarray:
    """uint64 hash of each id (its UTF-8 string) under `seed`."""
    if not isinstance(ids, (pa.Array, pa.ChunkedArray)):
        ids = pa.array(ids, type=pa.string())
    with np.errstate(over="ignore"):
        return mix64(seeded_hash(ids, seed) ^ _SALT)


def heldout_mask(ids: pa.Array | pa.ChunkedArray | list, seed: int, fraction: float) -> np.ndarray:
    """True for the documents held out for evaluation (about `fraction` of them)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"heldout fraction must be in [0, 1), got {fraction}")
    h = heldout_hash(ids, seed)
    # Compare in the top 53 bits, which a float64 holds exactly.
    return (h >> np.uint64(11)) < np.uint64(int(fraction * (1 << 53)))
