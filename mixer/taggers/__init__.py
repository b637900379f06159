"""Registry of taggers by name. Modules are imported lazily so a tagger's heavy dependencies
load only when it is used."""

from __future__ import annotations

import importlib

from mixer.errors import MixerError
from mixer.taggers.base import Tagger

TAGGERS: dict[str, str] = {
    "gopher": "mixer.taggers.gopher:GopherTagger",
    "c4": "mixer.taggers.c4:C4Tagger",
    "fineweb": "mixer.taggers.fineweb:FineWebTagger",
    "lang": "mixer.taggers.lang:LangTagger",
    "quality": "mixer.taggers.quality:QualityTagger",
    "tokens": "mixer.taggers.tokens:TokensTagger",
    "domain": "mixer.taggers.domain:DomainTagger",
    "decon": "mixer.taggers.decon:DeconTagger",
}


def tagger_class(name: str) -> type[Tagger]:
    if name not in TAGGERS:
        raise MixerError(f"unknown tagger {name!r} (known: {', '.join(TAGGERS)})")
    module, cls = TAGGERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_tagger(name: str, settings: dict | None = None) -> Tagger:
    return tagger_class(name)(**(settings or {}))
