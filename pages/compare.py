"""Compare runs trained on the same data: metrics side by side, agreement matrix, cells they disagree on."""

from __future__ import annotations

import re

import streamlit as st

from pages._ui import column_config, runs_root, set_run, show_error, show_figure, through_app
from scapp import runs
from scapp.errors import ScappError

through_app()  # a page opened on its own by a fresh server runs again through app.py
st.title("Compare runs")
st.caption("Two or more runs trained on the same file and label column: which is better, and on which cells do "
           "they disagree?")
table = runs.list_runs(runs_root())
if len(table):
    # a run stopped before its first epoch has no model; a cancelled one with its best model can be compared
    table = table[table["state"].isin(["finished", "cancelled"]) & table["has_model"]].sort_values(
        "run_id", ascending=False)
if len(table) < 2:
    st.info("Compare needs at least two finished runs: train another model (or the same one with other settings) "
            "on the **Train** page.")
    st.stop()

labels = {r.run_id: f"{r.run_id} · {r.model} · {r.dataset} ({r.label})" for r in table.itertuples()}


def short(run_id: str) -> str:
    """'logreg 11-25 07:28:23' for a standard run id (model and start time), else the id itself."""
    m = re.fullmatch(r"\d{4}(\d\d)(\d\d)-(\d\d)(\d\d)(\d\d)-(.+)-[0-9a-f]{6}", run_id)
    return f"{m[6]} {m[1]}-{m[2]} {m[3]}:{m[4]}:{m[5]}" if m else run_id


ids = set(table["run_id"])
if "compare-runs" in st.session_state:  # a run deleted meanwhile must not break the widget
    st.session_state["compare-runs"] = [r for r in st.session_state["compare-runs"] if r in ids]
else:  # the newest two finished runs on the same file and labels (a cancelled run is listed, not the default)
    def _newest_pair(t):
        groups = t.groupby(["dataset", "label"], sort=False)["run_id"].apply(list)
        return next((g[:2] for g in groups if len(g) >= 2), [])

    st.session_state["compare-runs"] = _newest_pair(table[table["state"] == "finished"]) or _newest_pair(table)
chosen = st.multiselect("Runs to compare", table["run_id"].tolist(), format_func=labels.get, key="compare-runs")
if len(chosen) < 2:
    st.info("Choose two or more runs.")
    st.stop()


# shared and read-only: st.cache_data would unpickle a copy on every hit (nothing in scapp unpickles)
@st.cache_resource(show_spinner="Reading the runs…", max_entries=16)
def _results(run_dir: str, stamp: str) -> dict:
    return runs.RunStore(run_dir).results()


scope = st.radio("Cells", ["test", "all"], horizontal=True, key="compare-scope",
                 format_func={"test": "test cells (held out by every run)",
                              "all": "all cells (includes cells the runs trained on)"}.get)
try:
    from scapp.evaluate.compare import compare_runs

    res = {r: _results(str(runs_root() / r), (runs.read_status(runs_root() / r) or {}).get("updated", ""))
           for r in chosen}
    comp = compare_runs({r: v["predictions"] for r, v in res.items()}, {r: v["metrics"] for r, v in res.items()},
                        {r: v["data"] for r, v in res.items()}, models={r: v["config"]["model"] for r, v in res.items()},
                        cells=scope)
except ScappError as e:
    show_error(e)
    st.stop()

from scapp.viz import agreement_heatmap, metrics_comparison_bars  # noqa: E402

name = "-vs-".join(r.rsplit("-", 1)[-1] for r in chosen)
if comp.note:
    st.info(comp.note)
c = st.columns(3)
c[0].metric("Cells compared", f"{comp.n_cells:,}")
c[1].metric("Same call by every run", f"{comp.agreement_frac:.1%}")
c[2].metric("Cells they disagree on", f"{comp.n_cells - int(comp.all_agree().sum()):,}")
st.dataframe(comp.metrics, hide_index=True, width="stretch", column_config=column_config(comp.metrics.columns))
show_figure(metrics_comparison_bars(comp.metrics, names={r: short(r) for r in chosen}), key="compare-metrics",
            name=f"compare-{name}-metrics", data=comp.metrics)

a, b = chosen[0], chosen[1]
if len(chosen) > 2:
    pa, pb = st.columns(2)
    a = pa.selectbox("Agreement matrix: rows", chosen, index=0, key="compare-a", format_func=short)
    b = pb.selectbox("columns", [r for r in chosen if r != a], index=0, key="compare-b", format_func=short)
show_figure(agreement_heatmap(comp.agreement(a, b), name_a=short(a), name_b=short(b)), key="compare-agree",
            name=f"compare-{name}-agreement", data=comp.agreement_long(a, b))

dis = comp.disagreements()
st.subheader(f"Cells where the runs disagree ({len(dis):,})")
if dis.empty:
    st.success("Every run gives every compared cell the same label.")
else:
    cfg = column_config(["cell_id", "true"])
    for r in chosen:
        cfg[f"pred_{r}"] = st.column_config.TextColumn(short(r), help=f"Predicted by run {r}")
        cfg[f"conf_{r}"] = st.column_config.ProgressColumn("confidence", min_value=0.0, max_value=1.0, format="%.2f",
                                                           help=f"Confidence of run {r}")
    st.dataframe(dis.head(1000), hide_index=True, width="stretch", column_config=cfg)
    if len(dis) > 1000:
        st.caption(f"First 1,000 of {len(dis):,} cells shown; the CSV has all of them.")
    st.download_button("Download disagreeing cells (CSV)", lambda: dis.to_csv(index=False),
                       file_name=f"compare-{name}-disagreements.csv", mime="text/csv", key="compare-dl",
                       on_click="ignore", icon=":material/download:")

st.subheader("Combine them")
st.caption("An ensemble averages these runs' calibrated probabilities, with weights picked on the validation cells. "
           "It needs runs on the same cells and split (same seed and fractions); it is saved as a run of its own, "
           "with copies of its members, and can be explored and used to annotate like any run.")
if st.button("Combine into an ensemble", key="compare-ensemble", icon=":material/merge:"):
    from scapp.train.ensemble import ensemble_runs

    new = runs.create_run("ensemble", root=runs_root())
    try:
        with st.spinner("Combining the runs…"):
            ens = ensemble_runs([str(runs_root() / r) for r in chosen], new)
    except ScappError as e:
        runs.write_status(new, "failed", error=str(e), has_model=False)
        show_error(e)
    else:
        set_run(new.name)
        weights = ", ".join(f"{m['model']} {m['weight']:.0%}" for m in ens["members"])
        st.success(f"Ensemble {new.name}: weights {weights}; test macro F1 {ens['test']['macro_f1']:.3f}.")
        st.page_link("pages/explore.py", label="Explore the ensemble", icon=":material/arrow_forward:")
