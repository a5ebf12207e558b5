"""glibc heap tuning for the ``stt`` command: an application's choice, never the library's,
and never part of a headline figure. ``stt`` tunes its heap for its own commands but not for
``stt bench`` (unless ``stt --heap-tuning bench``), and the suite's headline processes run with
these settings removed from their environment (``python -m stt_bench --tuned`` adds a labelled
column with them).

A receiver of large messages allocates one per message. With glibc's default dynamic trim
threshold, memory freed in bursts at the top of the heap goes back to the kernel and is faulted
in again for the next burst (the library keeps its own bursts out of that: see
``stt_proto/streams/recv.py``; an application's own allocations may not). Keeping a pad at the
top of the heap (what ``MALLOC_TOP_PAD_`` / ``MALLOC_TRIM_THRESHOLD_`` do from the environment)
removes that. The settings are also exported as those two environment variables, which glibc
reads at startup, so that processes this one spawns (benchmark peers, ``--workers``) run under
them too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
TRIM_THRESHOLD = 256 * 1024 * 1024
TOP_PAD = 64 * 1024 * 1024


def tune_heap() -> bool:
    """Keep freed heap memory for reuse instead of trimming it; True if applied (glibc only)."""
    if "MALLOC_TRIM_THRESHOLD_" in os.environ or "MALLOC_TOP_PAD_" in os.environ:
        return True  # the user chose already
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): nothing to tune
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if not (mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) and mallopt(M_TOP_PAD, TOP_PAD)):
        return False
    # for the processes spawned from here on (glibc applies these when it starts)
    os.environ["MALLOC_TRIM_THRESHOLD_"] = str(TRIM_THRESHOLD)
    os.environ["MALLOC_TOP_PAD_"] = str(TOP_PAD)
    return True


def trim_heap() -> bool:
    """Hand every whole free page of the heap back to the kernel (glibc ``malloc_trim(0)``), so
    that RSS counts memory in use rather than memory freed and kept for reuse; True if done."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    trim(0)
    return True
