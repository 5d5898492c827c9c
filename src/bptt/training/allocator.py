"""Keep freed memory in the process, so a training step does not page-fault on its own temporaries.

A training step allocates the same large temporaries (gate activations, adjoints,
logits) every time and frees them at the end. glibc serves blocks above its mmap
threshold with fresh ``mmap`` calls and hands the top of its heap back to the
kernel once more than its trim threshold is free, so the next step's arrays are
new pages that the kernel must fault in and zero one 4 KiB page at a time. On the
benchmark machine (a KVM guest) that was half of an Elman step at H = 128, B = 32,
T = 25 (2.8 → 1.5 ms) and 10% at H = 1024, B = 64, T = 64 (164 → 149 ms); PyTorch's
step, whose allocator keeps its memory, did not change.

:func:`retain_freed_memory` sets two glibc options (``mallopt``), process-wide:

* ``M_MMAP_THRESHOLD`` = 32 MiB (glibc's largest): blocks up to that size come from
  the heap, where freed memory can be reused, instead of a fresh mapping each time;
* ``M_TRIM_THRESHOLD`` = ``keep_bytes``: up to that much free memory stays at the top
  of the heap instead of being returned to the kernel.

Resident memory then stays near a step's high-water mark (the next step needs it
anyway) plus at most ``keep_bytes``; arrays larger than 32 MiB are still mapped
and unmapped each time. ``bptt train`` (:class:`bptt.train.Trainer`) calls it;
call it yourself when running steps through the Python API. Elsewhere (macOS,
Windows, musl) it does nothing and returns ``False``.
"""

from __future__ import annotations

import ctypes
import platform
import sys

__all__ = ["retain_freed_memory"]

_M_TRIM_THRESHOLD = -1  # glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 32 * 2**20  # the largest value glibc accepts on 64-bit systems
_INT_MAX = 2**31 - 1


def retain_freed_memory(keep_bytes: int = 256 * 2**20) -> bool:
    """Ask glibc to reuse freed memory rather than return it to the kernel; ``True`` if it agreed.

    Parameters
    ----------
    keep_bytes : int
        Free memory the heap may keep at its top (glibc's trim threshold).

    Raises
    ------
    ValueError
        If ``keep_bytes`` is not an integer in ``[0, 2**31 − 1]``.
    """
    if isinstance(keep_bytes, bool) or not isinstance(keep_bytes, int) or not 0 <= keep_bytes <= _INT_MAX:
        raise ValueError(f"retain_freed_memory: keep_bytes must be an integer in [0, {_INT_MAX}], got {keep_bytes!r}")
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, keep_bytes) == 1
