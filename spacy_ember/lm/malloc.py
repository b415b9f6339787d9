"""Keep glibc from handing memory back to the kernel between LM batches on CPU.

glibc's malloc adapts its mmap threshold to the last large block freed. The probes'
arrays, freed between two LM batches, move it, so the next LM batch gets its tensors from
fresh mmaps that the kernel zeroes again, and the heap top is trimmed after every batch.
Measured on CoNLL-2003 documents (Gemma-3-270M, 2 cores): the LM pass ran 4-6% slower
after `ember_ner` than after itself; with the thresholds below the gap is gone and the LM
pass alone is no slower. The cost: the process keeps up to `HOLD_BYTES` of freed memory.
"""

import ctypes
import os

M_TRIM_THRESHOLD = -1  # from glibc's malloc.h
M_MMAP_THRESHOLD = -3
HOLD_BYTES = 1 << 30
OPT_OUT_ENV = "SPACY_EMBER_GLIBC_MALLOC"  # "default": leave glibc's settings alone

_applied = False


def hold_freed_memory() -> bool:
    """Fix glibc's mmap and trim thresholds at `HOLD_BYTES`, once per process.

    Returns whether the thresholds are set: False on other C libraries (macOS, musl,
    Windows) and when the environment variable SPACY_EMBER_GLIBC_MALLOC is "default".
    """
    global _applied
    if _applied:
        return True
    if os.environ.get(OPT_OUT_ENV, "").lower() == "default":
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (raises AttributeError off glibc)
        mallopt = libc.mallopt
    except (AttributeError, OSError):
        return False
    _applied = bool(mallopt(M_MMAP_THRESHOLD, HOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, HOLD_BYTES)
    )
    return _applied
