"""Deduplication: exact, MinHash-LSH near-duplicates and repeated paragraphs (see docs/dedup.md)."""

from mixer.dedup.stage import run_dedup

__all__ = ["run_dedup"]
