"""Run folders on disk: the only code that knows their layout (architecture.md).

A run folder is read and written through a :class:`RunStore`, which has one typed
read/write pair per file; no other module names a file of a run. Every file is
written atomically (temporary file in the same folder, then ``os.replace``), so a
reader never sees half a file and a crash never corrupts a finished run. Nothing
here unpickles: weights are safetensors, the rest is JSON, CSV or parquet.

Every reader raises :class:`~scapp.errors.RunError` naming the run and the file
when a file the run should have is missing or cannot be read, so the app and the
CLI show a sentence instead of a traceback. Readers of files that only some runs
have (an embedding, a protein recipe, files added after a run was trained) return
None when the file is absent.

Versions: ``FORMAT_VERSION`` is written into ``status`` and ``config``. A change of
the layout bumps it, and the readers keep opening folders of every earlier version
(``tests/fixtures/run_v1_logreg`` is a version-1 run checked in for that); a run of
a newer version is refused with a message to upgrade.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from scapp.errors import RunError, RunNotFoundError

FORMAT_VERSION = 1
STATES = ("queued", "running", "finished", "failed", "cancelled")
FINAL_STATES = ("finished", "failed", "cancelled")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")

_ART = "artifacts"
LAYOUT: dict[str, str] = {
    # what the job was asked to do, and on what
    "request": "request.json",  # a job queued by the app (TrainRequest)
    "config": "config.json",  # the request as run: resolved model options, preprocessing, device
    "data_info": "data.json",  # the training file (path, sha256), its cells, genes and classes
    "env": "env.json",  # package versions and device
    # progress
    "status": "status.json",
    "epochs": "metrics.jsonl",  # one line per epoch while training
    "log": "train.log",
    "timing": "timing.json",  # seconds per phase of a finished training, for time estimates (issue 11)
    "stop": "STOP",  # present: the user asked the job to stop
    "heartbeat": "heartbeat.json",  # rewritten every few seconds by the process that trains (issue 14)
    # what a query needs to be annotated
    "genes": "genes.txt",
    "labels": "labels.json",
    "recipe": "preprocess.json",
    "protein": "protein.json",  # multimodal runs only
    "weights": "model.safetensors",
    "weights_digest": f"{_ART}/weights.json",  # size and sha256 of the weights as saved: a damaged or swapped file
    "temperature": f"{_ART}/temperature.json",
    # results
    "metrics": "metrics.json",
    "predictions": "predictions.parquet",
    "confusion": f"{_ART}/confusion_test.csv",
    "per_class": f"{_ART}/per_class_test.csv",
    "reliability": f"{_ART}/reliability_test.json",
    "history": f"{_ART}/history.csv",
    "embedding": f"{_ART}/embedding.safetensors",  # models with a latent space only
    "explain": f"{_ART}/explain.safetensors",
    "markers": f"{_ART}/markers.csv",
    "dotplot": f"{_ART}/dotplot.csv",  # runs trained since the dot plot exists
    "global_importance": f"{_ART}/global_importance.csv",
    "reference_markers": f"{_ART}/reference_markers.csv",  # optional (scanpy may fail)
    # methods that denoise counts (ZiPo) only
    "denoise_cells": f"{_ART}/denoise_cells.parquet",
    "denoise_genes": f"{_ART}/denoise_genes.csv",
    "gene_programs": f"{_ART}/gene_programs.csv",
    # display maps computed on demand (``scapp map``): <kind>_<cells>.safetensors, with .running/.error beside
    "cell_map_log": f"{_ART}/map.log",
}
"""Every file of a run folder, relative to it (version ``FORMAT_VERSION``)."""
_CELL_MAP_KINDS = ("umap", "umap_proba")  # on the latent space / on the class probabilities
_MEMBERS = "members"  # an ensemble's member runs, one complete run folder each
_RESTORE = "restore the run folder from a copy, or train the run again"

HEARTBEAT_S = 5.0
"""Seconds between two heartbeats of a training process (``$SCAPP_HEARTBEAT_S`` overrides)."""
STALE_S = 30.0
"""A queued or running run whose last heartbeat is older than this many seconds reads as failed
(``$SCAPP_HEARTBEAT_STALE_S`` overrides). Six missed beats: a busy machine delays a beat, it does not skip six."""
STOPPED = ("The training process stopped without finishing (killed or crashed): its last heartbeat was {age:.0f} s "
           "ago. Start the run again; see {log} for its last lines.")


def runs_root() -> Path:
    """``$SCAPP_RUNS_DIR`` or ``./runs``, read at call time."""
    return Path(os.environ.get("SCAPP_RUNS_DIR", "runs")).resolve()


def is_safe_id(run_id: str) -> bool:
    return bool(_SAFE_ID.fullmatch(run_id)) and ".." not in run_id


def new_run_id(model: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{model}-{secrets.token_hex(3)}"


def _setting_hint(out: str | os.PathLike | None) -> str:
    return "choose another --out" if out is not None else "set $SCAPP_RUNS_DIR to a folder you can write to"


def check_run_target(out: str | os.PathLike | None = None, *, root: Path | None = None) -> None:
    """Refuse, before any work, a run folder that cannot be made: ``out`` exists and is not an empty folder, or
    it (or the runs root) lies under a file. Permissions are found out when the folder is made (:func:`create_run`)."""
    if out is not None:
        path = Path(out).resolve()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            msg = f"Run folder {path} already exists and is not an empty folder; choose another --out."
            raise RunError(msg)
    else:
        path = (root or runs_root()) / "x"
    blocker = next((p for p in path.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():
        raise RunError(f"Cannot create the run folder {path.parent if out is None else path}: {blocker} is a file, "
                       f"not a folder; {_setting_hint(out)}.")


def os_error_reason(e: OSError) -> str:
    """A few words on why a file operation failed, for a message a user can act on."""
    reasons = {errno.EACCES: "permission denied", errno.EPERM: "permission denied",
               errno.EROFS: "the file system is read-only", errno.ENOSPC: "the disk is full",
               errno.EDQUOT: "the disk quota is used up", errno.ENOTDIR: "a part of the path is a file, not a folder",
               errno.EEXIST: "a file of that name is in the way", errno.ENAMETOOLONG: "the name is too long"}
    return reasons.get(e.errno, (e.strerror or type(e).__name__).lower())


def create_run(model: str, *, out: str | os.PathLike | None = None, root: Path | None = None) -> Path:
    """Make an empty run folder. ``out`` may name it; an existing non-empty folder is refused, and a folder that
    cannot be made (no permission, under a file, read-only disk) is a ``RunError`` saying so."""
    check_run_target(out, root=root)
    path = Path(out).resolve() if out is not None else (root or runs_root()) / new_run_id(model)
    try:
        path.mkdir(parents=True, exist_ok=True)
        (path / _ART).mkdir(exist_ok=True)
    except OSError as e:
        where = f" ({e.filename})" if e.filename and str(e.filename) != str(path) else ""
        raise RunError(f"Cannot create the run folder {path}: {os_error_reason(e)}{where}; "
                       f"{_setting_hint(out)}.") from e
    return path


def resolve_run(ref: str | os.PathLike) -> Path:
    """A run given as a folder path or as an id under the runs root."""
    p = Path(ref)
    if p.is_dir():
        return p.resolve()
    if isinstance(ref, str) and is_safe_id(ref) and (runs_root() / ref).is_dir():
        return runs_root() / ref
    msg = f"No run folder at {ref!s}; give the path printed by 'scapp train' or a run id under {runs_root()}."
    raise RunNotFoundError(msg)


# -- atomic writers and plain readers --------------------------------------------------
def write_atomic(path: Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)`` then rename over ``path``: readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def _clean(o: Any) -> Any:
    """NaN/inf → null so the JSON is strict."""
    if isinstance(o, float):
        return o if np.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def write_json(path: Path, obj: Any) -> None:
    text = json.dumps(_clean(obj), indent=1, default=_json_default, allow_nan=False)
    write_atomic(path, lambda t: Path(t).write_text(text + "\n"))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as e:
        msg = f"{path} is unreadable ({e}); the run may be damaged."
        raise RunError(msg) from e


def write_text(path: Path, text: str) -> None:
    write_atomic(path, lambda t: Path(t).write_text(text))


def write_table(path: Path, df: pd.DataFrame) -> None:
    if str(path).endswith(".parquet"):
        write_atomic(path, lambda t: df.to_parquet(t, index=False))
    else:
        write_atomic(path, lambda t: df.to_csv(t, index=False))


def write_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    from safetensors.numpy import save_file

    write_atomic(path, lambda t: save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, t))


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    return load_file(str(path))


def append_jsonl(path: Path, obj: dict[str, Any]) -> None:
    """One event per line; a line is written with one ``write`` call, so readers see whole lines."""
    line = json.dumps(_clean(obj), default=_json_default, allow_nan=False) + "\n"
    with open(path, "a") as f:
        f.write(line)
        f.flush()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    out = []
    try:
        for line in Path(path).read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line being written right now
    except FileNotFoundError:
        pass
    return out


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid: int | None) -> bool:
    """Whether a process runs under ``pid``. A killed child of this process (the app starts the trainers) stays a
    zombie until it is reaped, and a zombie answers signal 0: on Linux its state in /proc says it is gone."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


def _env_seconds(name: str, default: float) -> float:
    try:
        v = float(os.environ.get(name, default))
    except ValueError:
        return default
    return v if v > 0 else default


def heartbeat_interval() -> float:
    """Seconds between heartbeats: ``$SCAPP_HEARTBEAT_S`` or :data:`HEARTBEAT_S`."""
    return _env_seconds("SCAPP_HEARTBEAT_S", HEARTBEAT_S)


def stale_after() -> float:
    """Seconds without a heartbeat after which a run reads as failed: ``$SCAPP_HEARTBEAT_STALE_S`` or
    :data:`STALE_S`."""
    return _env_seconds("SCAPP_HEARTBEAT_STALE_S", STALE_S)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _whole_safetensors(path: Path) -> bool:
    """Whether ``path`` is a complete safetensors file (its header reads and its tensors fill the file)."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            for k in f.keys():
                f.get_slice(k)
        return True
    except Exception:  # noqa: BLE001 - any failure to read it means it is not whole
        return False


def _one_line(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())


def _csv(dtype: dict[str, Any] | None = None) -> Callable[[Path], pd.DataFrame]:
    return lambda p: pd.read_csv(p, dtype=dtype)


def _json_object(p: Path) -> dict[str, Any]:
    d = json.loads(p.read_text())
    if not isinstance(d, dict):
        raise ValueError(f"expected a JSON object, found {type(d).__name__}")
    return d


# -- one run folder ------------------------------------------------------------------------
class RunStore:
    """One run folder: a typed read/write pair for each of its files (``LAYOUT``).

    ``RunStore(path)`` wraps a folder as it is (the engine writes into one that exists);
    :meth:`create` makes a new one and :meth:`open` finds an existing one by path or id.
    ``os.fspath(store)`` is its folder, so a store can be passed where a path is expected.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    @property
    def id(self) -> str:
        return self.path.name

    def __fspath__(self) -> str:
        return str(self.path)

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RunStore) and self.path == other.path

    def __hash__(self) -> int:
        return hash(self.path)

    @classmethod
    def create(cls, model: str, *, out: str | os.PathLike | None = None, root: Path | None = None) -> RunStore:
        """A new, empty run folder (see :func:`create_run`)."""
        return cls(create_run(model, out=out, root=root))

    @classmethod
    def open(cls, ref: str | os.PathLike) -> RunStore:
        """An existing run folder, given as a path or as a run id; ``RunNotFoundError`` otherwise, also for a
        folder that is not a run (:attr:`is_run`), e.g. a data folder given by mistake."""
        store = cls(resolve_run(ref))
        if not store.is_run:
            msg = (f"{store.path} is not a scapp run folder (it has no {LAYOUT['status']} or {LAYOUT['config']}); "
                   f"give the folder printed by 'scapp train' or a run id under {runs_root()}.")
            raise RunNotFoundError(msg)
        return store

    @property
    def is_run(self) -> bool:
        """Whether the folder holds a run made by scapp: it has a status, settings or a queued request, or it is
        a run just made (:func:`create_run`: nothing in it yet but the artifacts folder)."""
        if any(self._has(k) for k in ("status", "config", "request")):
            return True
        try:
            return [p.name for p in self.path.iterdir()] == [_ART] and (self.path / _ART).is_dir()
        except OSError:
            return False

    # -- plumbing --------------------------------------------------------------------------
    def _p(self, key: str) -> Path:
        return self.path / LAYOUT[key]

    def _has(self, key: str) -> bool:
        return self._p(key).is_file()

    def _missing(self, key: str) -> RunError:
        try:
            state = (self.status() or {}).get("state", "unknown")
        except RunError:
            state = "unknown"
        why = (f"the folder is incomplete (damaged, or copied only in part): {_RESTORE}" if state == "finished"
               else "it may not have got that far (still training, failed or stopped), or the folder is incomplete")
        return RunError(f"Run {self.id} has no {LAYOUT[key]} (state: {state}); {why}. Folder: {self.path}")

    def _read(self, key: str, load: Callable[[Path], Any], *, missing_ok: bool = False) -> Any:
        """``load(path)`` of a file; RunError naming run and file when it is missing (unless ``missing_ok``,
        then None) or cannot be read."""
        path = self._p(key)
        try:
            return load(path)
        except FileNotFoundError:
            if missing_ok:
                return None
            raise self._missing(key) from None
        except RunError:
            raise
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - any parse failure of a stored file means a damaged run
            msg = f"{LAYOUT[key]} of run {self.id} is unreadable ({_one_line(e)}); the run may be damaged."
            raise RunError(msg) from e

    def _read_json(self, key: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
        return self._read(key, _json_object, missing_ok=missing_ok)

    # -- request, config, data, environment --------------------------------------------------------
    def write_request(self, request: dict[str, Any]) -> None:
        """What the app asked for (``TrainRequest`` as a dict), read by the job process."""
        write_json(self._p("request"), request)

    def request(self) -> dict[str, Any]:
        return self._read_json("request")

    def write_config(self, config: dict[str, Any]) -> None:
        """The request as it runs: resolved model options, preprocessing, device; stamped with the format."""
        write_json(self._p("config"), {"format_version": FORMAT_VERSION, **config})

    def config(self, *, missing_ok: bool = False) -> dict[str, Any] | None:
        cfg = self._read_json("config", missing_ok=missing_ok)
        if cfg is not None and (cfg.get("format_version") or 1) > FORMAT_VERSION:
            msg = (f"Run {self.id} was written by a newer scapp (format {cfg['format_version']}); "
                   "upgrade scapp to use it.")
            raise RunError(msg)
        return cfg

    def write_data_info(self, info: dict[str, Any]) -> None:
        """The training data: path, sha256, cells, genes, class counts, read notes."""
        write_json(self._p("data_info"), info)

    def data_info(self) -> dict[str, Any]:
        return self._read_json("data_info")

    def write_env(self, env: dict[str, Any]) -> None:
        write_json(self._p("env"), env)

    def env(self) -> dict[str, Any]:
        return self._read_json("env")

    # -- what a query needs ----------------------------------------------------------------------
    def write_genes(self, genes: list[str]) -> None:
        """The genes the model reads, in column order (one per line)."""
        write_text(self._p("genes"), "".join(f"{g}\n" for g in genes))

    def genes(self) -> list[str]:
        return self._read("genes", lambda p: p.read_text().splitlines())

    def write_labels(self, classes: list[str], label_column: str) -> None:
        write_json(self._p("labels"), {"classes": list(classes), "label_column": label_column})

    def labels(self) -> dict[str, Any]:
        """``{"classes": [...], "label_column": ...}``."""
        d = self._read_json("labels")
        if not isinstance(d.get("classes"), list):
            raise RunError(f"{LAYOUT['labels']} of run {self.id} lists no classes; the run may be damaged.")
        return d

    def classes(self) -> list[str]:
        return list(self.labels()["classes"])

    def write_recipe(self, recipe: dict[str, Any]) -> None:
        """The fitted preprocessing (``Recipe.to_dict()``)."""
        write_json(self._p("recipe"), recipe)

    def recipe(self) -> dict[str, Any]:
        return self._read_json("recipe")

    def write_protein(self, recipe: dict[str, Any]) -> None:
        """The protein (ADT) preprocessing of a multimodal run (``ProteinRecipe.to_dict()``)."""
        write_json(self._p("protein"), recipe)

    def protein(self) -> dict[str, Any] | None:
        """None for an RNA-only run."""
        return self._read_json("protein", missing_ok=True)

    @property
    def weights_path(self) -> Path:
        return self._p("weights")

    @property
    def has_weights(self) -> bool:
        return self._has("weights")

    def write_weights(self, save: Callable[[str], None]) -> None:
        """``save(tmp_path)`` writes the model's safetensors (e.g. ``model.save_weights``); renamed when done. Its
        size and sha256 are kept beside it, so a truncated file or another run's weights are recognised."""
        path = self._p("weights")
        write_atomic(path, save)
        write_json(self._p("weights_digest"), {"bytes": path.stat().st_size, "sha256": _sha256(path)})

    def load_weights(self, load: Callable[[str], Any]) -> Any:
        """``load(path)`` of the weights (e.g. ``model.load_weights``), after checking them against the size and
        checksum recorded when they were saved (runs from before that are not checked). A missing, truncated,
        swapped or unreadable file is a ``RunError`` naming the file and what to do."""
        path = self._p("weights")
        name = LAYOUT["weights"]
        if not path.is_file():
            raise self._missing("weights")
        rec = self._read_json("weights_digest", missing_ok=True) or {}
        size = path.stat().st_size
        if (isinstance(rec.get("bytes"), int) and size != rec["bytes"]) or (
                rec.get("sha256") and _sha256(path) != rec["sha256"]):
            if _whole_safetensors(path):
                how = ("is not the file this run saved (a complete weights file, but another one: copied from "
                       "another run?)")
            elif isinstance(rec.get("bytes"), int) and size < rec["bytes"]:
                how = f"is truncated ({size:,} of the {rec['bytes']:,} bytes saved)"
            else:
                how = "is damaged (its checksum differs from the one saved with it)"
            raise RunError(f"{name} of run {self.id} {how}; {_RESTORE}. Folder: {self.path}")
        try:
            return load(str(path))
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - any failure to read the weights means a damaged file
            raise RunError(f"{name} of run {self.id} cannot be read ({_one_line(e)}): it is damaged or does not "
                           f"belong to this run; {_RESTORE}. Folder: {self.path}") from e

    def weights(self) -> dict[str, np.ndarray]:
        """The weights as arrays (checked as in :meth:`load_weights`)."""
        return self.load_weights(read_arrays)

    def write_temperature(self, temperature: float) -> None:
        write_json(self._p("temperature"), {"temperature": float(temperature)})

    def temperature(self) -> float:
        return self._read("temperature", lambda p: float(_json_object(p)["temperature"]))

    # -- progress ------------------------------------------------------------------------------
    def write_status(self, state: str, **fields: Any) -> dict[str, Any]:
        """Replace the status, keeping fields of the previous status that are not overridden."""
        if state not in STATES:
            raise ValueError(state)
        prev = self.status(check_alive=False) or {}
        status = {**prev, **fields, "state": state, "format_version": FORMAT_VERSION, "updated": now_iso(),
                  "heartbeat": time.time()}
        write_json(self._p("status"), status)
        return status

    def status(self, *, check_alive: bool = True) -> dict[str, Any] | None:
        """The run's status (None before the first is written). A queued or running run whose process has
        stopped beating (:meth:`heartbeat`) or has died reads as failed, with the reason; the file is left as it
        is (only reported), so a process that was merely slow reads as running again at its next beat."""
        st = self._read_json("status", missing_ok=True)
        if st is None:
            return None
        if (st.get("format_version") or 1) > FORMAT_VERSION:
            msg = f"Run {self.id} was written by a newer scapp (format {st['format_version']}); upgrade scapp."
            raise RunError(msg)
        if check_alive and st.get("state") in ("running", "queued"):
            beat = self.last_heartbeat()
            age = None if beat is None else time.time() - beat
            if age is not None and age > stale_after():
                st = {**st, "state": "failed", "error": STOPPED.format(age=age, log=LAYOUT["log"])}
            elif st.get("pid") and not _pid_alive(st["pid"]):
                st = {**st, "state": "failed",
                      "error": "The training process ended without finishing (killed, or the machine ran out of "
                               f"memory). Start the run again; see {LAYOUT['log']} for its last lines."}
        return st

    def beat(self) -> None:
        """Record that the process training this run is alive (now). Never makes the folder again once deleted."""
        if self.path.is_dir():
            write_json(self._p("heartbeat"), {"time": time.time(), "pid": os.getpid()})

    def last_heartbeat(self) -> float | None:
        """When the training process last beat (``time.time()``); None before its first beat (or for runs from
        before heartbeats, whose liveness is judged by their process id alone)."""
        try:
            d = json.loads(self._p("heartbeat").read_text())
            return float(d["time"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    @contextmanager
    def heartbeat(self, interval_s: float | None = None) -> Iterator[None]:
        """Beat every ``interval_s`` seconds (default :data:`HEARTBEAT_S`) from a background thread while the block
        runs, so a long step that reports nothing (Integrated Gradients, a big evaluation) still shows the
        process is alive, and a killed one (``kill -9``, an out-of-memory kill) is told from a live one within
        :data:`STALE_S` seconds, whatever became of its process id."""
        every = heartbeat_interval() if interval_s is None else interval_s
        done = threading.Event()

        def loop() -> None:
            while not done.wait(every):
                try:
                    self.beat()
                except Exception:  # noqa: BLE001 - a full disk must not kill the beat (nor the run) from here
                    pass

        self.beat()
        t = threading.Thread(target=loop, name=f"scapp-heartbeat-{self.id}", daemon=True)
        t.start()
        try:
            yield
        finally:
            done.set()
            t.join(timeout=every + 1)

    @property
    def has_status(self) -> bool:
        return self._has("status")

    def append_epoch(self, event: dict[str, Any]) -> None:
        """One line of the per-epoch log, readable while training goes on."""
        append_jsonl(self._p("epochs"), event)

    def epochs(self) -> list[dict[str, Any]]:
        """The per-epoch events so far (empty before the first); a line being written is skipped."""
        return read_jsonl(self._p("epochs"))

    @property
    def log_path(self) -> Path:
        """The training log (appended to by the job process and the logger)."""
        return self._p("log")

    def request_stop(self) -> None:
        """Ask the engine to stop at the next batch (it checks between batches)."""
        write_text(self._p("stop"), now_iso())

    def stop_requested(self) -> bool:
        return self._p("stop").exists()

    def stop_requested_at(self) -> float | None:
        """When the (first) stop was asked, as a ``time.time()``; None if it was not."""
        try:
            return self._p("stop").stat().st_mtime
        except FileNotFoundError:
            return None

    def write_timing(self, record: dict[str, Any]) -> None:
        """How long the training took, per phase, on which machine (``scapp.train.timing.timing_record``)."""
        write_json(self._p("timing"), record)

    def timing(self) -> dict[str, Any] | None:
        """None for runs trained before timings were kept, and for unfinished or stopped runs."""
        return self._read_json("timing", missing_ok=True)

    # -- results -------------------------------------------------------------------------------
    def write_metrics(self, metrics: dict[str, Any]) -> None:
        write_json(self._p("metrics"), metrics)

    def metrics(self, *, missing_ok: bool = False) -> dict[str, Any] | None:
        return self._read_json("metrics", missing_ok=missing_ok)

    def write_predictions(self, df: pd.DataFrame) -> None:
        """One row per training cell: ``cell_id, split, true, pred, confidence`` then ``p_<class>``."""
        write_table(self._p("predictions"), df)

    def predictions(self, columns: list[str] | None = None) -> pd.DataFrame:
        return self._read("predictions", lambda p: pd.read_parquet(p, columns=columns))

    @property
    def has_predictions(self) -> bool:
        return self._has("predictions")

    def write_confusion(self, matrix: pd.DataFrame) -> None:
        """Test-set confusion counts, true classes (index) × predicted classes (columns)."""
        write_table(self._p("confusion"), matrix.rename_axis("true").reset_index())

    def confusion(self) -> pd.DataFrame:
        return self._read("confusion", lambda p: pd.read_csv(p).set_index("true"))

    def write_per_class(self, df: pd.DataFrame) -> None:
        write_table(self._p("per_class"), df)

    def per_class(self) -> pd.DataFrame:
        return self._read("per_class", _csv())

    def write_reliability(self, reliability: dict[str, Any]) -> None:
        """Reliability-diagram bins on the test cells, ``{"before": ..., "after": ...}`` temperature scaling."""
        write_json(self._p("reliability"), reliability)

    def reliability(self) -> dict[str, Any]:
        return self._read_json("reliability")

    def write_history(self, df: pd.DataFrame) -> None:
        """The model's per-epoch history (one row per epoch; may be empty)."""
        write_table(self._p("history"), df)

    def history(self) -> pd.DataFrame:
        def load(p: Path) -> pd.DataFrame:
            try:
                return pd.read_csv(p)
            except pd.errors.EmptyDataError:  # a model without epochs
                return pd.DataFrame()

        return self._read("history", load)

    def write_embedding(self, embedding: np.ndarray) -> None:
        """Latent space of every training cell (rows as in the predictions)."""
        write_arrays(self._p("embedding"), {"embedding": np.asarray(embedding, dtype=np.float32)})

    def embedding(self) -> np.ndarray | None:
        """None for a model without a latent space."""
        arrays = self._read("embedding", read_arrays, missing_ok=True)
        return None if arrays is None else arrays["embedding"]

    @property
    def has_embedding(self) -> bool:
        return self._has("embedding")

    def write_explain(self, arrays: dict[str, np.ndarray]) -> None:
        """``class_scores`` (classes × features), ``global_importance``, and per-cell masks where the model has them."""
        write_arrays(self._p("explain"), arrays)

    def explain(self) -> dict[str, np.ndarray]:
        return self._read("explain", read_arrays)

    def write_markers(self, df: pd.DataFrame) -> None:
        """The model's per-class gene ranking: ``class, rank, gene, score``."""
        write_table(self._p("markers"), df)

    def markers(self) -> pd.DataFrame:
        return self._read("markers", _csv({"class": str, "gene": str}))

    def write_dotplot(self, df: pd.DataFrame) -> None:
        write_table(self._p("dotplot"), df)

    def dotplot(self) -> pd.DataFrame | None:
        """None for a run trained before the dot plot existed."""
        return self._read("dotplot", _csv({"class": str, "gene": str, "top_for": str}), missing_ok=True)

    def write_global_importance(self, df: pd.DataFrame) -> None:
        """``gene, importance``, most important first."""
        write_table(self._p("global_importance"), df)

    def global_importance(self) -> pd.DataFrame:
        return self._read("global_importance", _csv({"gene": str}))

    def write_reference_markers(self, df: pd.DataFrame) -> None:
        """Wilcoxon one-vs-rest markers of the training cells (scanpy ``rank_genes_groups``)."""
        write_table(self._p("reference_markers"), df)

    def reference_markers(self) -> pd.DataFrame | None:
        """None where they were not computed (older runs, or scanpy failed)."""
        return self._read("reference_markers", _csv({"class": str, "gene": str}), missing_ok=True)

    def write_denoise_cells(self, df: pd.DataFrame) -> None:
        """Per cell of a denoising run: ``cell_id, split, library_observed, library_predicted, zero_prob_mean, nll,
        rate_sq_err`` (``scapp.denoise.summarize``)."""
        write_table(self._p("denoise_cells"), df)

    def denoise_cells(self) -> pd.DataFrame | None:
        """None for a run whose method does not denoise."""
        return self._read("denoise_cells", lambda p: pd.read_parquet(p), missing_ok=True)

    def write_denoise_genes(self, df: pd.DataFrame) -> None:
        """Per gene: ``gene, mean_count, detected_frac, mean_rate, mean_rate_nonzero, mean_zero_prob``."""
        write_table(self._p("denoise_genes"), df)

    def denoise_genes(self) -> pd.DataFrame | None:
        return self._read("denoise_genes", _csv({"gene": str}), missing_ok=True)

    def write_gene_programs(self, df: pd.DataFrame) -> None:
        """The genes each unit reads: ``layer, unit, rank, gene, weight, relative`` and, in runs written since the
        ranking by contribution, ``input_sd, contribution`` (the gene's spread of the encoder input over the training
        cells, and weight × it: the first layer's ranking); ``gene_programs`` of the model."""
        write_table(self._p("gene_programs"), df)

    def gene_programs(self) -> pd.DataFrame | None:
        return self._read("gene_programs", _csv({"layer": str, "gene": str}), missing_ok=True)

    def results(self) -> dict[str, Any]:
        """What a comparison needs from a finished run: ``config``, ``data`` (data info), ``metrics``,
        ``predictions``."""
        missing = [LAYOUT[k] for k in ("config", "data_info", "metrics", "predictions") if not self._has(k)]
        if missing:
            msg = f"Run {self.id} has no {', '.join(missing)}; only finished (or stopped) runs can be compared."
            raise RunError(msg)
        return {"config": self.config(), "data": self.data_info(), "metrics": self.metrics(),
                "predictions": self.predictions(columns=["cell_id", "split", "true", "pred", "confidence"])}

    # -- an ensemble's member runs ----------------------------------------------------------------------
    def member(self, run_id: str) -> RunStore:
        """The member run ``run_id`` of this ensemble (a complete run folder inside this one)."""
        if not is_safe_id(run_id):
            raise RunError(f"Run {self.id}: {run_id!r} is not a run id; the run may be damaged.")
        return RunStore(self.path / _MEMBERS / run_id)

    def members(self) -> list[RunStore]:
        """The member runs held in this folder (an ensemble's; empty for other runs), by name (``auto`` numbers its
        members in training order; copied runs keep their time-stamped ids)."""
        folder = self.path / _MEMBERS
        if not folder.is_dir():
            return []
        found = [RunStore(p) for p in sorted(folder.iterdir(), key=lambda p: (len(p.name.split("-")[0]), p.name))]
        return [m for m in found if m.path.is_dir() and m.has_status]

    def existing_member(self, run_id: str) -> RunStore:
        """As :meth:`member`, but a ``RunError`` naming it when its folder is gone."""
        m = self.member(run_id)
        if not m.has_status:
            raise RunError(f"Ensemble {self.id} lacks its member run {run_id} (folder {m.path}); the run is "
                           "incomplete.")
        return m

    def adopt_member(self, source: RunStore) -> RunStore:
        """Copy a finished run into this ensemble, so the ensemble keeps working if the original is deleted.
        Display maps (recomputed on demand) and a stop request are not copied."""
        dest = self.member(source.id)
        if dest.path.exists():
            raise RunError(f"Ensemble {self.id} already holds a member {source.id}.")

        def ignore(folder: str, names: list[str]) -> set[str]:
            return {n for n in names if n == LAYOUT["stop"] or n.startswith(tuple(f"{k}_" for k in _CELL_MAP_KINDS))}

        shutil.copytree(source.path, dest.path, ignore=ignore)
        return dest

    # -- display maps (UMAP of a sample of the cells), computed on demand --------------------------------
    def cell_map_path(self, n_cells: int) -> Path:
        """Where the display UMAP of ``n_cells`` sampled cells is kept: on the latent, else on class probabilities."""
        kind = _CELL_MAP_KINDS[0] if self.has_embedding else _CELL_MAP_KINDS[1]
        return self.path / _ART / f"{kind}_{int(n_cells)}.safetensors"

    def _cell_map_files(self, n_cells: int) -> tuple[Path, Path]:
        path = self.cell_map_path(n_cells)
        return path.with_suffix(".running"), path.with_suffix(".error")

    def cell_map_state(self, n_cells: int) -> tuple[str, str | None]:
        """``("ready"|"running"|"failed"|"missing", error message)`` of the display UMAP of ``n_cells`` cells."""
        if self.cell_map_path(n_cells).exists():
            return "ready", None
        lock, err = self._cell_map_files(n_cells)
        if err.exists():
            return "failed", err.read_text().strip()
        if lock.exists():
            try:
                pid = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                pid = 0
            if _pid_alive(pid):
                return "running", None
        return "missing", None

    def write_cell_map(self, n_cells: int, arrays: dict[str, np.ndarray]) -> None:
        """``index`` (rows of the predictions in the sample) and ``umap`` (their coordinates)."""
        write_arrays(self.cell_map_path(n_cells), arrays)

    def cell_map(self, n_cells: int) -> dict[str, np.ndarray]:
        path = self.cell_map_path(n_cells)
        try:
            return read_arrays(path)
        except FileNotFoundError:
            raise RunError(f"Run {self.id} has no cell map of {int(n_cells):,} cells yet.") from None
        except Exception as e:  # noqa: BLE001
            raise RunError(f"{path.name} of run {self.id} is unreadable ({_one_line(e)}); delete it to recompute "
                           "the map.") from e

    def mark_cell_map_running(self, n_cells: int, pid: int) -> None:
        """Record that process ``pid`` computes the map (so a second request does not start another)."""
        lock, _ = self._cell_map_files(n_cells)
        write_text(lock, str(int(pid)))

    def clear_cell_map_error(self, n_cells: int) -> None:
        """Forget a failed map job, so that the map is tried again."""
        self._cell_map_files(n_cells)[1].unlink(missing_ok=True)

    @contextmanager
    def cell_map_job(self, n_cells: int) -> Iterator[Path]:
        """Around the computation of a map in this process: marks it running; an exception leaves its message
        for :meth:`cell_map_state` to report (and is re-raised)."""
        lock, err = self._cell_map_files(n_cells)
        err.unlink(missing_ok=True)
        self.mark_cell_map_running(n_cells, os.getpid())
        try:
            yield self.cell_map_path(n_cells)
        except Exception as e:
            write_text(err, f"The cell map could not be computed ({type(e).__name__}: {e}).")
            raise
        finally:
            lock.unlink(missing_ok=True)

    @property
    def cell_map_log_path(self) -> Path:
        """Output of the background map processes."""
        return self._p("cell_map_log")

    def delete_cell_maps(self) -> None:
        """Remove every stored display map and its job files (they are recomputed on demand)."""
        for kind in _CELL_MAP_KINDS:
            for f in (self.path / _ART).glob(f"{kind}_*"):
                f.unlink(missing_ok=True)


# -- path-level shortcuts (status and stop are read and written from many places) --------------------
def write_status(run: str | os.PathLike, state: str, **fields: Any) -> dict[str, Any]:
    """Replace a run's status, keeping fields of the previous status that are not overridden."""
    return RunStore(run).write_status(state, **fields)


def read_status(run: str | os.PathLike, *, check_alive: bool = True) -> dict[str, Any] | None:
    """The run's status; a running run whose process has died is reported as failed."""
    return RunStore(run).status(check_alive=check_alive)


def request_stop(run: str | os.PathLike) -> None:
    """Ask the engine to stop at the next batch."""
    RunStore(run).request_stop()


def stop_requested(run: str | os.PathLike) -> bool:
    return RunStore(run).stop_requested()


def list_runs(root: Path | None = None) -> pd.DataFrame:
    """One row per run folder: id, model, dataset, created, state, headline metrics, the run it was retrained from."""
    root = root or runs_root()
    rows = []
    if root.is_dir():
        for p in sorted(root.iterdir()):
            store = RunStore(p)
            if not p.is_dir() or not store.has_status:
                continue
            try:
                st = store.status() or {}
                cfg = store.config(missing_ok=True) or {}
                met = store.metrics(missing_ok=True) or {}
            except RunError:
                continue
            test = met.get("test", {}) if isinstance(met, dict) else {}
            files = cfg.get("data_files") or []  # a pretraining run reads one or more files
            dataset = Path(cfg.get("data", "")).name + (f" + {len(files) - 1} more" if len(files) > 1 else "")
            kind = (f"pretraining ({cfg.get('method')})" if cfg.get("kind") == "pretraining"
                    else "fine-tune" if cfg.get("from_run") else "training")
            rows.append({"run_id": p.name, "model": cfg.get("model"), "kind": kind, "dataset": dataset,
                         "label": cfg.get("label"), "created": cfg.get("created"), "state": st.get("state"),
                         "has_model": bool(st.get("has_model")),
                         "macro_f1": test.get("macro_f1"), "accuracy": test.get("accuracy"),
                         "error": st.get("error") if st.get("state") == "failed" else None,
                         # a run retrained on the genes a query shares with another run: that run's id
                         "parent": Path(cfg["parent"]).name if cfg.get("parent") else None, "path": str(p)})
    return pd.DataFrame(rows)


def timing_records(root: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The timing records (``RunStore.write_timing``) of every run in the runs root, ensemble members included,
    oldest first: what time estimates learn this machine's speed from (``scapp.train.timing``)."""
    root = Path(root or runs_root())
    out = []
    if root.is_dir():
        for p in root.iterdir():
            if not p.is_dir():
                continue
            store = RunStore(p)
            for s in (store, *store.members()):
                try:
                    rec = s.timing()
                except RunError:
                    continue
                if rec:
                    out.append(rec)
    return sorted(out, key=lambda r: r.get("time") or 0)


def delete_run(run: str | os.PathLike) -> None:
    """Delete a run folder; refuses a run that is still running (its heartbeat is fresh and its process alive),
    and any folder that is not a run."""
    store = RunStore(run)
    if not store.path.is_dir() or not store.is_run:
        raise RunError(f"{store.path} is not a scapp run folder; nothing was removed.")
    st = store.status()
    if st and st.get("state") in ("running", "queued"):
        msg = f"Run {store.id} is still {st['state']}; stop it first (scapp runs shows when it has stopped)."
        raise RunError(msg)
    try:
        shutil.rmtree(store.path)
    except OSError as e:
        raise RunError(f"Run {store.id} could not be removed completely: {os_error_reason(e)} ({e.filename}).") from e


def export_zip(run: str | os.PathLike, dest: Path) -> Path:
    """Zip a run folder (weights, tables, JSON) for sharing."""
    base = str(Path(dest).with_suffix(""))
    run = Path(run)
    return Path(shutil.make_archive(base, "zip", root_dir=run.parent, base_dir=run.name))
