"""What `import mixer` sets for the process: Arrow's allocator and OpenBLAS's threads, each
left alone when the user set it."""

import os
import platform
import subprocess
import sys

import pyarrow as pa
import pytest

PROBE = (
    "import os, mixer, pyarrow as pa; "
    "print(pa.default_memory_pool().backend_name, os.environ['OPENBLAS_NUM_THREADS'])"
)


def _probe(**env: str) -> list[str]:
    clean = dict(os.environ)
    clean.pop("ARROW_DEFAULT_MEMORY_POOL", None)
    clean.pop("OPENBLAS_NUM_THREADS", None)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=clean | env, capture_output=True, text=True, check=True
    )
    assert out.stderr == ""
    return out.stdout.split()


@pytest.mark.skipif(
    "jemalloc" not in pa.supported_memory_backends()
    or not sys.platform.startswith("linux")
    or platform.machine() != "x86_64",
    reason="mixer asks for jemalloc on x86-64 Linux only",
)
def test_mixer_chooses_jemalloc_and_one_blas_thread():
    assert _probe() == ["jemalloc", "1"]


def test_values_the_user_set_win():
    assert _probe(ARROW_DEFAULT_MEMORY_POOL="system", OPENBLAS_NUM_THREADS="2") == ["system", "2"]
