"""mixer: data curation for LLM pretraining, after the OLMo 2 recipe."""

import os
import sys

# OpenBLAS (loaded with numpy) starts a thread per core that spins for about 0.1 s of CPU in
# every process that imports it, and nothing in mixer calls a threaded BLAS routine (the
# language tagger's product is scipy's sparse one; the trainer's is torch's). Every worker
# process would pay that spin. A value set by the user wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# Arrow's allocator: jemalloc on x86-64 Linux, where the wheels ship it (not on ARM: a
# name Arrow lacks would print a warning in every process). With mimalloc, Arrow's
# default, memory freed by one Parquet writer is handed back to the OS and faulted in again,
# zeroed, by the next: writing a shard's 364 small per-source parts spent a fifth of its CPU
# zeroing pages (perf), and jemalloc's ingest took 8% less CPU there, 4% on one source
# (docs/bench_ingest.md, round 6). Read once, when pyarrow is first imported; a value set by
# the user wins.
if sys.platform.startswith("linux") and os.uname().machine == "x86_64":
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")

__version__ = "0.1.0"
