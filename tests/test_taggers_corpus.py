"""The realistic benchmark corpus builder (bench/realistic_corpus.py): its text cleaners, its
FAQ splitter, and a small build from this machine's files."""

from __future__ import annotations

import orjson
import zstandard

from bench import realistic_corpus as rc


def test_strip_roff_keeps_text_and_drops_markup():
    src = (
        '.\\" a comment\n.TH LS 1 "2024" "GNU"\n.SH NAME\nls \\- list directory contents\n'
        ".SH DESCRIPTION\n.PP\nList information about the \\fBFILE\\fRs.\n.TP\n"
        '.BR \\-a ", " \\-\\-all\ndo not ignore entries starting with \\(aq.\\(aq\n'
    )
    text = rc.strip_roff(src)
    assert "ls - list directory contents" in text
    assert "List information about the FILEs." in text
    assert "NAME" in text and "DESCRIPTION" in text
    assert "-a,--all" in text and "starting with '.'" in text
    assert "\\f" not in text and "comment" not in text and ".TH" not in text


def test_strip_html_takes_main_content():
    src = (
        "<html><head><title>t</title><style>p{}</style></head><body><nav>menu menu</nav>"
        "<main><h1>Ownership</h1><p>Each value has an &amp; owner.</p><script>x()</script>"
        "</main><footer>foot</footer></body></html>"
    )
    text = rc.strip_html(src)
    assert text.splitlines()[0] == "Ownership"
    assert "Each value has an & owner." in text
    for junk in ("menu", "foot", "x()", "<", "p{}"):
        assert junk not in text


def test_qa_items_pair_questions_with_answers():
    text = (
        "Frequently asked questions\n\n"
        "1. How do I delete a line?\n\nUse the d command.\n\nFor example sed 1d.\n\n"
        "Q: Why is my output empty?\n\nYou used -n without p.\n\n"
        "A question with no answer at the end?\n"
    )
    items = rc.qa_items_from_text(text)
    assert len(items) == 2
    assert items[0].startswith("1. How do I delete a line?")
    assert "sed 1d" in items[0] and "-n without p" not in items[0]
    assert items[1].startswith("Q: Why is my output empty?")


def test_clip_and_regroup():
    text = "\n".join(f"line {i} " + "x" * 50 for i in range(10_000))
    clipped = rc.clip(text, 1000)
    assert len(clipped.encode()) <= 1000 and clipped.endswith("x")
    import random

    paras = "\n\n".join(f"p{i}" for i in range(50))
    groups = rc.regroup(paras, random.Random(1))
    assert "\n\n".join(groups) == paras and len(groups) > 5


def test_histogram_counts_every_length():
    out = rc.histogram([10, 300, 600, 150_000, 199_999])
    counts = [int(line.split()[4].replace(",", "")) for line in out.splitlines()]
    assert sum(counts) == 5 and counts[0] == 1 and counts[-1] == 2


def _read(path):
    raw = zstandard.ZstdDecompressor().stream_reader(open(path, "rb")).read()
    return [orjson.loads(x) for x in raw.splitlines()]


def test_small_build_is_mixed_deterministic_and_prefixed(tmp_path):
    a, b = rc.build(tmp_path / "a", [0.2, 0.6], seed=3, verbose=False)
    (again,) = rc.build(tmp_path / "b", [0.2], seed=3, verbose=False)
    small, large = _read(a), _read(b)
    assert again.read_bytes() == a.read_bytes()  # same seed, same bytes
    assert large[: len(small)] == small  # a smaller size is a prefix of a larger one
    total = sum(len(r["text"].encode()) for r in large)
    assert 600_000 <= total < 600_000 + rc.MAX_DOC
    assert len({r["id"] for r in large}) == len(large)
    by_domain: dict[str, int] = {}
    for r in large:
        assert r["text"].strip() and r["source"]
        by_domain[r["metadata"]["domain"]] = by_domain.get(r["metadata"]["domain"], 0) + len(
            r["text"].encode()
        )
    assert {"code", "reference"} <= set(by_domain)
    assert 0.35 <= by_domain["code"] / total <= 0.65
    assert max(len(r["text"].encode()) for r in large) <= rc.MAX_DOC
