"""Train: start the job in its own process, follow it live, stop it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pages._ui import load_current, runs_root, show_error, show_figure
from scapp import runs
from scapp.errors import ScappError
from scapp.models.presets import presets
from scapp.train.engine import TrainRequest
from scapp.train.job import check_request, escalate_stop, start_job, stop_job
from scapp.train.progress import options_line, progress_text, timing_note

st.title("Train")
path, label = st.session_state.get("dataset_path"), st.session_state.get("label")
model = st.session_state.get("model", "sims")
preset = st.session_state.get("preset", "default")
# advanced settings saved on the Model page belong to the model they were saved for
saved = st.session_state.get("model_overrides", {}) if st.session_state.get("overrides_model", model) == model else {}
opts = {**presets(model).get(preset, {}), **saved}

if not path or not label:
    st.info("Choose a dataset and its label column on the **Data** page first.")
else:
    st.markdown(f"**{model}** ({preset}) on **{Path(path).name}**, labels `{label}`")
    if opts:
        st.caption(options_line(opts))
    if st.button("Start training", type="primary", key="train-start"):
        try:
            req = TrainRequest(data=path, label=label, model=model, model_config=opts,
                               seed=st.session_state.get("seed", 0), device=st.session_state.get("device", "auto"),
                               threshold=st.session_state.get("threshold", 0.5))
            loaded = load_current()
            if loaded is not None:
                check_request(req, loaded[0])  # a clear reason now instead of a failed run later
            run = start_job(req, root=runs_root())
            st.session_state["run_id"] = run.name
        except ScappError as e:
            show_error(e)

# Jobs live on disk: after a reload or an app restart the latest run is found again.
table = runs.list_runs(runs_root())
active = st.session_state.get("run_id")
if not active and len(table):
    live = table[table["state"].isin(["running", "queued"])]
    active = (live if len(live) else table).sort_values("run_id")["run_id"].iloc[-1]
    st.session_state["run_id"] = active


@st.fragment(run_every=1.0)
def progress(run: Path) -> None:
    from scapp.models.registry import curve_panels
    from scapp.viz import training_curves
    from scapp.viz.training import curve_help

    st_ = runs.read_status(run) or {}
    state = st_.get("state", "?")
    escalate_stop(run)
    st.markdown(f"### Run `{run.name}` — {state}")
    frac = float(st_.get("progress") or 0.0)
    # the phase and its count ("refining 25 models: epoch 12/30") and the time left as a range, all from status.json
    st.progress(min(max(frac, 0.0), 1.0), text=progress_text(st_) if state in ("running", "queued") else None)
    note = timing_note(st_)
    if note:
        st.caption(note)
    if state in ("running", "queued"):
        if st.button("Stop", key="train-stop"):
            st.toast(stop_job(run))
    elif state == "failed":
        st.error(f"The run failed: {st_.get('error')}")
    elif state == "cancelled":
        st.warning(st_.get("message") or "The run was stopped.")
    elif state == "finished":
        st.success("Finished. Open it on the **Explore** page.")
    store = runs.RunStore(run)
    members = store.members()  # an ensemble trains its members one after the other: show the latest one's curves
    curve_of = next((mm for mm in reversed(members) if (mm.status() or {}).get("state") == "running"),
                    members[-1] if members else store)
    hist = pd.DataFrame(curve_of.epochs())
    if curve_of is not store:
        st.caption(f"Training curves of member **{curve_of.id}** ({len(members)} member run(s) so far).")
    panels = curve_panels((curve_of.config(missing_ok=True) or {}).get("model"))  # what the method logs per epoch
    show_figure(training_curves(hist, panels=panels), key="train-curves", name=f"{curve_of.id}-training", data=hist)
    notes = curve_help(panels, hist)
    if notes:
        st.caption("  \n".join(notes))
    if state in ("finished", "cancelled") and members:
        from scapp.evaluate.compare import ensemble_members_table
        from scapp.viz import ensemble_members_bars

        met = store.metrics(missing_ok=True) or {}
        mt = ensemble_members_table(met)
        show_figure(ensemble_members_bars(mt, ensemble={"valid_macro_f1": (met.get("valid") or {}).get("macro_f1"),
                                                        "test_macro_f1": (met.get("test") or {}).get("macro_f1")}),
                    key="train-members", name=f"{run.name}-members", data=mt)
    if state in ("finished", "failed", "cancelled"):
        st.session_state["train-last-state"] = state
    # read now, not when the page loaded: other jobs, never this one (it is shown above)
    others = runs.list_runs(runs_root())
    waiting = others[(others["state"] == "queued") & (others["run_id"] != run.name)] if len(others) else others
    if len(waiting):
        n = len(waiting)
        st.caption(f"{n} other job{'s' if n > 1 else ''} waiting in the queue: " + ", ".join(waiting["run_id"]))


if active and (runs_root() / active).is_dir():
    progress(runs_root() / active)
