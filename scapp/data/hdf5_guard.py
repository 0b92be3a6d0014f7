"""Read an HDF5 file's structure in a child process before scapp opens it.

The HDF5 C library trusts a file's metadata. Fuzzing scapp's readers with flipped bytes found a damaged h5ad whose
attribute sent the library into an endless loop while holding Python's lock: read in the app's process it would
freeze the server for every user, and other damage can crash the process outright. A child process that walks the
structure first (groups, attributes, string datasets such as cell and gene names, which use the same heap) takes
that risk instead: if it crashes or does not finish in :data:`TIMEOUT_S` seconds (plus :data:`PER_GB_S` per GB of
file), the file is refused as corrupt and nothing else is touched. Numeric data (the matrix) is not read here,
nor more than the first 100,000 names of a very long string dataset. Costs about 0.2 s per file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["PER_GB_S", "TIMEOUT_S", "preflight"]

TIMEOUT_S = 20.0  # for a small file; a large one gets PER_GB_S more per GB (slow disks, many names)
PER_GB_S = 10.0

# Runs in the child: only h5py, never scapp (fast to start). Errors are ignored; the reader reports them.
_WALK = r"""
import sys
import h5py

LIMIT = 2_000_000  # string datasets up to this many elements are read whole, longer ones their first HEAD
HEAD = 100_000

def walk(obj, depth):
    for key in list(obj.attrs.keys()):
        try:
            obj.attrs[key]
        except Exception:
            pass
    if isinstance(obj, h5py.Dataset):
        try:
            if obj.dtype.kind in "OSU":
                obj[()] if obj.size <= LIMIT or obj.ndim == 0 else obj[:HEAD]
        except Exception:
            pass
        return
    if depth < 32:
        for key in list(obj.keys()):
            try:
                walk(obj[key], depth + 1)
            except Exception:
                pass

try:
    f = h5py.File(sys.argv[1], "r")
except Exception:
    sys.exit(0)
with f:
    try:
        walk(f, 0)
    except Exception:
        pass
"""


def preflight(path: str | os.PathLike) -> str | None:
    """None when the HDF5 library reads the file's structure; otherwise why not, in words."""
    p = Path(path)
    try:
        timeout = TIMEOUT_S + PER_GB_S * p.stat().st_size / 1e9
    except OSError:
        timeout = TIMEOUT_S
    try:
        r = subprocess.run(
            [sys.executable, "-c", _WALK, str(p)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"the HDF5 library did not finish reading its structure within {timeout:.0f} s"
    except OSError:
        return None  # no child process possible here: read in-process as before
    if r.returncode < 0:
        try:
            name = signal.Signals(-r.returncode).name
        except ValueError:
            name = f"signal {-r.returncode}"
        return f"the HDF5 library crashed reading its structure ({name})"
    return None
