"""Planted near-duplicates in real text at controlled word 5-gram Jaccard levels.

Base documents are blocks of real text read at run time from this machine (Python standard
library sources = code, /usr/share/doc and man pages = prose; see bench/corpus.py), or the
realistic corpus (/work/bench_data/realistic_*.jsonl.zst) when given. A third of them get one or
two edited copies whose Jaccard similarity to the original (over mixer's normalised word
5-gram shingles, measured exactly) is aimed at a level drawn from 0.50, 0.55, ..., 1.00 by
mixing three edits: words substituted, a span deleted, a span from another document inserted.

Scores, from the dedup attributes:
- precision: every removed document is checked against the document it was removed for
  (`dedup__duplicate_of`); right when both belong to one planted cluster (an original and its
  copies), or, for "similar", when their exact Jaccard is >= 0.5 (the lowest planted level):
  real text repeats itself (licences, generated stubs, copied files), so on the raw corpus
  (`clean=False`) removals outside the planted clusters are judged by their exact Jaccard.
  The clean corpus leaves out every base document that shares 20% of its shingles with an
  earlier one, so that its only near-duplicates are the planted ones.
- recall per Jaccard bin: a planted pair (original, copy) is caught when the two are not both
  kept.
"""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa

from bench.corpus import iter_texts
from mixer.dedup.minhash import shingles_py
from mixer.dedup.normalize import words

MAX_SHARED = 0.2
LEVELS = [round(0.5 + 0.05 * i, 2) for i in range(11)]
BINS = [(0.5, 0.6), (0.6, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 1.0001)]


def shingle_sets(texts: list[str], ngram: int = 5) -> list[set[str]]:
    flat, offsets = words(pa.array(texts, pa.large_string()))
    w = flat.to_pylist()
    return [set(shingles_py(w[offsets[i] : offsets[i + 1]], ngram)) for i in range(len(texts))]


def jaccard(a: set, b: set) -> float:
    u = len(a | b)
    return len(a & b) / u if u else 1.0


def base_documents(
    n: int, seed: int, corpus: str | None = None, clean: bool = True
) -> list[tuple[str, str]]:
    """(kind, text) pairs, half code and half prose when both exist, 60..2000 words each;
    `clean`: without the near-duplicates real text has by itself."""
    rng = random.Random(seed)
    pools: dict[str, list[str]] = {"code": [], "prose": []}
    if corpus:
        import orjson

        from mixer.io import iter_lines

        for _, raw in iter_lines(Path(corpus)):
            rec = orjson.loads(raw)
            meta = rec.get("metadata") or {}
            kind = "code" if "code" in str(meta.get("domain", rec.get("source", ""))) else "prose"
            pools[kind].append(rec["text"])
            if sum(len(p) for p in pools.values()) > 8 * n:
                break
    else:
        for path, block in iter_texts():
            kind = "code" if path.endswith(".py") else "prose"
            if len(pools[kind]) < 6 * n:
                pools[kind].append(block)
            if all(len(p) >= 6 * n for p in pools.values()):
                break
    # real text repeats itself (licences, generated stubs, copied files): a base document that
    # shares MAX_SHARED of its shingles with an earlier one is left out, so that every
    # near-duplicate in the corpus is a planted one
    out, owner = [], {}
    for kind in ("code", "prose"):
        pool = [t for t in pools[kind] if 60 <= len(t.split()) <= 2000]
        rng.shuffle(pool)
        got = 0
        for start in range(0, len(pool), 512):
            batch = pool[start : start + 512]
            for text, sh in zip(batch, shingle_sets(batch), strict=True):
                if not sh:
                    continue
                counts: dict[int, int] = {}
                for x in sh:
                    o = owner.get(x)
                    if o is not None:
                        counts[o] = counts.get(o, 0) + 1
                if clean and counts and max(counts.values()) >= MAX_SHARED * len(sh):
                    continue
                for x in sh:
                    owner.setdefault(x, len(out))
                out.append((kind, text))
                got += 1
                if got >= n // 2:
                    break
            if got >= n // 2:
                break
    return out


def _apply(words_: list[str], amount: float, rng: random.Random, donor: list[str]) -> list[str]:
    """Edit a fraction `amount` of the words: a third substituted, a third deleted as one span,
    a third inserted from `donor` as one span (the same rng draws for every amount)."""
    w = list(words_)
    n = len(w)
    k = int(round(n * amount))
    if k == 0:
        return w
    ks, kd = k // 3 + (k % 3 > 0), k // 3 + (k % 3 > 1)
    ki = k - ks - kd
    for i in rng.sample(range(n), min(ks, n)):
        w[i] = donor[rng.randrange(len(donor))]
    if kd:
        start = rng.randrange(max(1, len(w) - kd))
        del w[start : start + kd]
    if ki:
        at = rng.randrange(len(w) + 1)
        s = rng.randrange(max(1, len(donor) - ki))
        w[at:at] = donor[s : s + ki]
    return w


def planted_copy(text: str, donor: str, target: float, seed: int) -> tuple[str, float]:
    """A copy of `text` edited until its exact shingle Jaccard to `text` is near `target`."""
    if target >= 1.0:
        return text, 1.0
    words_, dwords = text.split(" "), donor.split()
    base = shingle_sets([text])[0]
    lo, hi, best = 0.0, 0.7, (text, 1.0)
    for _ in range(12):
        mid = (lo + hi) / 2
        cand = " ".join(_apply(words_, mid, random.Random(seed), dwords))
        j = jaccard(base, shingle_sets([cand])[0])
        if abs(j - target) < abs(best[1] - target):
            best = (cand, j)
        if abs(j - target) < 0.01:
            break
        if j > target:
            lo = mid
        else:
            hi = mid
    return best


def build(n_base: int, seed: int = 0, corpus: str | None = None, clean: bool = True):
    """docs [(id, text)], cluster {id: cluster}, pairs [(orig_id, copy_id, jaccard, kind)]."""
    rng = random.Random(seed)
    base = base_documents(n_base, seed, corpus, clean)
    docs = [(f"b{i}", text) for i, (_, text) in enumerate(base)]
    cluster, pairs = {}, []
    for i in rng.sample(range(len(base)), len(base) // 3):
        kind, text = base[i]
        cluster[f"b{i}"] = i
        for c in range(1 if rng.random() < 0.7 else 2):
            target = rng.choice(LEVELS)
            donor = base[rng.randrange(len(base))][1]
            copy, j = planted_copy(text, donor, target, seed * 1_000_003 + i * 7 + c)
            cid = f"b{i}c{c}"
            docs.append((cid, copy))
            cluster[cid] = i
            pairs.append((f"b{i}", cid, j, kind))
    rng.shuffle(docs)
    return docs, cluster, pairs


def score(attrs: dict, cluster: dict, pairs: list, texts: dict) -> dict:
    """attrs: id -> (keep, minhash_cluster, duplicate_of)."""
    removed = [(d, a[2]) for d, a in attrs.items() if not a[0]]
    right = sum(1 for d, k in removed if d in cluster and cluster.get(k) == cluster[d])
    wrong = [(d, k) for d, k in removed if not (d in cluster and cluster.get(k) == cluster[d])]
    wrong_j = []
    if wrong:
        sets = shingle_sets([texts[x] for d, k in wrong for x in (d, k)])
        wrong_j = [jaccard(sets[2 * i], sets[2 * i + 1]) for i in range(len(wrong))]
    out = {
        "removed": len(removed),
        "precision": right / len(removed) if removed else 1.0,
        "unplanted_removals": len(wrong),
        "unplanted_jaccard_ge_0.5": sum(j >= 0.5 for j in wrong_j),
        "precision_similar": (right + sum(j >= 0.5 for j in wrong_j)) / len(removed)
        if removed
        else 1.0,
        "precision_similar_0.6": (right + sum(j >= 0.6 for j in wrong_j)) / len(removed)
        if removed
        else 1.0,
        "recall": {},
    }
    for kind in ("all", "prose", "code"):
        for lo, hi in [*BINS, (0.6, 1.0001), (0.8, 1.0001)]:
            sel = [p for p in pairs if lo <= p[2] < hi and kind in ("all", p[3])]
            if not sel:
                continue
            caught = sum(1 for a, b, _, _ in sel if not (attrs[a][0] and attrs[b][0]))
            out["recall"][f"{kind} J>={lo:.1f}" + (f"<{hi:.1f}" if hi < 1 else "")] = round(
                caught / len(sel), 4
            )
    return out
