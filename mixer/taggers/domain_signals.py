"""Rule-based domain signals: counts of regular-expression markers, normalised per word/line.

Each signal is a pure function of the text. They are computed for a whole batch at once with
Arrow's RE2 kernels (`count_substring_regex`), so a batch costs one C++ pass per pattern;
`text_signals(text)` gives the same values for one document.

Signals (all floats unless said):
  words, lines                 whitespace words, non-empty lines (ints)
  latex_density                LaTeX commands (\\frac, \\begin, ...) and $ delimiters per word
  math_symbol_density          operators and math symbols (= + * / ^ < > ± × ÷ ≤ ≥ ∑ ∫ √ ...) per word
  math_word_density            mathematical vocabulary (theorem, integer, solve, ...) per word
  code_density                 share of non-empty lines that look like code
  code_punct_density           code punctuation ({ } ( ) ; [ ]) per character
  code_keyword_density         the best-matching language's keyword/syntax markers per line
  code_lang                    guessed language (python, javascript, ...) or "" (a string)
  qa_markers                   question/answer thread markers (Q:, Answer:, votes, asked, ...) (int)
  instruction_markers          instruction/response markers (### Instruction, User:, imperatives) (int)
  citation_markers             citations and paper structure ([12], et al., Abstract, doi) (int)
  encyclopedic_markers         encyclopedia phrasing (is a ..., (born, See also, References) (int)
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Patterns are RE2 (Arrow); \b is an ASCII word boundary there.
# Consumes the whole line: Arrow restarts the search right after a match and RE2 then
# treats that point as a line start, so a pattern ending mid-line could count a line twice.
NONEMPTY_LINE = r"(?m)^[ \t\r\f\v]*\S.*"
LATEX = (
    r"\\(?:frac|dfrac|tfrac|sqrt|sum|int|iint|oint|prod|lim|infty|alpha|beta|gamma|delta|"
    r"epsilon|varepsilon|theta|lambda|mu|pi|sigma|omega|phi|cdot|cdots|ldots|dots|times|div|"
    r"pm|leq?|geq?|neq|approx|equiv|sim|begin|end|left|right|mathbf|mathrm|mathbb|mathcal|"
    r"operatorname|text|binom|partial|nabla|in|notin|subset|subseteq|cup|cap|forall|exists|"
    r"to|rightarrow|Rightarrow|iff|quad|qquad|hat|bar|vec|overline|log|ln|sin|cos|tan|exp|"
    r"min|max|mod|pmod|circ|prime|label|ref|eqref|cite|section|emph|textbf|item)\b|"
    r"\\[\[\]()]|\$"
)
MATH_SYMBOL = r"[=+*/^<>±×÷≤≥≠≈∑∏∫√∞∂∇∈∉⊂⊆∪∩→⇒⇔∀∃πθαβγδλμσ]"
MATH_WORD = (
    r"(?i)\b(?:theorem|lemma|proof|corollary|equation|equations|integer|integers|polynomial|"
    r"derivative|integral|matrix|matrices|vector|prime|primes|fraction|probability|"
    r"solve|solution|calculate|compute|sum|product|divisible|remainder|modulo|square root|"
    r"real numbers|function f|let x|let n|therefore|hence|q\.e\.d)\b"
)
CODE_LINE = (
    r"(?m)^\s*(?:def |class |import |from \S+ import |#include|#define|function\b|return\b|"
    r"for\s*\(|if\s*\(|while\s*\(|for \w+ in |if .*:\s*$|elif |else\s*[:{]|try:|except\b|"
    r"var |let |const |public |private |protected |static |package |fn |func |impl |"
    r"use |SELECT |INSERT |CREATE TABLE|print\(|console\.|System\.out|std::|@\w+|"
    r"[}\])]+[;,]?\s*$|<\/?\w+[^>]*>\s*$|[\w.\[\]'\"]+\s*[-+*/|&]?=\s*\S)|"
    r"[;{]\s*$|\S\s{2,}(?:#|//)|^\s*#(?:\s|$)|\)\s*(?:->\s*\S+\s*)?:\s*$"
)
CODE_PUNCT = r"[{}();\[\]]"
QA = (
    r"(?im)^\s*(?:q|a|question|answer|answers|best answer|accepted answer|comments?)\s*(?:\d+\s*)?[:.)]|"
    r"\b(?:asked|answered|upvoted?|downvoted?|votes?|accepted answer|stack ?exchange|"
    r"stack ?overflow|duplicate of|edited)\b"
)
INSTRUCTION = (
    r"(?im)^\s*(?:#+\s*)?(?:instruction|instructions|response|input|output|user|assistant|"
    r"human|system|prompt|completion|task|context)\s*:|"
    r"(?im)^\s*(?:write|explain|summari[sz]e|translate|classify|generate|describe|list|"
    r"give|rewrite|create|compose|answer the following|provide|identify|paraphrase)\b"
)
CITATION = (
    r"\[\d+(?:\s*[,–-]\s*\d+)*\]|\bet al\.|\(\s*[A-Z][A-Za-z-]+(?: et al\.| and [A-Z][A-Za-z-]+)?,? "
    r"(?:19|20)\d\d[a-z]?\s*\)|\bdoi\b|arXiv|(?m)^\s*(?:abstract|introduction|related work|"
    r"methods?|results|conclusions?|references|acknowledg(?:e)?ments)\s*$|\b(?:Abstract|"
    r"we propose|in this paper|our results|we show that|experiments?|dataset)\b"
)
ENCYCLOPEDIC = (
    r"^(?:[^\n]{0,80}\n+)?[^\n.]{0,120}?\b(?:is|was|are|were) (?:an?|the) [^\n.]{0,60}?\b(?:in|of|from|by|born)\b|"
    r"\b(?:north|south|east|west|centr)(?:ern|al)? part of\b|\b(?:is based on|was rebuilt|notable people)\b|"
    r"\(born |\((?:c\. )?\d{3,4}\s*[–-]\s*\d{3,4}\)|"
    r"(?m)^\s*(?:see also|external links|references|further reading|history|etymology|"
    r"geography|early life|career|climate|culture|economy|demographics)\s*$|\b(?:is located|"
    r"was founded|was born|is a species|census|population of|the population|capital of|"
    r"century|part of the|square (?:kilomet|mile)|is named after|known for)\b"
)

# Reference text (manuals, API documentation, dictionaries): section headings of man pages and
# docstrings, option lines, info-manual definitions, definitional phrasing.
REFERENCE = (
    r"(?m)^[ \t]*(?:NAME|SYNOPSIS|DESCRIPTION|OPTIONS|EXIT STATUS|RETURN VALUES?|ERRORS|"
    r"ENVIRONMENT|FILES|EXAMPLES?|SEE ALSO|AUTHORS?|BUGS|NOTES|COPYRIGHT|CONFORMING TO|STANDARDS|"
    r"Parameters|Returns|Yields|Raises|See Also|Notes|Examples|Attributes|Arguments|Args|"
    r"Keyword Arguments|Return type|Methods|Fields|Variants|Panics|Safety|Errors|Usage)[ \t]*:?[ \t]*$|"
    r"(?m)^[ \t]*-{1,2}[A-Za-z0-9][\w-]*(?:[ =,\[][^\n]*)?$|"
    r"(?m)^[ \t]*(?:-- (?:Function|Variable|Macro|Command|Special Form|User Option|Data Type):|"
    r"\*Note [^:\n]+::)|:param \w+:|:returns?:|:rtype:|:raises? |"
    r"(?m)^[ \t]*(?:Returns?|Specifies|Sets|Gets|Defaults to|Raises)\b|"
    r"\b(?:[Dd]efault(?:s to| value is| is)|[Ii]f (?:set|true|given|specified|omitted|non-zero)|"
    r"is (?:an? |the )?(?:alias|synonym) (?:for|of)|[Tt]his (?:function|method|option|command|"
    r"macro|variable|field|flag|parameter|attribute|value|type|trait|struct|module)\b)|"
    r"\A[^\n]{1,80}(?:\([^\n)]*\)| - | — |\([0-9][a-z]?\))[^\n]*\n"
)
# Narrative, personal prose of web pages, blogs, tutorials and release notes.
NARRATIVE = (
    r"\b(?:[Yy]ou|[Yy]our|[Yy]ou're|[Yy]ou'll|[Ww]e|[Ww]e'll|[Ww]e're|[Ww]e've|[Ll]et's|[Oo]ur|"
    r"I|I'm|I've|I'd|[Mm]y|[Hh]ere's|[Tt]hat's|[Ii]t's|[Dd]on't|[Cc]an't|[Ww]on't)\b|"
    r"https?://|\bListing \d|(?i)\b(?:click|blog|posted|comments?|subscribe|newsletter|"
    r"released?|release notes|download|install(?:ation)?|thanks to|contributors?|chapter)\b"
)
# Questions: lines ending in a question mark, and question openings.
QUESTION = (
    r"(?m)\?[\"')\]]*[ \t]*$|(?im)^[ \t]*(?:\d+(?:\.\d+)*[.)]?[ \t]*)?(?:q\d*[:.)][ \t]*)?"
    r"(?:how|why|what|when|where|which|who|can|could|does|do|is|are|should|will|would|"
    r"am i|is there|is it)\b[^\n]*\?"
)

CODE_LANGS: dict[str, str] = {
    "python": r"(?m)^\s*(?:def \w+\(|import \w+|from \w[\w.]* import|class \w+[(:]|@\w+)|\bself\.|\belif\b|"
    r"\b(?:is|=|==) None\b|None[,)]|print\(|\bTrue\b|\bFalse\b|\braise \w|^\s*return\b|'''|\"\"\"",
    "javascript": r"\bfunction\s*\w*\(|\bconst \w+ =|\blet \w+ =|=>|console\.log|document\.|\brequire\(",
    "java": r"\bpublic (?:static )?(?:class|void|int|String)\b|System\.out|\bprivate \w+ \w+;|@Override",
    "c": r"#include\s*<\w+\.h>|\bprintf\(|\bmalloc\(|\bint main\(",
    "cpp": r"#include\s*<\w+>|std::|\bcout\b|\btemplate\s*<|::\w+\(",
    "go": r"\bfunc \w*\(|\bpackage \w+|:=|\bfmt\.",
    "rust": r"\bfn \w+|\blet mut\b|\bimpl\b|println!|::new\(",
    "sql": r"(?i)\bselect\b.+\bfrom\b|\binsert into\b|\bcreate table\b|\bwhere\b.+=",
    "shell": r"(?m)^\s*(?:\$ |sudo |apt(?:-get)? |echo |export |cd |ls |pip install )|#!/bin/",
    "html": r"</?(?:div|span|html|body|head|p|a|script|style|table|tr|td|ul|li)\b[^>]*>",
}
CODE_LANG_MIN_DENSITY = 0.2

PATTERNS: dict[str, str] = {
    "latex": LATEX,
    "math_symbol": MATH_SYMBOL,
    "math_word": MATH_WORD,
    "code_line": CODE_LINE,
    "code_punct": CODE_PUNCT,
    "qa": QA,
    "instruction": INSTRUCTION,
    "citation": CITATION,
    "encyclopedic": ENCYCLOPEDIC,
    "reference": REFERENCE,
    "narrative": NARRATIVE,
    "question": QUESTION,
}


def _texts(texts) -> pa.Array:
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks() if texts.num_chunks != 1 else texts.chunk(0)
    elif not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), type=pa.string())
    return texts.fill_null("")


def _count(texts: pa.Array, pattern: str) -> np.ndarray:
    return (
        pc.count_substring_regex(texts, pattern).to_numpy(zero_copy_only=False).astype(np.float64)
    )


def _word_count(texts: pa.Array) -> np.ndarray:
    """Whitespace-separated words (Arrow's split is ~2x faster than counting \\S+ matches)."""
    trimmed = pc.utf8_trim_whitespace(texts)
    pieces = pc.list_value_length(pc.utf8_split_whitespace(trimmed)).to_numpy(zero_copy_only=False)
    empty = pc.equal(pc.binary_length(trimmed), 0).to_numpy(zero_copy_only=False)
    return np.where(empty, 0, pieces).astype(np.float64)


_NUMBERED = r"(?:q(?:uestion)?\s*\d*\s*[:.)]|\d+(?:\.\d+)*[.):]?)"
_QWORD = (
    r"(?:how|why|what|when|where|which|who|whom|whose|can|could|does|do|did|is|are|was|were|"
    r"should|shall|will|would|may|might|must|has|have|am|isn't|doesn't|don't|can't|won't)\b"
)
_NO_BLANK = r"(?:[^?\n]|\n[ \t]*[^\s?])"  # text of one paragraph (line breaks, no blank line)
FIRST_QUESTION = (
    rf"(?i)\A\s*(?:(?:{_NUMBERED}\s*)?{_QWORD}{_NO_BLANK}{{0,250}}|{_NUMBERED}\s+{_NO_BLANK}{{1,300}})"
    r"\?[\"')\]]*[ \t]*(?:\n|\z)"
)


def _first_line_question(texts: pa.Array) -> np.ndarray:
    """1 when the text opens with a question (a first line that starts like an English
    question, possibly numbered or after "Q:", and ends in '?'), else 0: the shape of a
    question-and-answer item."""
    return (
        pc.match_substring_regex(texts, FIRST_QUESTION)
        .to_numpy(zero_copy_only=False)
        .astype(np.int64)
    )


def batch_signals(texts) -> dict[str, np.ndarray]:
    """Every signal for every text of a batch (Arrow array, chunked array or list of str)."""
    texts = _texts(texts)
    words = _word_count(texts)
    lines = _count(texts, NONEMPTY_LINE)
    chars = pc.utf8_length(texts).to_numpy(zero_copy_only=False).astype(np.float64)
    c = {name: _count(texts, pattern) for name, pattern in PATTERNS.items()}
    per_word = np.maximum(words, 1.0)
    code_density = np.minimum(c["code_line"] / np.maximum(lines, 1.0), 1.0)
    lang_counts = np.stack([_count(texts, p) for p in CODE_LANGS.values()], axis=1)
    keyword_density = lang_counts.max(axis=1) / np.maximum(lines, 1.0)
    names = np.array(list(CODE_LANGS), dtype=object)
    code_lang = np.where(
        (code_density >= CODE_LANG_MIN_DENSITY) & (lang_counts.max(axis=1) > 0),
        names[lang_counts.argmax(axis=1)],
        "",
    )
    return {
        "words": words.astype(np.int64),
        "lines": lines.astype(np.int64),
        "latex_density": c["latex"] / per_word,
        "math_symbol_density": c["math_symbol"] / per_word,
        "math_word_density": c["math_word"] / per_word,
        "code_density": code_density,
        "code_punct_density": c["code_punct"] / np.maximum(chars, 1.0),
        "code_keyword_density": keyword_density,
        "code_lang": code_lang,
        "qa_markers": c["qa"].astype(np.int64),
        "instruction_markers": c["instruction"].astype(np.int64),
        "citation_markers": c["citation"].astype(np.int64),
        "encyclopedic_markers": c["encyclopedic"].astype(np.int64),
        "reference_markers": c["reference"].astype(np.int64),
        "narrative_density": c["narrative"] / per_word,
        "question_markers": c["question"].astype(np.int64),
        "first_line_question": _first_line_question(texts),
    }


def text_signals(text: str) -> dict:
    """The signals of one document (same values as `batch_signals`)."""
    out = batch_signals([text])
    return {k: (v[0].item() if hasattr(v[0], "item") else v[0]) for k, v in out.items()}
