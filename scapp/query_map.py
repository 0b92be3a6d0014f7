"""The UMAP of an annotated query, computed in its own process so results and downloads never wait for it.

A query's map is not part of any run folder (the same run annotates many queries), so it
is kept in a cache folder, one file per latent, named by a hash of its content: the same
query under the same run is mapped once, whatever page or session asks again. The child
process is ``python -m scapp umap LATENT.npy --out COORDS.npy`` (see :func:`run_map`),
which calls :func:`scapp.evaluate.embedding.umap_coords`, the same map Explore draws.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MapJob", "cache_dir", "map_job", "run_map"]

_VERSION = "1"  # part of the hash: bump when the map's parameters change
_PROCS: dict[str, subprocess.Popen] = {}  # children started by this process, polled so they never linger as zombies


def cache_dir() -> Path:
    """``$SCAPP_CACHE_DIR/query-maps``, else a per-user folder in the system's temporary directory."""
    base = os.environ.get("SCAPP_CACHE_DIR")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    root = Path(base) if base else Path(tempfile.gettempdir()) / f"scapp-cache-{uid}"
    return root / "query-maps"


@dataclass(frozen=True)
class MapJob:
    """One latent's map: its input, result, error and pid files in the cache folder."""

    folder: Path
    key: str

    @property
    def input_path(self) -> Path:
        return self.folder / f"{self.key}.latent.npy"

    @property
    def coords_path(self) -> Path:
        return self.folder / f"{self.key}.umap.npy"

    @property
    def error_path(self) -> Path:
        return self.folder / f"{self.key}.error.txt"

    @property
    def pid_path(self) -> Path:
        return self.folder / f"{self.key}.pid"

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.key}.log"

    def state(self) -> tuple[str, str | None]:
        """``("ready"|"running"|"failed"|"missing", error message or None)``."""
        if self.coords_path.exists():
            return "ready", None
        if self.error_path.exists():
            return "failed", self.error_path.read_text(errors="replace").strip() or "The map could not be computed."
        if not self.pid_path.exists():
            return "missing", None
        if self._alive():
            return "running", None
        if self.coords_path.exists():  # finished between the two looks
            return "ready", None
        return "failed", (f"The map process ended without a result (its log: {self.log_path}).")

    def _alive(self) -> bool:
        proc = _PROCS.get(self.key)
        if proc is not None:
            return proc.poll() is None
        try:
            pid = int(self.pid_path.read_text().strip())
            os.kill(pid, 0)
        except (ValueError, OSError):
            return False
        return True

    def coords(self) -> np.ndarray:
        """Cells × 2 coordinates (once :meth:`state` is ready)."""
        return np.load(self.coords_path, allow_pickle=False)

    def start(self) -> None:
        """Start the map process unless it is running or done; a failed map is tried again."""
        state, _ = self.state()
        if state in ("ready", "running"):
            return
        self.error_path.unlink(missing_ok=True)
        with open(self.log_path, "ab") as log:
            proc = subprocess.Popen([sys.executable, "-m", "scapp", "umap", str(self.input_path), "--out",
                                     str(self.coords_path)], stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                    start_new_session=True, cwd=str(Path(__file__).resolve().parents[1]))
        _PROCS[self.key] = proc
        self.pid_path.write_text(str(proc.pid))


def map_job(latent: np.ndarray, *, folder: Path | None = None) -> MapJob:
    """The map job of ``latent`` (cells × k), with its input written to the cache folder once.

    Nothing is started: call :meth:`MapJob.start` (a page does so when it shows the map).
    """
    X = np.ascontiguousarray(np.asarray(latent, dtype=np.float32))
    h = hashlib.sha1(f"{_VERSION}:{X.shape}".encode())
    h.update(X.tobytes())
    job = MapJob(folder=Path(folder) if folder is not None else cache_dir(), key=h.hexdigest()[:20])
    if not job.input_path.exists():
        job.folder.mkdir(parents=True, exist_ok=True)
        _save_atomic(job.input_path, X)
    return job


def _save_atomic(path: Path, arr: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run_map(latent_path: str | os.PathLike, out: str | os.PathLike) -> Path:
    """UMAP of the array in ``latent_path`` written to ``out`` (what the child process runs).

    A failure is written next to ``out`` as ``<key>.error.txt`` (for :meth:`MapJob.state`) and re-raised.
    """
    from scapp.evaluate.embedding import umap_coords

    out = Path(out)
    err = out.with_name(out.name.replace(".umap.npy", "") + ".error.txt") if out.name.endswith(".umap.npy") \
        else out.with_suffix(".error.txt")
    try:
        X = np.load(latent_path, allow_pickle=False)
        coords = umap_coords(X)
        out.parent.mkdir(parents=True, exist_ok=True)
        _save_atomic(out, np.asarray(coords, dtype=np.float32))
    except Exception as e:
        err.write_text(f"The map could not be computed: {type(e).__name__}: {e}")
        raise
    return out
