"""Run folders on disk: the only code that knows their layout (architecture.md).

Every file is written atomically (temporary file in the same folder, then
``os.replace``), so a reader never sees half a file and a crash never corrupts
a finished run. Nothing here unpickles: weights are safetensors, the rest is
JSON, CSV or parquet.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile
import time
from collections.abc import Callable
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


def runs_root() -> Path:
    """``$SCAPP_RUNS_DIR`` or ``./runs``, read at call time."""
    return Path(os.environ.get("SCAPP_RUNS_DIR", "runs")).resolve()


def is_safe_id(run_id: str) -> bool:
    return bool(_SAFE_ID.fullmatch(run_id)) and ".." not in run_id


def new_run_id(model: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{model}-{secrets.token_hex(3)}"


def create_run(model: str, *, out: str | os.PathLike | None = None, root: Path | None = None) -> Path:
    """Make an empty run folder. ``out`` may name it; an existing non-empty folder is refused."""
    if out is not None:
        path = Path(out).resolve()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            msg = f"Run folder {path} already exists and is not an empty folder; choose another --out."
            raise RunError(msg)
    else:
        path = (root or runs_root()) / new_run_id(model)
    path.mkdir(parents=True, exist_ok=True)
    (path / "artifacts").mkdir(exist_ok=True)
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


# -- atomic writers ------------------------------------------------------------------
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


def cached_arrays(run: Path, name: str, make: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``artifacts/<name>.safetensors`` if present, else computed by ``make`` and stored (e.g. a UMAP)."""
    path = Path(run) / "artifacts" / f"{name}.safetensors"
    if path.exists():
        return read_arrays(path)
    arrays = make()
    write_arrays(path, arrays)
    return arrays


def cell_map_path(run: Path, n_cells: int) -> Path:
    """Where the display UMAP of ``n_cells`` sampled cells is kept: on the latent, else on class probabilities."""
    art = Path(run) / "artifacts"
    kind = "umap" if (art / "embedding.safetensors").exists() else "umap_proba"
    return art / f"{kind}_{int(n_cells)}.safetensors"


def cell_map_state(run: Path, n_cells: int) -> tuple[str, str | None]:
    """``("ready"|"running"|"failed"|"missing", error message)`` of a run's display UMAP of ``n_cells`` cells."""
    path = cell_map_path(run, n_cells)
    if path.exists():
        return "ready", None
    err = path.with_suffix(".error")
    if err.exists():
        return "failed", err.read_text().strip()
    lock = path.with_suffix(".running")
    if lock.exists():
        try:
            pid = int(lock.read_text().strip() or 0)
        except ValueError:
            pid = 0
        if _pid_alive(pid):
            return "running", None
    return "missing", None


def compute_cell_map(run: Path, n_cells: int) -> dict[str, np.ndarray]:
    """UMAP of a class-stratified sample of at most ``n_cells`` cells of a run, stored in its artifacts.

    On the model's latent space (``artifacts/embedding.safetensors``), else on its predicted
    class probabilities. ``index`` holds the rows of ``predictions.parquet`` in the sample.
    While it runs a ``.running`` file holds the process id; a failure leaves a ``.error`` file.
    """
    from scapp.evaluate.embedding import sample_umap

    run = Path(run)
    path = cell_map_path(run, n_cells)
    lock, err = path.with_suffix(".running"), path.with_suffix(".error")
    err.unlink(missing_ok=True)
    lock.write_text(str(os.getpid()))
    try:
        emb_path = run / "artifacts" / "embedding.safetensors"
        if emb_path.exists():
            labels = pd.read_parquet(run / "predictions.parquet", columns=["true"])["true"].to_numpy()
            X = read_arrays(emb_path)["embedding"]
        else:
            pred = pd.read_parquet(run / "predictions.parquet")
            labels = pred["true"].to_numpy()
            X = pred[[c for c in pred.columns if c.startswith("p_")]].to_numpy(np.float32)
        arrays = sample_umap(X, labels, max_cells=n_cells)
        write_arrays(path, arrays)
        return arrays
    except Exception as e:
        err.write_text(f"The cell map could not be computed ({type(e).__name__}: {e}).")
        raise
    finally:
        lock.unlink(missing_ok=True)


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


# -- status --------------------------------------------------------------------------
def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_status(run: Path, state: str, **fields: Any) -> dict[str, Any]:
    """Replace status.json, keeping fields of the previous status that are not overridden."""
    if state not in STATES:
        raise ValueError(state)
    prev = read_status(run, check_alive=False) or {}
    status = {**prev, **fields, "state": state, "format_version": FORMAT_VERSION, "updated": now_iso(),
              "heartbeat": time.time()}
    write_json(run / "status.json", status)
    return status


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_status(run: Path, *, check_alive: bool = True) -> dict[str, Any] | None:
    """The run's status; a running run whose process has died is reported as failed."""
    try:
        st = read_json(Path(run) / "status.json")
    except FileNotFoundError:
        return None
    if st.get("format_version", 1) > FORMAT_VERSION:
        msg = f"Run {run} was written by a newer scapp (format {st['format_version']}); upgrade scapp."
        raise RunError(msg)
    if check_alive and st.get("state") in ("running", "queued") and st.get("pid") and not _pid_alive(st["pid"]):
        st = {**st, "state": "failed",
              "error": "The training process ended without finishing (killed, or the machine ran out of memory). "
                       "Start the run again; see train.log for its last lines."}
    return st


def request_stop(run: Path) -> None:
    """Ask the engine to stop at the next batch (it checks for this file)."""
    write_text(Path(run) / "STOP", now_iso())


def stop_requested(run: Path) -> bool:
    return (Path(run) / "STOP").exists()


def list_runs(root: Path | None = None) -> pd.DataFrame:
    """One row per run folder: id, model, dataset, created, state, headline metrics."""
    root = root or runs_root()
    rows = []
    if root.is_dir():
        for p in sorted(root.iterdir()):
            if not p.is_dir() or not (p / "status.json").exists():
                continue
            try:
                st = read_status(p) or {}
                cfg = read_json(p / "config.json") if (p / "config.json").exists() else {}
                met = read_json(p / "metrics.json") if (p / "metrics.json").exists() else {}
            except RunError:
                continue
            test = met.get("test", {}) if isinstance(met, dict) else {}
            rows.append({"run_id": p.name, "model": cfg.get("model"), "dataset": Path(cfg.get("data", "")).name,
                         "label": cfg.get("label"), "created": cfg.get("created"), "state": st.get("state"),
                         "macro_f1": test.get("macro_f1"), "accuracy": test.get("accuracy"), "path": str(p)})
    return pd.DataFrame(rows)


def delete_run(run: Path) -> None:
    """Delete a run folder; refuses a run that is still running."""
    st = read_status(run)
    if st and st.get("state") in ("running", "queued"):
        msg = f"Run {Path(run).name} is still {st['state']}; stop it first."
        raise RunError(msg)
    shutil.rmtree(run)


def export_zip(run: Path, dest: Path) -> Path:
    """Zip a run folder (weights, tables, JSON) for sharing."""
    base = str(Path(dest).with_suffix(""))
    return Path(shutil.make_archive(base, "zip", root_dir=Path(run).parent, base_dir=Path(run).name))


def read_results(run: Path) -> dict[str, Any]:
    """What a comparison needs from a finished run: ``config``, ``data`` (data.json), ``metrics``, ``predictions``."""
    run = Path(run)
    need = [run / n for n in ("config.json", "data.json", "metrics.json", "predictions.parquet")]
    missing = [p.name for p in need if not p.exists()]
    if missing:
        msg = f"Run {run.name} has no {', '.join(missing)}; only finished (or stopped) runs can be compared."
        raise RunError(msg)
    return {"config": read_json(need[0]), "data": read_json(need[1]), "metrics": read_json(need[2]),
            "predictions": pd.read_parquet(need[3], columns=["cell_id", "split", "true", "pred", "confidence"])}
