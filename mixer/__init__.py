"""mixer: data curation for LLM pretraining, after the OLMo 2 recipe."""

__version__ = "0.1.0"
