"""Train: start the job in its own process, follow it live, stop it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from pages._pretrain import saved_plan
from pages._ui import load_current, runs_root, show_error, show_figure, through_app
from scapp import runs
from scapp.errors import ScappError
from scapp.models import get_spec
from scapp.models.presets import presets
from scapp.train.engine import TrainRequest
from scapp.train.job import check_request, escalate_stop, start_job, stop_job
from scapp.train.pretrain_jobs import check_plan, current_step, job_steps, plan_line, start_pretrain_jobs
from scapp.train.progress import options_line, progress_text, timing_note

through_app()  # a page opened on its own by a fresh server runs again through app.py
st.title("Train")
path, label = st.session_state.get("dataset_path"), st.session_state.get("label")
no_label = bool(st.session_state.get("no_label"))
model = st.session_state.get("model", "sims")
preset = st.session_state.get("preset", "default")
spec = get_spec(model)
# advanced settings saved on the Model page belong to the model they were saved for
saved = st.session_state.get("model_overrides", {}) if st.session_state.get("overrides_model", model) == model else {}
opts = {**presets(model).get(preset, {}), **saved}
plan = saved_plan(model, path) if label and spec.capabilities.pretrains else None  # Model page: pretrain first

if not path or not (label or no_label):
    st.info("Choose a dataset and its label column on the **Data** page first.")
elif no_label and spec.capabilities.needs_labels:
    st.info(f"{spec.title} learns cell types from labels, and no label column was chosen on the **Data** page: "
            "choose one there, or a method that learns without labels on the **Model** page.")
else:
    st.markdown(f"**{model}** ({preset}) on **{Path(path).name}**, "
                + (f"labels `{label}`" if label else "no labels (every cell is used, nothing is scored)"))
    if opts:
        st.caption(options_line(opts))
    if plan is not None:
        st.caption("Runs " + plan_line(plan) + " (Model page).")
    if st.button("Start training", type="primary", key="train-start"):
        try:
            req = TrainRequest(data=path, label=label or None, model=model, model_config=opts,
                               seed=st.session_state.get("seed", 0), device=st.session_state.get("device", "auto"),
                               threshold=st.session_state.get("threshold", 0.5))
            loaded = load_current()
            if loaded is not None:
                check_request(req, loaded[0])  # a clear reason now instead of a failed run later
            if plan is not None:  # pretraining (a run of its own), from scratch for comparison, then the fine-tune
                check_plan(req, plan)
                run = start_pretrain_jobs(req, plan, root=runs_root()).finetune
            else:
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


def _curves(store: runs.RunStore, *, key: str) -> None:
    """One run's training chart, with the panels its method declares for it (a pretraining run: its loss)."""
    from scapp.models.registry import run_curve_panels
    from scapp.viz import training_curves
    from scapp.viz.training import curve_help

    hist = pd.DataFrame(store.epochs())
    panels = run_curve_panels(store.config(missing_ok=True))  # what the method logs per epoch
    show_figure(training_curves(hist, panels=panels), key=key, name=f"{store.id}-training", data=hist)
    notes = curve_help(panels, hist)
    if notes:
        st.caption("  \n".join(notes))


@st.fragment(run_every=1.0)
def progress(run: Path) -> None:
    steps = job_steps(run)  # pretraining, from scratch, fine-tune: queued together from the Model page's choice
    run = next((s.path for s in steps if s.role == "finetune"), run)  # the run to follow is the fine-tune
    st_ = runs.read_status(run) or {}
    state = st_.get("state", "?")
    cur = current_step(steps)
    live = [s for s in steps if s.state in ("running", "queued")]
    for s in steps or ():
        escalate_stop(s.path)
    escalate_stop(run)
    if cur is not None and live and cur.path != run:
        i = [s.path for s in steps].index(cur.path) + 1
        st.markdown(f"### Run `{run.name}` — step {i} of {len(steps)}: {cur.title.lower()}")
        shown = cur.status
    else:
        st.markdown(f"### Run `{run.name}` — {state}")
        shown = st_
    if steps:
        st.markdown("  \n".join(
            f"{i}. {s.title}: run `{s.path.name}` — **{s.state}**" + ("" if s.queued_here else " (chosen)")
            for i, s in enumerate(steps, 1)))
    frac = float(shown.get("progress") or 0.0)
    shown_state = shown.get("state", "?")
    # the phase and its count ("refining 25 models: epoch 12/30") and the time left as a range, all from status.json
    st.progress(min(max(frac, 0.0), 1.0),
                text=progress_text(shown) if shown_state in ("running", "queued") else None)
    note = timing_note(shown)
    if note:
        st.caption(note)
    if state in ("running", "queued") or live:
        row = st.container(horizontal=True)
        if row.button("Stop", key="train-stop",
                      help="Stop the step running now; a stopped pretraining keeps its best encoder and the "
                           "fine-tune starts from it." if len(live) > 1 else None):
            st.toast(stop_job(cur.path if cur is not None and live else run))
        if len(live) > 1 and row.button("Stop all steps", key="train-stop-all"):
            for s in live:
                stop_job(s.path)
            st.toast(f"Stopping {len(live)} steps.")
    elif state == "failed":
        st.error(f"The run failed: {st_.get('error')}")
    elif state == "cancelled":
        st.warning(st_.get("message") or "The run was stopped.")
    elif state == "finished":
        st.success("Finished. Open it on the **Explore** page"
                   + (": 'What pretraining changed' compares it with the run trained from scratch."
                      if any(s.role == "scratch" for s in steps) else "."))
    store = runs.RunStore(run)
    members = store.members()  # an ensemble trains its members one after the other: show the latest one's curves
    curve_of = next((mm for mm in reversed(members) if (mm.status() or {}).get("state") == "running"),
                    members[-1] if members else store)
    pre = next((s for s in steps if s.role == "pretraining"), None)
    if cur is not None and live and cur.role != "finetune":  # an earlier step of the job is running: its curves
        curve_of = runs.RunStore(cur.path)
    if curve_of is not store:
        st.caption(f"Training curves of {'member ' if members else ''}**{curve_of.id}**"
                   + (f" ({len(members)} member run(s) so far)." if members else
                      f": {next(s.title for s in steps if s.path == curve_of.path).lower()}."))
    _curves(curve_of, key="train-curves")
    if pre is not None and pre.path != curve_of.path and pre.state != "queued":
        st.markdown(f"**Pretraining run `{pre.path.name}`** ({pre.state})")
        _curves(runs.RunStore(pre.path), key="train-pre-curves")
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
    # read now, not when the page loaded: other jobs, never this one or its steps (they are shown above)
    others = runs.list_runs(runs_root())
    mine = {run.name, *(s.path.name for s in steps)}
    waiting = others[(others["state"] == "queued") & ~others["run_id"].isin(mine)] if len(others) else others
    if len(waiting):
        n = len(waiting)
        st.caption(f"{n} other job{'s' if n > 1 else ''} waiting in the queue: " + ", ".join(waiting["run_id"]))


if active and (runs_root() / active).is_dir():
    progress(runs_root() / active)
