"""The vectorised id hashes: the same id gives the same hash however the ids are held."""

from __future__ import annotations

import pyarrow as pa

from mixer.hashing import id_hashes128, seeded_hash


def test_id_hashes_depend_on_the_id_alone():
    ids = pa.array(
        ["a", "doc-1", "é漢字🙂", "x" * 300, "", "doc-1"] + [f"d{i}" for i in range(5000)]
    )
    h = id_hashes128(ids)
    assert h.shape == (len(ids), 2) and h.dtype == "uint64" and h.flags["C_CONTIGUOUS"]
    rows = [tuple(r) for r in h.tolist()]
    assert rows[1] == rows[5]  # the same id twice
    assert len(set(rows)) == len(ids) - 1  # every other id its own hash
    assert len(set(h[:, 0].tolist())) == len(ids) - 1 and len(set(h[:, 1].tolist())) == len(ids) - 1
    # sliced, chunked, large_string: the same hashes
    assert id_hashes128(ids.slice(3)).tolist() == h[3:].tolist()
    assert id_hashes128(pa.chunked_array([ids[:4], ids[4:]])).tolist() == h.tolist()
    assert id_hashes128(ids.cast(pa.large_string())).tolist() == h.tolist()
    assert id_hashes128(pa.array([], pa.string())).shape == (0, 2)


def test_a_null_id_hashes_as_the_empty_string():
    with_null = pa.array(["a", None, "b"])
    assert seeded_hash(with_null, 3).tolist() == seeded_hash(pa.array(["a", "", "b"]), 3).tolist()
    assert id_hashes128(with_null)[1].tolist() == id_hashes128(pa.array([""]))[0].tolist()
