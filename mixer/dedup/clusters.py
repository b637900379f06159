"""The keep rule: which member of a cluster is kept (applied by mixer.dedup.stages)."""

from __future__ import annotations

KEEP_RULES = ("quality", "longest", "shortest", "first", "last")
DEFAULT_KEEP_RULE = "quality,longest,first"


def parse_keep_rule(rule: str) -> list[str]:
    parts = [p.strip() for p in rule.split(",") if p.strip()]
    bad = [p for p in parts if p not in KEEP_RULES]
    if not parts or bad:
        raise ValueError(f"keep rule {rule!r}: use a comma list of {', '.join(KEEP_RULES)}")
    return parts
