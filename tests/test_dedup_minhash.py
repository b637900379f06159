"""MinHash signatures: identical to datasketch's, vectorised hashing equal to its reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from datasketch import MinHash

from mixer.dedup import lsh
from mixer.dedup.minhash import (
    permutations,
    shingle_hash32_py,
    shingle_hashes,
    shingles_py,
    signatures,
)
from mixer.dedup.normalize import (
    hash_sequence_py,
    hash_sequences,
    hash_string_py,
    hash_strings,
    hash_words,
    normalized_words_py,
    words,
)

TEXTS = [
    "The quick brown fox jumps over the lazy dog, again & again in 2024!",
    "Short one",
    "",
    None,
    "Héllo wörld café naïve résumé " * 7,
    "a b c d e",
    "    \n\t  ",
    "Ünïcödé ﬁne—dash «quotes» and ١٢٣ digits; 東京 is a city.\nNew line here, with more words to shingle.",
]


def test_normalisation_rules():
    assert normalized_words_py("  Héllo,  WÖRLD! 123\tfoo ﬁne  ") == [
        "hello",
        "world",
        "000",
        "foo",
        "fine",
    ]
    assert normalized_words_py("e-mail don't") == ["email", "dont"]
    assert normalized_words_py("١٢٣") == ["000"]  # digits of any script
    assert normalized_words_py("... !!! ---") == []


def test_vectorised_hashes_match_reference():
    flat, offsets = words(pa.array(TEXTS))
    assert [int(h) for h in hash_strings(flat)] == [hash_string_py(w) for w in flat.to_pylist()]
    assert np.array_equal(hash_words(flat), hash_strings(flat))
    keys = hash_sequences(hash_words(flat), offsets)
    for text, key in zip(TEXTS, keys, strict=True):
        assert int(key) == hash_sequence_py(normalized_words_py(text or ""))


@pytest.mark.parametrize("scheme", ["affine32", "legacy"])
@pytest.mark.parametrize(("num_perm", "seed", "ngram"), [(128, 1, 5), (112, 42, 5), (64, 7, 3)])
def test_signatures_equal_datasketch(scheme, num_perm, seed, ngram):
    flat, offsets = words(pa.array(TEXTS))
    hv, sh_offsets = shingle_hashes(hash_words(flat), offsets, ngram)
    a, b = permutations(num_perm, seed, scheme)
    sig = signatures(hv, sh_offsets, a, b, scheme)
    assert sig.shape == (len(TEXTS), num_perm)
    for i, text in enumerate(TEXTS):
        m = MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash32_py, scheme=scheme)
        shingles = shingles_py(normalized_words_py(text or ""), ngram)
        assert np.diff(sh_offsets)[i] == len(shingles)
        if shingles:
            m.update_batch([s.encode("utf-8") for s in shingles])
        assert np.array_equal(m.hashvalues.astype(np.uint64), sig[i].astype(np.uint64)), (scheme, i)
        dpa, dpb = m.permutations
        assert np.array_equal(dpa.astype(np.uint64), a.astype(np.uint64))
        assert np.array_equal(dpb.astype(np.uint64), b.astype(np.uint64))


def test_signatures_independent_of_batching():
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(500)]
    texts = [" ".join(rng.choice(vocab, rng.integers(0, 400))) for _ in range(300)]
    a, b = permutations(112, 3)

    def sigs(batch):
        flat, offsets = words(pa.array(batch))
        hv, so = shingle_hashes(hash_words(flat), offsets, 5)
        return signatures(hv, so, a, b)

    whole = sigs(texts)
    parts = np.concatenate([sigs(texts[i : i + 37]) for i in range(0, len(texts), 37)])
    assert np.array_equal(whole, parts)


def test_band_choice_and_probabilities():
    bands, rows = lsh.choose_bands(0.8, 112)
    assert bands * rows <= 112
    summary = lsh.lsh_summary(0.8, bands, rows)
    assert summary["p_candidate_at"]["0.8"] >= 0.9
    assert summary["p_candidate_at"]["0.5"] < 0.06
    fp, fn = lsh.error_areas(0.8, 14, 8)
    assert 0 < fn < fp < 0.2
    with pytest.raises(ValueError):
        lsh.choose_bands(1.5, 112)


def test_ascii_fast_path_matches_unicode_kernels():
    import random
    import string

    from mixer.dedup.normalize import (
        _ASCII_KEEP,
        _ASCII_MAP,
        _WS,
        _ascii_keep,
        _ascii_map,
        _normalize_unicode,
        normalize,
    )

    every = np.arange(256, dtype=np.uint8)
    assert np.array_equal(_ascii_keep(every), _ASCII_KEEP | (every >= 128))
    assert np.array_equal(_ascii_map(every[:128]), _ASCII_MAP[:128])
    assert _WS.sum() == 10
    rng = random.Random(0)
    alphabet = string.printable + "\x7f\x01\x1c"
    samples = [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(2000)
    ]
    arr = pa.array(samples + ["", "A"], pa.large_string())
    for a in (arr, arr.slice(7, 500)):
        assert normalize(a).to_pylist() == _normalize_unicode(a).to_pylist()
    mixed = pa.array(["Héllo, Wörld 12", "plain TEXT, 9!", None, "naïve—café"])
    assert normalize(mixed).to_pylist() == ["hello world 00", "plain text 0", "", "naivecafe"]


PIECES = [
    "Héllo", "WÖRLD", "ﬁne", "e\u0301\u0323", "a\u0323\u0301", "١٢٣", "東京都", "ΟΔΟΣ", "Straße",
    "İstanbul", "ǅemal", "①②", "™", "½", "ﷺ", "👍🏽", "x\u200by", "\u00a0", "\u2028", "\u0085",
    "\u1680", "\u3000", "\u2003", "don't", "e-mail", "C++", "foo_bar", "x=1;", "Ⅻ", "Ａｂｃ",
    "\t", "\n", "  ", "\r\n", "\x1c", "\x7f", "abc", "DEF", "42", "—", "«»", "ça", "ŉ", "",
]  # fmt: skip


def _varied_texts(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        k = int(rng.integers(0, 40))
        glue = ["", " ", "\n", "  "]
        out.append("".join(PIECES[i] + glue[j] for i, j in zip(
            rng.integers(0, len(PIECES), k), rng.integers(0, 4, k), strict=True)))  # fmt: skip
    return out


@pytest.mark.parametrize("slice_bytes", [64, 1 << 18])
def test_piecewise_normalisation_equals_whole_texts(monkeypatch, slice_bytes):
    """normalize and word_hashes (ASCII by byte table, non-ASCII runs through Arrow, in slices)
    give exactly what Arrow's Unicode kernels give on each whole text."""
    from mixer.dedup import normalize as nz

    monkeypatch.setattr(nz, "SLICE_BYTES", slice_bytes)
    texts = _varied_texts(600, 1) + [None, "", "plain ascii only", "é"]
    arr = pa.array(texts, pa.large_string())
    for a in (arr, arr.slice(5, 300)):
        ref = nz._normalize_unicode(pc.fill_null(a, ""))
        assert nz.normalize(a).to_pylist() == ref.to_pylist()
        flat, offsets = nz.split_words(ref)
        wh, woff = nz.word_hashes(a)
        assert np.array_equal(woff, offsets)
        assert np.array_equal(wh, nz.hash_strings(flat))


def test_word_split_matches_arrow_for_every_code_point():
    from mixer.dedup import normalize as nz

    # planes 0-3 and 14 (the others are unassigned or private use)
    cps = [c for c in (*range(0x40000), *range(0xE0000, 0xE1000)) if not 0xD800 <= c < 0xE000]
    arr = pa.array(["a" + chr(c) + "b" for c in cps], pa.large_string())
    flat, offsets = nz.split_words(nz._normalize_unicode(arr))
    wh, woff = nz.word_hashes(arr)
    assert np.array_equal(woff, offsets)
    assert np.array_equal(wh, nz.hash_strings(flat))
