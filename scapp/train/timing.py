"""How long a training run takes on this machine: estimates calibrated by measurement, then by past runs.

Issue 11 found the old estimates 9–12× too low on a busy machine (and, measured on an idle one, up to 7× too
high for Hydra and 4× too low for logistic regression). Two sources now, best first:

1. **Past runs on this machine.** Every finished training keeps a timing record in its run folder
   (``RunStore.write_timing``): the method, its resolved options, cells × genes, device, host and the
   seconds of each phase. An estimate for the same method and options on the same host and device is the
   per-phase median of those records, each scaled to the new size.
2. **The built-in calibration** (``ModelSpec.timing`` in the registry): each preset measured on the demo
   (2,638 cells × 2,000 genes) on the 2-core, GPU-less development machine with ``bench/estimates.py
   --calibrate``, with the CPU lock held so no other job shared the cores.

Both scale linearly with cells × genes (the first layer of every network, the logistic regression and the
input pipeline all do), counting the genes that carry information: those detected in at least 1% of the cells
(``effective_genes``; Hydra keeps exactly these, SIMS a few more). A file of 33,694 genes of which 10,772 are
detected costs like 10,772 (pbmc4k: SIMS 3× over-estimated when all genes counted). A fixed ``STARTUP_S``
(starting Python and importing torch) is added once per run.
Estimates are said as "about …": early stopping alone moves a run by 2× either way.

Phases are keyed as the trainer's events key them (``scapp.train.trainer``): ``load`` (read, split,
preprocess), ``main`` (the epoch loop the run's curve shows), a method's later phases in the order they
run (Hydra: ``balance``, ``refine``, ``ig``, ``mlp``) and ``evaluate`` (score, calibrate, explain, save).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

DEMO_CELLS = 2638
DEMO_GENES = 1656
"""Genes detected in at least 1% of the demo's cells (of its 2,000)."""
STARTUP_S = 1.4
"""Seconds from ``python -m scapp train`` to the first line of training (interpreter, torch, scanpy imports),
measured on the development machine; not scaled with the data."""
COMBINE_S = 2.0
"""An ensemble's own work after its members: weights on the validation cells, scoring, saving."""

def builtin(model: str) -> dict[str, dict[str, float]]:
    """The method's measured seconds per phase for each preset (``ModelSpec.timing`` in the registry: each preset
    measured on the demo with ``bench/estimates.py --calibrate``, 2 cores, no GPU, CPU lock held). Keys that are not
    phases: "epoch_s", the main phase's seconds per epoch, and "epochs", how many epochs it ran."""
    from scapp.models.registry import get_spec

    return get_spec(model).timing


def drivers(model: str) -> dict[str, Any]:
    """What a later phase's cost is proportional to, for options set by hand (``ModelSpec.timing_drivers``): the
    nearest preset's measured phase is scaled by driver(options) / driver(preset's options); ``n`` is the number
    of cells. The main phase of every method follows max_epochs (up to the epochs early stopping needed)."""
    from scapp.models.registry import get_spec

    return get_spec(model).timing_drivers


ORDER = ("load", "main", "balance", "refine", "ig", "mlp", "evaluate")
"""Where known keys go when phases are listed; unknown keys go after ``main``, before ``evaluate``."""


@dataclass(frozen=True)
class Estimate:
    """Seconds a run should take, phase by phase, and where the figures come from."""

    phases: dict[str, float]
    """Phase key → seconds, in the order the phases run (``startup`` not included)."""
    source: str
    """"built-in calibration (…)" or "median of N past runs on this machine"."""
    epoch_s: float | None = None
    """Seconds per epoch of the main phase, for telling how fast this run goes compared with the estimate."""
    startup_s: float = STARTUP_S
    n_past: int = 0

    @property
    def seconds(self) -> float:
        """The whole run: start-up and every phase."""
        return self.startup_s + sum(self.phases.values())

    def after(self, key: str | None) -> float:
        """Seconds of the phases after ``key`` (None: every phase). An unknown key counts as the main phase."""
        keys = list(self.phases)
        if key is None:
            return sum(self.phases.values())
        if key not in self.phases:
            key = "main" if "main" in self.phases else keys[0]
        return sum(self.phases[k] for k in keys[keys.index(key) + 1:])

    def phase(self, key: str | None) -> float:
        """Seconds of one phase (0 for a phase the estimate does not know)."""
        return float(self.phases.get(key or "", 0.0))


def machine() -> dict[str, Any]:
    """What makes timings comparable: the host and its cores (the device is matched separately)."""
    return {"host": platform.node(), "cpu_count": os.cpu_count()}


_EFFECTIVE: dict[tuple[int, tuple[int, ...], int], int] = {}


def effective_genes(X: Any) -> int:
    """Genes detected (non-zero) in at least 1% of the cells, and in at least 3: what training costs scale with.

    Remembered per matrix object, so a page that asks on every rerun counts once.
    """
    import numpy as np
    import scipy.sparse as sp

    key = (id(X), tuple(X.shape), int(X.nnz) if sp.issparse(X) else -1)
    if key not in _EFFECTIVE:
        n = X.shape[0]
        det = np.asarray((X > 0).sum(0)).ravel() if sp.issparse(X) else (np.asarray(X) > 0).sum(0)
        if len(_EFFECTIVE) > 16:
            _EFFECTIVE.clear()
        _EFFECTIVE[key] = int((det >= max(3, 0.01 * n)).sum())
    return _EFFECTIVE[key]


def work(n_cells: int, n_genes: int | None) -> float:
    """Size of a run relative to the demo: cells × detected genes (``effective_genes``) over 2,638 × 1,656."""
    return max(int(n_cells), 1) / DEMO_CELLS * max(int(n_genes or DEMO_GENES), 1) / DEMO_GENES


def normalized_options(options: dict[str, Any]) -> str:
    """A resolved option dict as a canonical JSON string (the seed left out: it does not change the cost)."""
    clean = {k: v for k, v in options.items() if k not in ("seed", "member_runs", "weights")}
    return json.dumps(clean, sort_keys=True, default=str)


def resolved_options(model: str, preset: str = "default", options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every option of ``model`` as a run with ``preset`` and ``options`` on top would have it."""
    from scapp.models.registry import config_from_dict, get_spec

    spec = get_spec(model)
    cfg = config_from_dict(spec.load().Config, {**spec.presets.get(preset, {}), **(options or {})})
    return asdict(cfg)


def preset_of(model: str, options: dict[str, Any]) -> str | None:
    """The preset whose options ``options`` are (seed aside), or None for options set by hand."""
    from scapp.models.registry import get_spec

    key = normalized_options(options)
    for name in get_spec(model).presets:
        if normalized_options(resolved_options(model, name)) == key:
            return name
    return None


def nearest_preset(model: str, options: dict[str, Any], candidates: list[str]) -> str:
    """The preset among ``candidates`` whose options differ from ``options`` in the fewest places."""
    def differ(name: str) -> int:
        ref = resolved_options(model, name)
        return sum(json.dumps(ref.get(k), default=str) != json.dumps(v, default=str) for k, v in options.items())

    return min(candidates, key=lambda c: (differ(c), c != "default"))


def option_factors(model: str, options: dict[str, Any], base_options: dict[str, Any], calibration: dict[str, float],
                   n_cells: int) -> dict[str, float]:
    """Per phase, how much more (> 1) or less ``options`` cost than the calibrated preset's ``base_options``."""
    out: dict[str, float] = {}
    epochs = calibration.get("epochs")
    if "max_epochs" in options and "max_epochs" in base_options:
        cap = epochs or base_options["max_epochs"]
        out["main"] = min(options["max_epochs"], cap) / max(min(base_options["max_epochs"], cap), 1)
    for key, driver in drivers(model).items():
        try:
            out[key] = driver(options, max(n_cells, 1)) / max(driver(base_options, max(n_cells, 1)), 1e-12)
        except (KeyError, TypeError):
            continue
    return out


def _records(records: list[dict[str, Any]] | None, root: Any) -> list[dict[str, Any]]:
    """``records`` as given, else the timing records of the runs root ``root`` (none when it cannot be read)."""
    if records is not None:
        return records
    from scapp import runs

    try:
        return runs.timing_records(root)
    except OSError:
        return []


def _here(records: list[dict[str, Any]], model: str, device: str) -> list[dict[str, Any]]:
    """The records of ``model`` runs on this host (same cores) and device: the only ones whose speed carries over."""
    me = machine()
    return [r for r in records if r.get("model") == model and r.get("device", "cpu") == device
            and r.get("host") == me["host"] and r.get("cpu_count") == me["cpu_count"]]


def _past(model: str, options: dict[str, Any], device: str, n_cells: int, n_genes: int | None,
          records: list[dict[str, Any]]) -> Estimate | None:
    key = normalized_options(options)
    same = [r for r in _here(records, model, device)
            if normalized_options(r.get("options") or {}) == key and r.get("phases")]
    if not same:
        return None
    w = work(n_cells, n_genes)
    scaled = [{k: float(v) * w / work(r.get("n_cells", DEMO_CELLS), r.get("n_genes"))
               for k, v in r["phases"].items()} for r in same]
    keys = sorted({k for s in scaled for k in s}, key=_order)
    phases = {k: statistics.median([s.get(k, 0.0) for s in scaled]) for k in keys}
    eps = [float(r["epoch_s"]) * w / work(r.get("n_cells", DEMO_CELLS), r.get("n_genes"))
           for r in same if r.get("epoch_s")]
    return Estimate(phases, f"median of {len(same)} past run{'s' if len(same) > 1 else ''} on this machine",
                    epoch_s=statistics.median(eps) if eps else None, n_past=len(same))


def _order(key: str) -> tuple[int, str]:
    return (ORDER.index(key) if key in ORDER else ORDER.index("evaluate") - 0.5, key)  # type: ignore[return-value]


def estimate(model: str, preset: str = "default", n_cells: int = DEMO_CELLS, n_genes: int | None = None, *,
             options: dict[str, Any] | None = None, gpu: bool = False, root: Any = None,
             records: list[dict[str, Any]] | None = None) -> Estimate:
    """How long training ``model`` with ``preset`` (and ``options`` on top) on ``n_cells`` × ``n_genes`` takes.

    ``records``: timing records to learn from (default: those of the runs root ``root``); ``gpu``: the run will
    use a GPU (then only GPU records count, and the CPU calibration is divided by the method's
    ``gpu_speedup`` where none exist).
    """
    from scapp.models.registry import get_spec

    spec = get_spec(model)
    device = "cuda" if gpu else "cpu"
    records = _records(records, root)
    resolved = resolved_options(model, preset, options)
    past = _past(model, resolved, device, n_cells, n_genes, records)
    if past is not None:
        return past
    if spec.capabilities.combines:  # an ensemble: its members one after the other in one process, then combining
        phases: dict[str, float] = {}
        for i, m in enumerate(resolved.get("members") or []):
            sub = estimate(m["model"], m.get("preset", "default"), n_cells, n_genes, options=m.get("options"),
                           gpu=gpu, records=records)
            phases[f"member {i + 1}"] = sum(sub.phases.values())
        phases["combine"] = COMBINE_S
        return Estimate(phases, "its members' estimates")
    w = work(n_cells, n_genes)
    table = builtin(model)
    if options:  # a run's own options: calibrated as the preset they are, else scaled from the nearest preset
        preset = preset_of(model, resolved) or nearest_preset(model, resolved, [p for p in table] or [preset])
    base = table.get(preset) or table.get("default")
    if base is None:  # a method not calibrated yet: the registry's rough figure per 1,000 cells
        s = spec.seconds_per_1k.get(preset, 10.0) * max(n_cells, 1) / 1000
        return Estimate({"main": s / spec.gpu_speedup if gpu else s}, "a rough figure, not measured here")
    speed = spec.gpu_speedup if gpu else 1.0
    scale = option_factors(model, resolved, resolved_options(model, preset), base, n_cells)
    phases = {k: v * w * scale.get(k, 1.0) / (1.0 if k == "load" else speed) for k, v in base.items()
              if k not in ("epoch_s", "epochs")}
    ep = base.get("epoch_s")
    return Estimate(phases, "built-in calibration, demo on 2 CPU cores" + (", ÷ the GPU speed-up" if gpu else ""),
                    epoch_s=ep * w / speed if ep else None)


def estimate_seconds(model: str, preset: str, n_cells: int, n_genes: int | None = None, *, gpu: bool = False,
                     options: dict[str, Any] | None = None, root: Any = None) -> float:
    """Whole-run seconds (``estimate(...).seconds``), for the Model page's preset buttons."""
    return estimate(model, preset, n_cells, n_genes, options=options, gpu=gpu, root=root).seconds


# -- pretraining runs ---------------------------------------------------------------------------------------
PRETRAIN_COST = {"mae": (20.0, 30.0), "vicreg": (40.0, 50.0), "simclr": (40.0, 50.0), "tabnet": (140.0, 5.0)}
"""Pretraining objective → (µs per cell per epoch, ns per cell per epoch per gene) at the fast network (first
layer 256 wide; TabNet at SIMS's defaults), 2 CPU cores, no GPU: fitted to the quiet pretraining runs of
``bench/ssl_bench.py`` (pbmc3k 1,973 genes, pancreas 1,499, bone marrow 422; issue 13). The per-cell term is the
hidden layers and batching, the per-gene term the first encoder and last decoder layers. TabNet's attentive
steps cost about the same whatever the gene count at these sizes."""
PRETRAIN_GPU_SPEEDUP = 10.0


def pretraining_key(method: str, architecture: dict[str, Any]) -> str:
    """The name pretraining runs' timing records are kept under (``timing_record``'s model): one per objective
    and network, so past runs only teach estimates of the same kind of run."""
    return f"pretrain:{method}:{json.dumps(architecture, sort_keys=True, default=str)}"


def pretraining_estimate(method: str, n_cells: int, n_genes: int, epochs: int, *,
                         architecture: dict[str, Any] | None = None, gpu: bool = False, root: Any = None,
                         records: list[dict[str, Any]] | None = None) -> Estimate:
    """Seconds a pretraining run of ``epochs`` epochs over ``n_cells`` training cells × ``n_genes`` takes: the
    median of past pretraining runs of the same objective and network on this machine (scaled to the size and
    epochs), else the built-in costs (``PRETRAIN_COST``). An upper end: early stopping may end it sooner."""
    arch = dict(architecture or {})
    device = "cuda" if gpu else "cpu"
    epochs = max(int(epochs), 1)
    past = [r for r in _here(_records(records, root), pretraining_key(method, arch), device) if r.get("epoch_s")]
    w = work(n_cells, n_genes)
    if past:
        eps = [float(r["epoch_s"]) * w / work(r.get("n_cells", DEMO_CELLS), r.get("n_genes")) for r in past[-20:]]
        ep = statistics.median(eps)
        return Estimate({"main": ep * epochs}, f"median of {len(eps)} past pretraining run"
                        f"{'s' if len(eps) > 1 else ''} on this machine", epoch_s=ep, n_past=len(eps))
    per_cell_us, per_gene_ns = PRETRAIN_COST.get(method, PRETRAIN_COST["mae"])
    widths = arch.get("encoder_widths")
    scale = float(widths[0]) / 256 if widths else 1.0
    ep = max(int(n_cells), 1) * (per_cell_us * 1e-6 + per_gene_ns * 1e-9 * max(int(n_genes), 1)) * scale
    if gpu:
        ep /= PRETRAIN_GPU_SPEEDUP
    return Estimate({"main": ep * epochs}, "built-in calibration, 2 CPU cores" + (", ÷ the GPU speed-up" if gpu
                                                                                 else ""), epoch_s=ep)


# -- saying it ----------------------------------------------------------------------------------------------
def _unit(seconds: float) -> tuple[float, str]:
    if seconds < 90:
        return 1.0, "s"
    if seconds < 90 * 60:
        return 60.0, "min"
    return 3600.0, "h"


def _num(x: float) -> str:
    return f"{x:.0f}" if abs(x - round(x)) < 0.05 else f"{x:.1f}"


def _round(x: float, unit: str, how: Any = round) -> float:
    """Seconds to 1 s under 10 s, else 5 s; minutes and hours to a half under 10, else whole."""
    if unit == "s":
        return float(max(1, how(x))) if x < 10 else float(5 * how(x / 5))
    return how(x * 2) / 2 if x < 10 else float(how(x))


def about(seconds: float) -> str:
    """'about 40 s', 'about 3.5 min', 'about 2 h', rounded as a person would say it."""
    seconds = max(float(seconds), 1.0)
    div, unit = _unit(seconds)
    return f"about {_num(max(_round(seconds / div, unit), 0.5))} {unit}"


def about_range(low: float, high: float) -> str:
    """'about 1–3 min' for a range (low end rounded down, high end up), 'about 2 min' when both ends meet."""
    low, high = max(float(low), 1.0), max(float(high), float(low), 1.0)
    div, unit = _unit(high)
    lo, hi = _round(low / div, unit, math.floor), _round(high / div, unit, math.ceil)
    if hi <= lo:
        return f"about {_num(max(hi, 0.5))} {unit}"
    if lo <= 0:
        return f"under {_num(hi)} {unit}"
    return f"about {_num(lo)}–{_num(hi)} {unit}"


# -- measuring a run -------------------------------------------------------------------------------------------
@dataclass
class PhaseClock:
    """Wall seconds per phase key of one run, as the engine and the trainer's events move through them."""

    current: str | None = None
    since: float = field(default_factory=time.monotonic)
    seconds: dict[str, float] = field(default_factory=dict)

    def enter(self, key: str) -> None:
        """Start ``key`` (a no-op when it is the current phase); the time since the last change goes to the
        phase that was current."""
        if key == self.current:
            return
        self._book()
        self.current = key

    def in_phase(self) -> float:
        """Seconds spent in the current phase so far."""
        return time.monotonic() - self.since

    def stop(self) -> dict[str, float]:
        self._book()
        self.current = None
        return dict(self.seconds)

    def _book(self) -> None:
        now = time.monotonic()
        if self.current is not None:
            self.seconds[self.current] = self.seconds.get(self.current, 0.0) + now - self.since
        self.since = now


def timing_record(model: str, options: dict[str, Any], *, n_cells: int, n_genes: int, device: str,
                  phases: dict[str, float], epoch_s: float | None, epochs_run: int | None,
                  total_s: float) -> dict[str, Any]:
    """What ``RunStore.write_timing`` keeps of a finished run."""
    return {"model": model, "options": json.loads(normalized_options(options)), "n_cells": int(n_cells),
            "n_genes": int(n_genes), "device": "cuda" if str(device).startswith("cuda") else "cpu", **machine(),
            "phases": {k: round(float(v), 3) for k, v in phases.items()},
            "epoch_s": round(float(epoch_s), 4) if epoch_s else None, "epochs_run": epochs_run,
            "total_s": round(float(total_s), 3), "time": time.time()}


def remaining(est: Estimate | None, key: str | None, *, phase_low: float | None, phase_high: float | None,
              in_phase_s: float, speed: float = 1.0) -> tuple[float, float] | None:
    """Seconds left in the whole run, as (low, high).

    The current phase's own ``phase_low`` / ``phase_high`` (from its measured epochs: early stopping as soon
    as patience allows / every epoch left) when it reports them, else what is left of its estimate. Then the
    phases after it, from the estimate scaled by ``speed`` (how much slower this run goes than estimated) and
    given ±25 % (they are estimated, not measured). None without an estimate or a measurement.
    """
    if phase_low is None and phase_high is None and est is None:
        return None
    if phase_low is None and phase_high is None:
        left = max(est.phase(key) * speed - in_phase_s, 0.0) if est else 0.0
        phase_low = phase_high = left
    phase_low = float(phase_low if phase_low is not None else phase_high)
    phase_high = float(phase_high if phase_high is not None else phase_low)
    later = est.after(key) * speed if est is not None else 0.0
    return phase_low + 0.8 * later, phase_high + 1.25 * later
