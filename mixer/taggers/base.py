"""The tagger interface: a named set of per-document features over Arrow batches.

A tagger turns a batch of documents (columns of DOCUMENT_SCHEMA) into a table with one row per
document, same order, and columns named "<tagger>__<feature>". The runner (mixer/tag.py) adds
the `id` column, parallelises over parts, caches and writes
attributes/<tagger>/<source>/part-NNNNN.parquet.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pyarrow as pa

from mixer.errors import MixerError


class Tagger:
    name: ClassVar[str] = ""
    # Every setting the tagger accepts, with its default. Recipes and `--set tagger.key=value`
    # may only set these keys.
    defaults: ClassVar[dict[str, Any]] = {}
    # Settings that name files (models, indexes): their content hash enters the cache key.
    file_settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, **settings: Any):
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            raise MixerError(
                f"unknown setting {self.name}.{unknown[0]} (known: {', '.join(sorted(self.defaults)) or 'none'})"
            )
        self.settings = {**self.defaults, **settings}

    def setup(self) -> None:
        """Load models or indexes. Called once per worker process before the first `tag`."""

    def tag(self, docs: pa.Table) -> pa.Table:
        """Features of each document of `docs`, one row each, columns '<name>__<feature>'."""
        raise NotImplementedError

    def fingerprint(self) -> dict:
        """What the output depends on besides the documents: settings and model file contents."""
        from mixer.io import file_sha256

        fp: dict[str, Any] = {"tagger": self.name, "version": getattr(self, "version", 1)}
        fp["settings"] = {k: v for k, v in sorted(self.settings.items())}
        for key in self.file_settings:
            path = self.settings.get(key)
            if path:
                try:
                    fp[f"{key}_sha256"] = file_sha256(path)
                except FileNotFoundError:
                    raise MixerError(f"{self.name}.{key}: file not found: {path}") from None
        return fp


def coerce_setting(value: str) -> Any:
    """Parse a `--set` value: ints, floats, booleans, null, else the string itself."""
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value
