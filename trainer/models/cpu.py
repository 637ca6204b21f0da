"""What training on a CPU needs from the host: whether it multiplies bf16 natively, and a heap
that keeps what it frees.

**The heap.** glibc's malloc hands a block above its mmap threshold (dynamic, 128 KiB rising to
at most 32 MiB) straight to ``mmap`` and gives it back to the kernel when freed, and trims the
heap's top once more than twice that is free. A training step allocates and frees tensors of
megabytes and of a different size every step (a padding-free row has its own length), so the
process maps, touches and unmaps the same memory again and again: every first touch of a page is
a page fault. On the virtual machines here that measured 18,700 minor faults a step in the small
SFT job (3.7 M parameters, 2,400-token rows), and several milliseconds for an ``exp`` over
[1,193, 2,048] logits that takes 1 ms on warm memory. ``keep_freed_memory`` sets a fixed 32 MiB
mmap threshold and a 1 GiB trim threshold with ``mallopt``, what ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` would do, from inside the process: the faults fell to a few hundred a
step, and glibc's defaults cost the small SFT job 10% of its real tokens/s and the tiny one 4%
(``bench/speed.py --only levers``; README, "Speed"). The cost is the one tcmalloc and jemalloc (what Intel's PyTorch guides preload for CPU
training) make too: memory a step freed stays with the process (up to 1 GiB free; blocks of 32 MiB
and more are still mapped apart and returned), for the rest of the process.
Other allocators than glibc's are left alone (``mallopt`` is glibc's).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt's parameter numbers (glibc's malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# 32 MiB is the most glibc accepts for the mmap threshold on 64-bit (HEAP_MAX_SIZE / 2)
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 1024 * 1024 * 1024
_DONE = {"kept": None}


def has_bf16_matmul() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX). Where it does, oneDNN's
    bf16 matmul ran 2.4x its fp32 here (420 vs 175 GFLOP/s on an AMD EPYC); where it does not,
    bf16 is emulated at about 1% of fp32's speed."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, hence getattr
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks for reuse instead of unmapping them (see the module's
    docstring); once per process. False, changing nothing, off glibc."""
    if _DONE["kept"] is None:
        _DONE["kept"] = _set_thresholds()
    return _DONE["kept"]


def _set_thresholds() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; both must take, or the heap keeps glibc's dynamic rules
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) & bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
