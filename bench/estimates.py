"""Estimated vs actual training time, per model and preset, as the app runs them (issue 11).

Each run is started the way the Train page starts it (``scapp.train.job.start_job``: its own
``python -m scapp run-job`` process) in a fresh runs folder, so no past run informs the estimate unless
``--history`` asks for it; "actual" is the wall time from the click (job started) to ``finished`` in
``status.json``, which is what a user waits. Take the CPU lock so that no other job shares the cores:

    flock /tmp/cpu.lock .venv/bin/python bench/estimates.py                       # fast + default of each
    flock /tmp/cpu.lock .venv/bin/python bench/estimates.py --presets thorough --models sims logreg
    flock /tmp/cpu.lock .venv/bin/python bench/estimates.py --calibrate           # print ModelSpec.timing figures
    flock /tmp/cpu.lock .venv/bin/python bench/estimates.py --history             # a 2nd run learns from the 1st
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._common import DATA, machine

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo_pbmc3k.h5ad"


def run_job(model: str, preset: str, data: Path, label: str, root: Path) -> dict:
    """Start the job as the app does and wait for it; its estimate, wall time and timing record."""
    from scapp import runs
    from scapp.data import load_dataset
    from scapp.models.presets import presets
    from scapp.train import timing
    from scapp.train.engine import TrainRequest
    from scapp.train.job import start_job

    adata, _ = load_dataset(str(data))
    n_cells, n_genes = adata.n_obs, timing.effective_genes(adata.X)  # as the Model page counts them
    est = timing.estimate(model, preset, n_cells, n_genes, root=root)  # what the Model page shows
    req = TrainRequest(data=str(data), label=label, model=model, model_config=dict(presets(model)[preset]))
    t0 = time.time()
    run = start_job(req, root=root)
    first_eta = None
    while True:
        st = runs.read_status(run) or {}
        if first_eta is None and st.get("eta_s") is not None:
            first_eta = (time.time() - t0, st.get("eta_s"), st.get("eta_max_s"))
        if st.get("state") in ("finished", "failed", "cancelled"):
            break
        time.sleep(0.2)
    wall = time.time() - t0
    if st["state"] != "finished":
        raise SystemExit(f"{model} {preset}: {st['state']}: {st.get('error')}")
    met = runs.RunStore(run).metrics()
    recs = [r for r in runs.timing_records(root) if r.get("total_s") and abs(r["total_s"] - met["total_seconds"]) < 1]
    rec = recs[-1] if recs else {}
    return {"model": model, "preset": preset, "n_cells": n_cells, "n_genes": n_genes, "estimate_s": est.seconds,
            "source": est.source, "actual_s": wall, "train_s": met["total_seconds"], "phases": rec.get("phases", {}),
            "epoch_s": rec.get("epoch_s"), "epochs_run": rec.get("epochs_run"), "first_eta": first_eta,
            "test_macro_f1": (met.get("test") or {}).get("macro_f1")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=["logreg", "logreg_hvg", "sims", "hydra", "auto"])
    ap.add_argument("--presets", nargs="*", default=["fast", "default"])
    ap.add_argument("--data", default=str(DEMO))
    ap.add_argument("--label", default="cell_type")
    ap.add_argument("--history", action="store_true", help="train each twice in one folder: the 2nd learns")
    ap.add_argument("--calibrate", action="store_true", help="print the measured phases as the registry's ModelSpec.timing")
    ap.add_argument("--json", help="append the rows here (one JSON per line)")
    a = ap.parse_args()
    data = Path(a.data) if Path(a.data).exists() else DATA / a.data
    print(f"# estimated vs actual training time — {machine()}")
    print(f"# {data.name}; actual = click to 'finished' (its own process, as from the Train page)")
    print("| model | preset | estimated | actual | actual / estimated | estimate from | test macro-F1 |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in a.models:
            for preset in a.presets:
                root = Path(tmp) / f"{model}-{preset}"
                for rep in range(2 if a.history else 1):
                    r = run_job(model, preset, data, a.label, root)
                    r["repeat"] = rep
                    rows.append(r)
                    print(f"| {model} | {preset} | {r['estimate_s']:.0f} s | {r['actual_s']:.0f} s | "
                          f"{r['actual_s'] / r['estimate_s']:.2f} | {r['source']} | {r['test_macro_f1']:.3f} |",
                          flush=True)
                    if a.json:
                        with open(a.json, "a") as f:
                            f.write(json.dumps(r) + "\n")
    if a.calibrate:
        print("\n# ModelSpec.timing (seconds per phase on this data; startup = actual − train time)")
        starts = [r["actual_s"] - r["train_s"] for r in rows]
        print(f"# startup: median {statistics.median(starts):.1f} s (min {min(starts):.1f}, max {max(starts):.1f})")
        for r in rows:
            ph = {k: round(v, 1) for k, v in r["phases"].items()}
            if r.get("epoch_s"):
                ph["epoch_s"] = round(r["epoch_s"], 3)
            print(f"{r['model']:>10} {r['preset']:>8}: {json.dumps(ph)}  epochs {r.get('epochs_run')}")


if __name__ == "__main__":
    main()
