"""Deduplication: exact, MinHash-LSH near-duplicates and repeated paragraphs (see docs/dedup.md)."""

from mixer.dedup.stage import run_dedup
from mixer.dedup.stages import dedup_stages

__all__ = ["dedup_stages", "run_dedup"]
