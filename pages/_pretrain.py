"""The Model page's pretraining choice, for a method that declares ``pretrains`` (widgets only: the files offered,
the runs that fit and the jobs Train queues come from ``scapp.train.pretrain_jobs``)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import streamlit as st

from pages._ui import runs_root, save_upload, uploads_folder
from scapp.errors import ScappError
from scapp.train.pretrain_jobs import METHOD_NAMES as OBJECTIVES

MODES = {"scratch": "No pretraining", "pretrain": "Pretrain on unlabeled cells first",
         "from_run": "Start from a pretraining run"}
STATE = "pretraining"
"""Session key of the chosen plan (a dict, or None): what the Train page reads. Widget state is dropped when the
user leaves the page, so the widgets start from it."""


def saved_plan(model: str, data: str | None) -> Any:
    """The plan chosen on the Model page for ``model`` on ``data``, as a ``PretrainPlan``; None when there is none
    (or it was made for another model or file)."""
    d = st.session_state.get(STATE)
    if not d or d.get("model") != model or d.get("data") != data:
        return None
    from scapp.train.pretrain_jobs import PretrainPlan

    try:
        return PretrainPlan(**{k: v for k, v in d.items() if k not in ("model", "data", "mode")})
    except ScappError:
        return None


def _file_options(data: str | None) -> dict[str, str]:
    """The files offered to pretrain on: ``pretraining_file_options`` plus the files uploaded to the app (stored by
    content in sub-folders of the uploads folder, ``scapp.uploads``)."""
    from scapp.train.pretrain_jobs import DATA_SUFFIXES, pretraining_file_options
    from scapp.uploads import stored_uploads

    root = uploads_folder()
    options = pretraining_file_options(data, query=st.session_state.get("query_path"), uploads=root)
    for p in stored_uploads(root):
        if p.name.lower().endswith(DATA_SUFFIXES):
            options.setdefault(str(p.resolve()), f"{p.name} (uploaded)")
    return options


def _default(key: str, value: Any) -> None:
    if key not in st.session_state:
        st.session_state[key] = value


def pretraining_form(model: str, opts: dict[str, Any], loaded: Any) -> None:
    """Pretraining options under the Model page's settings; the choice is kept in ``st.session_state[STATE]``."""
    from scapp.train.pretrain_jobs import (
        PretrainPlan,
        fitting_pretraining_runs,
        pretrain_methods,
    )

    data = st.session_state.get("dataset_path")
    prev = st.session_state.get(STATE) or {}
    prev = prev if prev.get("model") == model and prev.get("data") == data else {}
    st.markdown("**Pretraining on unlabelled cells**")
    st.caption("The network can first learn from cells without labels (hide half of each cell's genes, learn to "
               "fill them in), then fine-tune on your labels. In the published study this helped when it used far "
               "more cells than the labelled file (other samples, atlases, the query); pretraining on the same "
               "cells gave no gain.")
    _default("model-pre-mode", prev.get("mode", "scratch"))
    mode = st.radio("Pretraining", list(MODES), format_func=MODES.get, horizontal=True, key="model-pre-mode",
                    label_visibility="collapsed")
    plan: PretrainPlan | None = None
    if mode == "pretrain":
        options = _file_options(data)
        _default("model-pre-files", [f for f in prev.get("files", []) if f in options] or list(options)[:1])
        up = st.file_uploader("Add a file of unlabelled cells (raw counts)",
                              type=["h5ad", "h5", "loom", "csv", "tsv", "gz", "zip"], key="model-pre-upload")
        if up is not None:
            added = str(save_upload(up).resolve())
            options = _file_options(data)
            if st.session_state.get("model-pre-uploaded") != added:  # select it once, when it arrives
                st.session_state["model-pre-uploaded"] = added
                st.session_state["model-pre-files"] = [*st.session_state.get("model-pre-files", []), added]
        st.session_state["model-pre-files"] = [f for f in st.session_state["model-pre-files"] if f in options]
        files = st.multiselect("Cells to pretrain on", list(options), format_func=options.get, key="model-pre-files",
                               help="Their labels, if any, are ignored. Every file is matched to the genes of the "
                                    "labelled file by name; genes a file lacks count as zero.")
        methods = list(pretrain_methods(model))
        c = st.columns(3)
        _default("model-pre-method", prev.get("method") if prev.get("method") in methods else methods[0])
        method = c[0].selectbox("Pretraining objective", methods, format_func=lambda m: OBJECTIVES.get(m, m),
                                key="model-pre-method",
                                help="Masked autoencoder: hide half of each cell's genes and learn to fill them "
                                     "in; it was best for cell-type annotation in the published study. Contrastive: "
                                     "embed two noisy, masked views of a cell alike; best for frozen embeddings and "
                                     "kNN in scSSL-Bench.")
        _default("model-pre-epochs", int(prev.get("epochs") or opts.get("max_epochs") or 50))
        epochs = int(c[1].number_input("Pretraining epochs", 1, 100_000, key="model-pre-epochs",
                                       help="The most passes over the pretraining cells; it stops earlier once the "
                                            "loss on held-out cells stops improving."))
        if files:
            plan = PretrainPlan(files=files, method=method, epochs=epochs)
        else:
            st.warning("Choose at least one file of cells to pretrain on.")
    elif mode == "from_run":
        table = fitting_pretraining_runs(model, loaded[0].var, runs_root()) if loaded else None
        if table is None or table.empty:
            st.info("No finished pretraining run fits this file's genes yet: choose 'Pretrain on unlabeled cells "
                    "first', or run `python -m scapp pretrain FILE ... --out RUN`.")
        else:
            labels = {r.path: (f"{r.run_id} · {OBJECTIVES.get(r.method, r.method)} · {r.cells:,} cells · "
                               f"{r.shared:.0%} of its {r.genes:,} genes in this file") for r in table.itertuples()}
            _default("model-pre-run", prev.get("from_run") if prev.get("from_run") in labels else next(iter(labels)))
            picked = st.selectbox("Pretraining run", list(labels), format_func=labels.get, key="model-pre-run")
            plan = PretrainPlan(from_run=picked)
    if plan is not None:
        _default("model-pre-scratch", bool(prev.get("scratch", True)))
        plan.scratch = st.checkbox("Also train from scratch for comparison", key="model-pre-scratch",
                                   help="The same network, settings, seed and split, without pretraining: Explore "
                                        "then shows what pretraining changed, cell type by cell type. Doubles the "
                                        "fine-tuning time.")
    st.session_state[STATE] = {"model": model, "data": data, "mode": mode, **asdict(plan)} if plan else None
    if plan is not None:
        from pathlib import Path

        from pages._ui import device_label
        from scapp.train.pretrain_jobs import plan_line, pretraining_time
        from scapp.train.timing import effective_genes

        known = {str(Path(data).resolve()): int(loaded[0].n_obs)} if loaded and data else None
        took = pretraining_time(plan, model, opts, effective_genes(loaded[0].X) if loaded else 2000,
                                known_cells=known, gpu=device_label().startswith("GPU"), root=runs_root())
        st.caption("The Train page will run: " + plan_line(plan) + "." + (f" {took[0].upper()}{took[1:]}." if took
                                                                          else ""))


def pretraining_view(run: Any, config: dict[str, Any], colors: Any = None) -> None:
    """Explore's 'What pretraining changed': a fine-tuned run beside the same method trained from scratch on the
    same split, per-class recall side by side (the comparison itself: ``scapp.evaluate.compare``)."""
    from pathlib import Path

    from pages._ui import show_error, show_figure
    from scapp import runs
    from scapp.evaluate.compare import pretraining_effect
    from scapp.train.pretrain_jobs import pretraining_summary, scratch_candidates
    from scapp.viz import pretraining_recall_bars

    pre = config.get("from_run")
    if pre and Path(pre).is_dir():
        p = pretraining_summary(pre)
        loss = f", held-out loss {p['valid_loss']:.4f}" if isinstance(p.get("valid_loss"), float) else ""
        st.markdown(f"Started from pretraining run `{p['run_id']}` ({OBJECTIVES.get(p['method'], p['method'])}): "
                    f"{p['cells']:,} cells from {', '.join(p['files']) or '?'}, {p['epochs']} epochs{loss}.")
    else:
        st.caption(f"Started from pretraining run `{Path(str(pre)).name}`, which is no longer on disk.")
    cands = scratch_candidates(run, runs_root())
    if cands.empty:
        st.info("No run of the same method trained from scratch on this file and labels yet. Train one with the same "
                "seed (Model page: 'No pretraining'), or keep 'Also train from scratch for comparison' ticked next "
                "time.")
        return
    labels = {r.run_id: f"{r.run_id} · seed {r.seed} · {r.state}" + (" · trained alongside" if r.queued_with else "")
              for r in cands.itertuples()}
    key = f"explore-scratch-{Path(run).name}"
    if key in st.session_state and st.session_state[key] not in labels:
        del st.session_state[key]
    rid = st.selectbox("Compared with (the same method trained from scratch)", list(labels), format_func=labels.get,
                       key=key, help="Runs of the same method on the same file and labels that did not start from "
                                     "a pretraining run; the one trained alongside comes first.")
    row = cands.set_index("run_id").loc[rid]
    if row["state"] != "finished":
        st.info(f"Run {rid} (from scratch) is {row['state']}: the comparison appears once it has finished.",
                icon=":material/hourglass_top:")
        return
    me, other = runs.RunStore(run), runs.RunStore(row["path"])
    cols = ["cell_id", "split", "true", "pred", "confidence"]
    try:
        eff = pretraining_effect(me.id, other.id, {me.id: me.predictions(cols), other.id: other.predictions(cols)},
                                 {me.id: me.data_info(), other.id: other.data_info()})
    except Exception as e:  # noqa: BLE001 - CompareError or an unreadable run: say so, keep the page
        show_error(e)
        return
    met = eff.metrics.set_index("arm")
    c = st.columns(3)
    for col, (k, name) in zip(c, (("macro_f1", "Macro F1"), ("balanced_accuracy", "Balanced accuracy"),
                                  ("accuracy", "Accuracy"))):
        col.metric(f"{name}, pretrained", f"{met.loc['pretrained', k]:.3f}",
                   delta=f"{eff.change(k):+.3f} vs from scratch ({met.loc['from scratch', k]:.3f})",
                   delta_color="normal" if abs(eff.change(k)) >= 0.0005 else "off")
    show_figure(pretraining_recall_bars(eff.per_class), key="explore-pretrain-recall",
                name=f"{me.id}-vs-{other.id}-recall", data=eff.per_class)
    st.caption(f"Both runs scored on the same {eff.n_cells:,} test cells. " + (eff.note + " " if eff.note else "")
               + "In the published study, pretraining raised PBMC macro-F1 from 0.70 to 0.75 only with about 20 "
                 "million auxiliary cells, and not at all when it used the cells being fine-tuned on; with a few "
                 "thousand cells a change near zero is the expected result, and a small one may be seed noise "
                 "(train both with another seed to see how much the scores move).")
