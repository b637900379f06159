"""mixer: data curation for LLM pretraining, after the OLMo 2 recipe."""

import os

# OpenBLAS (loaded with numpy) starts a thread per core that spins for about 0.1 s of CPU in
# every process that imports it, and nothing in mixer calls a threaded BLAS routine (the
# language tagger's product is scipy's sparse one; the trainer's is torch's). Every worker
# process would pay that spin. A value set by the user wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
