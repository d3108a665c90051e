"""Keep freed memory in the process for the next batch, instead of handing it back to the kernel.

glibc's ``malloc`` serves large blocks (above 128 KiB at first, a threshold it raises as blocks
are freed) with ``mmap`` and unmaps them on ``free``, and it trims the heap's free top above a
second threshold. The inference front end allocates the same tens of megabytes for every batch
(256 frames: 15 MB of disk windows, 15 MB of their spectra, 6 MB of crops, at 1,024 frames four
times that), so a batch's buffers often came back as fresh pages, which the kernel maps and
zeroes one 4 KiB page at a time on first touch: up to 65 page faults per frame, and up to
40 % of the front end's time on 2 cores. How often depends on where glibc's adaptive threshold
settles in each process: of three processes with its defaults two faulted (115,000 and
134,000 times per 2,048 frames; front end 5,730 and 5,211 frames/s), one did not (344; 9,695);
with the thresholds raised none faulted (front end 6,100 to 9,034 frames/s on a noisy machine).
PyTorch's own advice for CPU inference is a caching allocator (jemalloc, tcmalloc) preloaded;
raising glibc's two thresholds does the same for these sizes and needs nothing installed.

:func:`keep_freed_memory` runs when ``stem_loop`` is imported, like the OpenMP wait policy. The
process then keeps up to :data:`TRIM_THRESHOLD_BYTES` of freed heap for reuse. It does nothing
where the C library is not glibc, where ``STEM_LOOP_MALLOC=system``, or where glibc's own
settings were given (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, or malloc tunables in
``GLIBC_TUNABLES``): an explicit value wins.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Mapping
from pathlib import Path

#: Environment variable: ``system`` leaves glibc's allocator settings alone.
MALLOC_ENV = "STEM_LOOP_MALLOC"
#: Blocks up to this size come from the heap and are reused (a 1,024-frame batch's largest
#: tensor is about 60 MB).
MMAP_THRESHOLD_BYTES = 256 * 1024 * 1024
#: Free memory at the heap's top kept before any is given back.
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024
# mallopt's parameter numbers (<malloc.h>)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_GLIBC_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def _glibc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def _start_environment() -> dict[str, str]:
    """The environment this process was started with (``/proc/self/environ``): glibc reads its
    settings from that, not from later changes to ``os.environ`` (Dask's nanny, for one, puts
    ``MALLOC_TRIM_THRESHOLD_`` there for the workers it spawns)."""
    try:
        raw = Path("/proc/self/environ").read_bytes()
    except OSError:
        return dict(os.environ)
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def settings_given(environ: Mapping[str, str] | None = None) -> str | None:
    """Why the allocator is left alone: the variable that says so, or None.

    ``environ`` (default: ``STEM_LOOP_MALLOC`` from ``os.environ``, glibc's settings from the
    environment the process started with) is where to look.
    """
    own = os.environ if environ is None else environ
    glibc = _start_environment() if environ is None else environ
    if own.get(MALLOC_ENV, "").strip().lower() == "system":
        return MALLOC_ENV
    for name in _GLIBC_SETTINGS:
        if name in glibc:
            return name
    if "glibc.malloc." in glibc.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    return None


def keep_freed_memory(environ: Mapping[str, str] | None = None) -> bool:
    """Raise glibc's mmap and trim thresholds (:data:`MMAP_THRESHOLD_BYTES`,
    :data:`TRIM_THRESHOLD_BYTES`) for this process.

    Returns
    -------
    bool
        Whether both were set: False off glibc, where glibc refused a value, or where
        :func:`settings_given` names a setting that wins.
    """
    if settings_given(environ) is not None:
        return False
    libc = _glibc()
    if libc is None:
        return False
    mmap_set = libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    trim_set = libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    return mmap_set and trim_set
