"""Build a realistic, mixed-domain benchmark corpus from text found on this machine.

Nothing here is committed text: every document is read at run time from files any Debian
machine with Python (and, when present, a Rust toolchain's docs) has, deterministically from
a seed. The mix, by bytes:

    code       ~50%  Python sources (stdlib, site-packages; whole files and single functions),
                     C headers from /usr/include
    reference  ~33%  man pages (roff stripped to text), info manual nodes, Rust reference/API
                     pages, and dictionary-like entries (man NAME lines, Perl's diagnostics,
                     Rust error-code pages, function docstrings)
    web        ~ 9%  prose pages: HTML books and guides (tags stripped), README and NEWS files
    math       ~ 5%  docstrings of sympy, mpmath, scipy.special/stats/... with formulas
    qa         ~ 3%  question/answer items cut from FAQ files (sed, valgrind, gnupg, git, ...)
                     and short question-like items made from docstrings (metadata.derived=true)

Many documents are under 500 bytes (definitions, snippets, questions); the tail reaches 200 KB
(whole source files, long man pages). `--histogram` (always printed) shows the distribution.
Each record is a Dolma document: id, text, source (e.g. `stack-code:python`, `man:1`,
`info:coreutils`, `pypi:numpy`), added, created, metadata {domain, kind, path, derived, pass}.
metadata.domain is the true label. The output of a smaller size is a prefix of a larger one.

When a pool of documents runs out before the target size (the machine lacks that much distinct
text of one kind), its files are read again and cut differently (paragraph groups of another
size, another function split): such documents carry metadata.pass >= 1 and the run says so.

    python bench/realistic_corpus.py [--out /work/bench_data] [--sizes 10,50,200] [--seed 0]
"""

from __future__ import annotations

import argparse
import ast
import functools
import gzip
import hashlib
import html
import random
import re
import sys
import sysconfig
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import zstandard

MAX_DOC = 200_000  # bytes: the tail of the length distribution
SHARES = {"code": 0.50, "reference": 0.33, "web": 0.09, "math": 0.05, "qa": 0.03}
RUST_DOCS = sorted(Path.home().glob(".rustup/toolchains/*/share/doc/rust/html"))[:1]


@dataclass
class Doc:
    text: str
    source: str
    domain: str
    kind: str
    path: str
    derived: bool = False
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------- reading and cleaning text


def _read(path: Path, limit: int = 5_000_000) -> str | None:
    try:
        if path.is_symlink() or path.stat().st_size > limit:
            return None
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile, ValueError):
        return None


_ROFF_ESCAPES = [
    (re.compile(r"\\f(?:\[[^\]]*\]|\(..|.)"), ""),  # font changes
    (re.compile(r"\\s[+-]?\d+"), ""),  # size changes
    (re.compile(r"\\\*(?:\[[^\]]*\]|\(..|.)"), ""),  # string registers
    (re.compile(r"\\\((?:em|en)"), "—"),
    (re.compile(r"\\\(aq"), "'"),
    (re.compile(r"\\\((?:dq|lq|rq)"), '"'),
    (re.compile(r"\\\((?:oq|cq)"), "'"),
    (re.compile(r"\\\(bu"), "•"),
    (re.compile(r"\\\(co"), "©"),
    (re.compile(r"\\\(mu"), "×"),
    (re.compile(r"\\\(ti"), "~"),
    (re.compile(r"\\\(ha"), "^"),
    (re.compile(r"\\\(\w\w"), ""),
    (re.compile(r"\\\[[^\]]*\]"), ""),
    (re.compile(r"\\[&|^c%]"), ""),
    (re.compile(r"\\[ ~0]"), " "),
    (re.compile(r"\\-"), "-"),
    (re.compile(r"\\e"), "\\\\"),
    (re.compile(r'\\".*'), ""),  # comment to end of line
]
_ROFF_PARA = {"PP", "P", "LP", "sp", "br", "RS", "RE", "in", "ti", "TP", "HP", "bp"}
_ROFF_FONT = {"B", "I", "R", "SM", "SB", "BR", "RB", "IR", "RI", "BI", "IB", "UR", "MT", "OP"}


def _roff_inline(s: str) -> str:
    for pattern, repl in _ROFF_ESCAPES:
        s = pattern.sub(repl, s)
    return s


def strip_roff(src: str) -> str:
    """A man page's roff source as plain text (headings, paragraphs, no markup)."""
    out: list[str] = []
    for line in src.splitlines():
        if line.startswith((".", "'")):
            parts = line[1:].strip().split(None, 1)
            if not parts:
                continue
            macro, rest = parts[0], (parts[1] if len(parts) > 1 else "")
            rest = _roff_inline(rest).replace('"', "").strip()
            if macro == "TH":
                out.append(" ".join(rest.split()[:2]))
                out.append("")
            elif macro in ("SH", "SS"):
                out.extend(["", rest.upper() if macro == "SH" else rest])
            elif macro in _ROFF_PARA:
                out.append("")
            elif macro == "IP":
                out.extend(["", rest.split(" ")[0]] if rest else [""])
            elif macro in _ROFF_FONT:
                out.append(rest.replace(" ", "") if len(macro) == 2 else rest)
            # every other request (.nf, .fi, .de, .if, ...) is dropped
        else:
            out.append(_roff_inline(line))
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


_HTML_DROP = re.compile(r"(?is)<(script|style|nav|head|noscript|svg)\b.*?</\1>")
_HTML_BREAK = re.compile(r"(?i)</?(?:p|div|h\d|li|ul|ol|pre|tr|table|section|br|dt|dd)\b[^>]*>")
_HTML_TAG = re.compile(r"(?s)<[^>]+>")


def strip_html(src: str) -> str:
    """The readable text of an HTML page: the main content when marked, tags dropped."""
    for start, end in (("<main", "</main>"), ('<section id="main-content"', "</section>")):
        i = src.find(start)
        if i >= 0:
            j = src.rfind(end)
            src = src[i : j if j > i else len(src)]
            break
    src = _HTML_DROP.sub("", src)
    src = _HTML_BREAK.sub("\n", src)
    text = html.unescape(_HTML_TAG.sub("", src))
    text = re.sub(r"[ \t]+\n", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def clip(text: str, limit: int = MAX_DOC) -> str:
    """At most `limit` UTF-8 bytes, cut at a line boundary when one is near."""
    b = text.encode("utf-8")
    if len(b) <= limit:
        return text
    cut = b[:limit].decode("utf-8", "ignore")
    nl = cut.rfind("\n", int(len(cut) * 0.8))
    return cut[:nl] if nl > 0 else cut


def paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n\s*\n", text) if p.strip()]


def regroup(text: str, rng: random.Random) -> list[str]:
    """A text cut again into groups of 1-6 paragraphs: the reuse of a text on a later pass."""
    paras = paragraphs(text)
    out, i = [], 0
    while i < len(paras):
        k = rng.randint(1, 6)
        out.append("\n\n".join(paras[i : i + k]))
        i += k
    return out


# ---------------------------------------------------------------- collectors (one per kind)


def _files(roots: list[Path], pattern: str, max_size: int = 3_000_000) -> list[Path]:
    out = []
    for root in roots:
        if root.is_dir():
            for p in root.rglob(pattern):
                try:
                    if p.is_file() and not p.is_symlink() and 0 < p.stat().st_size <= max_size:
                        out.append(p)
                except OSError:
                    continue
    return sorted(set(out))


def _py_roots() -> tuple[Path, Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    site = Path(sysconfig.get_paths()["purelib"])
    return stdlib, site


def _package_of(path: Path, stdlib: Path, site: Path) -> str:
    try:
        rel = path.relative_to(site)
        return "pypi:" + rel.parts[0].split(".")[0].split("-")[0].lower()
    except ValueError:
        return "python-stdlib"


def _top_level_blocks(src: str) -> list[str]:
    """Top-level functions and classes of a Python source (with decorators), as text."""
    try:
        tree = ast.parse(src)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    lines = src.splitlines()
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            out.append("\n".join(lines[start : node.end_lineno]))
    return out


def code_python(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    stdlib, site = _py_roots()
    for p in paths:
        src = _read(p)
        if not src or len(src) < 40:
            continue
        pkg = _package_of(p, stdlib, site)
        # About a third of files come as single functions/classes (snippets, many small);
        # later passes split the others.
        split = (rng.random() < 0.35) != (reuse % 2 == 1)
        pieces = _top_level_blocks(src) if split else []
        source = "stack-code:python" if split else (pkg if rng.random() < 0.6 else "github:python")
        for piece in pieces or [src]:
            if len(piece) >= 40:
                yield Doc(clip(piece), source, "code", "python", str(p))


def code_c(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    for p in paths:
        src = _read(p)
        if not src or len(src) < 40:
            continue
        if reuse:
            # a later pass: blocks between blank lines, grouped again
            for piece in regroup(src, rng):
                if len(piece) >= 80:
                    yield Doc(clip(piece), "stack-code:c", "code", "c", str(p))
            continue
        sub = p.relative_to("/usr/include").parts
        source = "github:c-headers" if len(sub) == 1 else f"github:{sub[0]}"
        yield Doc(clip(src), source, "code", "c", str(p))


def _man_section(p: Path) -> tuple[str, str]:
    """(language, section) of a man page path: ('en', '1') for man1/ls.1.gz."""
    parts = p.relative_to("/usr/share/man").parts
    lang = "en" if parts[0].startswith("man") else parts[0]
    sect = next((x[3:] for x in parts if x.startswith("man") and len(x) > 3), "?")
    return lang, sect


def _man_text(p: Path) -> str | None:
    src = _read(p)
    if not src or src.lstrip().startswith(".so "):
        return None  # an alias of another page
    return strip_roff(src)


def reference_man(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    for p in paths:
        text = _man_text(p)
        if not text or len(text) < 100:
            continue
        lang, sect = _man_section(p)
        source = f"man:{sect}" if lang == "en" else f"man-{lang}:{sect}"
        for piece in regroup(text, rng) if reuse else [text]:
            yield Doc(clip(piece), source, "reference", "man", str(p), extra={"lang": lang})


def reference_info(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    for p in paths:
        src = _read(p)
        if not src:
            continue
        manual = p.name.split(".")[0]
        for node in src.split("\x1f"):
            node = node.strip()
            if node.startswith("File:"):
                node = node.split("\n", 1)[1] if "\n" in node else ""
            if len(node) < 200 or node.startswith(("Tag Table", "End Tag Table")):
                continue
            for piece in regroup(node, rng) if reuse else [node]:
                if len(piece) >= 80:
                    yield Doc(clip(piece), f"info:{manual}", "reference", "info", str(p))


def _html_doc(
    paths: list[Path], domain: str, kind: str, rng: random.Random, reuse: int, base: Path
) -> Iterator[Doc]:
    for p in paths:
        if p.name in ("print.html", "toc.html", "404.html", "index.html", "all.html"):
            continue
        src = _read(p)
        if not src:
            continue
        text = strip_html(src)
        if len(text) < 200:
            continue
        rel = p.relative_to(base).parts
        source = f"docs.rust-lang.org:{rel[0]}" if base.name == "html" else f"html:{rel[0]}"
        for piece in regroup(text, rng) if reuse else [text]:
            if len(piece) >= 100:
                yield Doc(clip(piece), source, domain, kind, str(p))


def web_pages(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    for p in paths:
        if p.suffix == ".html":
            base = (
                RUST_DOCS[0] if RUST_DOCS and RUST_DOCS[0] in p.parents else Path("/usr/share/doc")
            )
            yield from _html_doc([p], "web", "html", rng, reuse, base)
            continue
        text = _read(p)
        if not text or len(text) < 200:
            continue
        pkg = p.relative_to("/usr/share/doc").parts[0]
        for piece in regroup(text, rng) if reuse else [text]:
            if len(piece) >= 100:
                yield Doc(clip(piece), f"readme:{pkg}", "web", "readme", str(p))


def reference_rust(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    if RUST_DOCS:
        yield from _html_doc(paths, "reference", "html", rng, reuse, RUST_DOCS[0])


# ----- dictionary-like entries (domain reference, kind dictionary)


def dict_man_names(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    """The NAME line of English man pages: 'ls - list directory contents'."""
    for p in paths:
        text = _man_text(p)
        if not text:
            continue
        m = re.search(r"(?m)^NAME\s*\n+(.+(?:\n[^\n]+){0,2})", text)
        if not m:
            continue
        entry = " ".join(m.group(1).split())
        if " - " not in entry and " — " not in entry:
            continue
        _, sect = _man_section(p)
        if reuse:
            head, _, body = entry.partition(" - ")
            entry = f"{head} ({sect})\n    {body}"
        yield Doc(entry, "dictionary:man-names", "reference", "dictionary", str(p))


def dict_perldiag(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    """Perl's diagnostics: each '=item message' with its explanation."""
    for p in paths:
        src = _read(p)
        if not src:
            continue
        for item in src.split("\n=item ")[1:]:
            item = re.sub(r"[A-Z]<(?:<+\s)?([^<>]*?)(?:\s>+)?>", r"\1", item.split("\n=back")[0])
            if 80 <= len(item) <= 6000:
                yield Doc(item.strip(), "dictionary:perldiag", "reference", "dictionary", str(p))


def dict_docstrings(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    """'name(args)' with the first paragraph of its docstring: short definitions."""
    for p, qual, sig, doc in _docstrings(paths):
        first = paragraphs(doc)[0] if doc.strip() else ""
        if 20 <= len(first) <= 1500:
            text = f"{qual}{sig}\n    {' '.join(first.split())}"
            yield Doc(text, "dictionary:python-api", "reference", "dictionary", str(p))


def reference_docstrings(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    """Whole docstrings of modules, classes and functions (API reference text)."""
    for p, qual, sig, doc in _docstrings(paths):
        if len(doc) >= 300 and not _mathy(doc):
            yield Doc(f"{qual}{sig}\n\n{doc}", "pydoc:reference", "reference", "docstring", str(p))


def _docstrings(paths: list[Path]) -> Iterator[tuple[Path, str, str, str]]:
    stdlib, site = _py_roots()
    for p in paths:
        src = _read(p)
        if not src:
            continue
        try:
            tree = ast.parse(src)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        mod = ".".join(
            p.relative_to(site if site in p.parents else stdlib).with_suffix("").parts
        ).removesuffix(".__init__")
        for node in ast.walk(tree):
            if not isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Module
            ):
                continue
            doc = ast.get_docstring(node)
            if not doc:
                continue
            if isinstance(node, ast.Module):
                yield p, mod, "", doc
                continue
            sig = ""
            if not isinstance(node, ast.ClassDef):
                args = [a.arg for a in node.args.args if a.arg not in ("self", "cls")]
                sig = f"({', '.join(args)})"
            yield p, f"{mod}.{node.name}", sig, doc


_MATH_MARK = re.compile(
    r"\.\. math::|:math:`|\$[^$\n]+\$|\\(?:frac|sum|int|sqrt|alpha|beta|gamma|pi|infty|mathrm|"
    r"left|cdot|binom|prod|lim)\b|\b(?:theorem|integral|polynomial|eigenvalue|derivative)\b"
)


def _mathy(doc: str) -> bool:
    return len(_MATH_MARK.findall(doc)) >= 2


def math_docstrings(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    for p, qual, sig, doc in _docstrings(paths):
        if len(doc) >= 150 and _mathy(doc):
            source = "math:" + qual.split(".")[0]
            if reuse:
                for piece in regroup(doc, rng):
                    if _mathy(piece):
                        yield Doc(piece, source, "math", "docstring", str(p))
            else:
                yield Doc(f"{qual}{sig}\n\n{doc}", source, "math", "docstring", str(p))


def math_info(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    """Nodes of mathematical manuals (bc) that are about arithmetic and functions."""
    for doc in reference_info(paths, rng, reuse):
        if _mathy(doc.text) or len(re.findall(r"[=+*/^]", doc.text)) > len(doc.text) / 80:
            yield Doc(doc.text, "math:bc-manual", "math", "manual", doc.path)


# ----- question/answer items


_QUESTION = re.compile(
    r"^\s*(?:(?:Q|Question)\s*[:.)]\s*|[\d.]+\)?\s+|\d+\.\d+\.?\s+)?\S.{8,300}\?\s*$"
)


def qa_items_from_text(text: str) -> list[str]:
    """Items of a FAQ: a short question paragraph (ending in '?') and its answer paragraphs."""
    paras = paragraphs(text)
    items: list[str] = []
    current: list[str] | None = None
    for para in paras:
        flat = " ".join(para.split())
        is_q = len(flat) <= 320 and bool(_QUESTION.match(flat))
        if is_q:
            if current and len(current) > 1:
                items.append("\n\n".join(current))
            current = [para.strip()]
        elif current is not None:
            current.append(para.rstrip())
            if sum(map(len, current)) > 8000:
                items.append("\n\n".join(current))
                current = None
    if current and len(current) > 1:
        items.append("\n\n".join(current))
    return items


def qa_faq(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    for p in paths:
        if "/man/" in str(p):
            text = _man_text(p)
        elif p.suffix == ".html":
            text = strip_html(_read(p) or "")
        else:
            text = _read(p)
        if not text:
            continue
        name = re.sub(r"\W+", "-", (p.parent.name if p.parent.name != "man7" else p.stem)).strip(
            "-"
        )
        for item in qa_items_from_text(text):
            if len(item) >= 80:
                yield Doc(clip(item), f"faq:{name}", "qa", "faq", str(p))


_QA_TEMPLATES = [
    "How do I use `{name}` in Python?",
    "What does {name} do?",
    "Q: What is the purpose of `{name}`{sig}?",
    "What is {name} for, and what does it return?",
]


def qa_derived(paths: list[Path], rng: random.Random, reuse: int) -> Iterator[Doc]:
    """Short question-like items: a question about an API and its docstring's first paragraph
    as the answer (template questions on real answers: metadata.derived is true)."""
    for p, qual, sig, doc in _docstrings(paths):
        first = paragraphs(doc)[0] if doc.strip() else ""
        if 40 <= len(first) <= 1200 and sig:
            q = rng.choice(_QA_TEMPLATES).format(name=qual, sig=sig)
            text = f"{q}\n\n{' '.join(first.split())}"
            yield Doc(text, "qa:api-questions", "qa", "question", str(p), derived=True)


# ---------------------------------------------------------------- the mix


Collector = Callable[[list[Path], random.Random, int], Iterator[Doc]]


def plan() -> dict[str, list[tuple[str, float, Collector, Callable[[], list[Path]]]]]:
    """Per domain: (name, share of the domain's bytes, collector, file lister)."""
    stdlib, site = _py_roots()
    py = functools.cache(lambda: _files([stdlib, site], "*.py", 1_500_000))
    math_pkgs = (
        "sympy",
        "mpmath",
        "scipy/special",
        "scipy/stats",
        "scipy/integrate",
        "scipy/linalg",
        "scipy/optimize",
        "scipy/signal",
        "numpy/linalg",
        "numpy/polynomial",
        "numpy/random",
        "networkx/algorithms",
    )
    mathpy = lambda: _files([site / m for m in math_pkgs] + [stdlib / "statistics.py"], "*.py")  # noqa: E731

    def mathpy_():
        return mathpy() + [stdlib / n for n in ("statistics.py", "fractions.py", "random.py")]  # noqa: E731

    man_en = functools.cache(
        lambda: _files([Path(f"/usr/share/man/man{i}") for i in range(1, 9)], "*.gz")
    )
    man_xx = lambda: [  # noqa: E731
        p for p in _files([Path("/usr/share/man")], "*.gz") if not p.parent.parent.name == "man"
    ]
    rust = RUST_DOCS[0] if RUST_DOCS else Path("/nonexistent")
    faq_files = lambda: sorted(  # noqa: E731
        {
            p
            for root in (
                Path("/usr/share/doc"),
                Path("/usr/share/man/man7"),
                rust,
                site / "awscli",
                Path("/usr/share/perl"),
            )
            if root.is_dir()
            for p in root.rglob("*")
            if re.search(r"(?i)faq", p.name)
            and p.is_file()
            and not p.is_symlink()
            and p.suffix in ("", ".gz", ".txt", ".html", ".rst", ".pod", ".md", ".7")
        }
    )
    docs = lambda: sorted(  # noqa: E731
        p
        for p in _files([Path("/usr/share/doc")], "*", 1_000_000)
        if re.match(r"(?i)(readme|news|changes|history|todo|thanks|authors|bugs)", p.name)
        or p.suffix in (".html", ".md", ".rst")
        or p.name.endswith((".txt", ".txt.gz"))
    )
    return {
        "code": [
            ("python", 0.72, code_python, py),
            ("c-headers", 0.28, code_c, lambda: _files([Path("/usr/include")], "*.h")),
        ],
        "reference": [
            ("man-en", 0.45, reference_man, man_en),
            ("man-translated", 0.05, reference_man, man_xx),
            ("info", 0.05, reference_info, lambda: _files([Path("/usr/share/info")], "*.gz")),
            (
                "rust-api",
                0.12,
                reference_rust,
                lambda: _files(
                    [rust / d for d in ("std", "alloc", "reference", "cargo")], "*.html"
                ),
            ),
            ("docstrings", 0.20, reference_docstrings, py),
            ("dict-man-names", 0.02, dict_man_names, man_en),
            (
                "dict-perldiag",
                0.02,
                dict_perldiag,
                lambda: _files([Path("/usr/share/perl")], "perldiag.pod"),
            ),
            (
                "dict-rust-errors",
                0.03,
                reference_rust,
                lambda: _files([rust / "error_codes"], "E*.html"),
            ),
            ("dict-python-api", 0.03, dict_docstrings, py),
        ],
        "web": [
            (
                "rust-books",
                0.70,
                web_pages,
                lambda: _files(
                    [
                        rust / d
                        for d in (
                            "book",
                            "rust-by-example",
                            "nomicon",
                            "embedded-book",
                            "edition-guide",
                        )
                    ],
                    "*.html",
                ),
            ),
            ("doc-files", 0.30, web_pages, docs),
        ],
        "math": [
            ("math-docstrings", 0.95, math_docstrings, mathpy_),
            ("math-info", 0.05, math_info, lambda: _files([Path("/usr/share/info")], "bc.info*")),
        ],
        "qa": [
            ("faq", 0.6, qa_faq, faq_files),
            ("api-questions", 0.4, qa_derived, py),
        ],
    }


class Pool:
    """One collector's documents in a seeded file order; restarts with a new cut when spent."""

    def __init__(self, name: str, collector: Collector, lister, seed: int):
        self.name, self.collector, self.lister, self.seed = name, collector, lister, seed
        self.paths: list[Path] | None = None
        self.passes = 0
        self.bytes = 0
        self.empty = False
        self._it: Iterator[Doc] | None = None

    def _start(self) -> None:
        if self.paths is None:
            self.paths = list(self.lister())
        rng = random.Random(f"{self.seed}:{self.name}:{self.passes}")
        order = list(self.paths)
        rng.shuffle(order)
        self._it = self.collector(order, rng, self.passes)

    def next(self) -> Doc | None:
        if self.empty:
            return None
        if self._it is None:
            self._start()
        for _ in range(2):
            for doc in self._it:
                doc.extra["pass"] = self.passes
                return doc
            if self.passes and not self.bytes:
                break
            self.passes += 1  # spent: read the same files again, cut differently
            self._start()
        self.empty = True
        return None


def documents(seed: int = 0) -> Iterator[Doc]:
    """The corpus as one stream: at each step the domain (and the collector inside it) that is
    furthest below its byte share gives the next document."""
    domains = plan()
    pools = {
        d: [(share, Pool(name, fn, lister, seed)) for name, share, fn, lister in items]
        for d, items in domains.items()
    }
    done = {d: 0 for d in pools}
    total = 0
    while True:
        live = [d for d in pools if any(not p.empty for _, p in pools[d])]
        if not live:
            return
        d = max(live, key=lambda x: SHARES[x] * (total + 1) - done[x])
        share_sum = sum(s for s, p in pools[d] if not p.empty)
        candidates = [(s, p) for s, p in pools[d] if not p.empty]
        s, pool = max(candidates, key=lambda sp: sp[0] / share_sum * (done[d] + 1) - sp[1].bytes)
        doc = pool.next()
        if doc is None:
            continue
        n = len(doc.text.encode("utf-8"))
        pool.bytes += n
        done[d] += n
        total += n
        yield doc


def _record(doc: Doc, i: int, seed: int) -> bytes:
    digest = hashlib.sha1(f"{seed}:{i}:{doc.source}:{doc.path}".encode()).hexdigest()
    meta = {"domain": doc.domain, "kind": doc.kind, "path": doc.path, "derived": doc.derived}
    meta.update(doc.extra)
    return orjson.dumps(
        {
            "id": f"{doc.domain[:3]}-{digest[:16]}",
            "text": doc.text,
            "source": doc.source,
            "added": "2026-11-30T00:00:00Z",
            "created": None,
            "metadata": meta,
        }
    )


EDGES = [0, 100, 250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_001]


def histogram(lengths: list[int]) -> str:
    counts = Counter()
    for n in lengths:
        for lo, hi in zip(EDGES, EDGES[1:], strict=False):
            if lo <= n < hi:
                counts[(lo, hi)] += 1
                break
    total = max(len(lengths), 1)
    rows = []
    for lo, hi in zip(EDGES, EDGES[1:], strict=False):
        c = counts[(lo, hi)]
        bar = "#" * round(60 * c / total)
        rows.append(f"  {lo:>7,} - {hi - 1:>7,} B  {c:>7,}  {100 * c / total:5.1f}%  {bar}")
    return "\n".join(rows)


def _close(writer) -> None:
    fh, zw, tmp, path = writer
    zw.close()
    tmp.replace(path)


def build(out_dir: Path, sizes_mb: list[float], seed: int = 0, verbose: bool = True) -> list[Path]:
    """Write realistic_<N>mb.jsonl.zst for each size; smaller files are prefixes of larger."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = sorted(sizes_mb)
    targets = [(mb, out_dir / f"realistic_{mb:g}mb.jsonl.zst") for mb in sizes]
    writers = []
    for _, path in targets:
        tmp = path.with_suffix(".tmp")
        fh = open(tmp, "wb")  # noqa: SIM115
        writers.append((fh, zstandard.ZstdCompressor(level=3).stream_writer(fh), tmp, path))
    text_bytes = 0
    stats: list[dict] = [
        {"docs": 0, "lengths": [], "domain": Counter(), "sources": Counter(), "reused": 0}
        for _ in sizes
    ]
    active = list(range(len(sizes)))
    for i, doc in enumerate(documents(seed)):
        line = _record(doc, i, seed) + b"\n"
        n = len(doc.text.encode("utf-8"))
        for k in active:
            writers[k][1].write(line)
            st = stats[k]
            st["docs"] += 1
            st["lengths"].append(n)
            st["domain"][doc.domain] += n
            st["sources"][doc.source] += 1
            st["reused"] += n if doc.extra.get("pass") else 0
        text_bytes += n
        for k in [k for k in active if text_bytes >= sizes[k] * 1_000_000]:
            _close(writers[k])  # done: usable by others while the larger ones grow
            active.remove(k)
        if not active:
            break
    for k in active:  # the machine ran out of text (cannot happen while pools can be reused)
        _close(writers[k])
    if verbose:
        for (_mb, path), st in zip(targets, stats, strict=True):
            total = sum(st["domain"].values())
            lens = sorted(st["lengths"])
            print(
                f"{path}: {st['docs']:,} documents, {total / 1e6:.1f} MB of text, "
                f"{len(st['sources'])} sources"
            )
            print(
                "  domains by bytes: "
                + ", ".join(f"{d} {100 * b / total:.1f}%" for d, b in st["domain"].most_common())
            )
            print(
                f"  median {lens[len(lens) // 2]:,} B, under 500 B: "
                f"{100 * sum(x < 500 for x in lens) / len(lens):.1f}% of documents, "
                f"max {lens[-1]:,} B; reused text (pass >= 1): {100 * st['reused'] / total:.1f}%"
            )
            print(histogram(st["lengths"]))
    return [p for _, p in targets]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="/work/bench_data")
    ap.add_argument("--sizes", default="10,50,200", help="sizes in MB of text, comma-separated")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    build(Path(args.out), [float(x) for x in args.sizes.split(",")], args.seed)


if __name__ == "__main__":
    sys.exit(main())
