"""Model: pick a method and a preset; advanced options in a form."""

from __future__ import annotations

import streamlit as st

from pages._ui import load_current
from scapp.models import AVAILABLE
from scapp.models.presets import METHODS, PRESETS, estimate_seconds

st.title("Model")
loaded = None
try:
    loaded = load_current()
except Exception:  # noqa: BLE001 - the Data page shows the reason
    loaded = None
n_cells = loaded[1].n_cells if loaded else 3000

cols = st.columns(3)
for i, (name, meta) in enumerate(METHODS.items()):
    with cols[i % 3].container(border=True):
        st.markdown(f"#### {meta['title']}")
        st.write(meta["about"])
        st.caption(meta["paper"])
        if name in AVAILABLE:
            if st.button("Use this model", key=f"model-pick-{name}",
                         type="primary" if st.session_state.get("model", "sims") == name else "secondary"):
                st.session_state["model"] = name
        else:
            st.button("Coming", key=f"model-pick-{name}", disabled=True)

model = st.session_state.setdefault("model", "sims")
st.subheader(f"Settings for {METHODS[model]['title']}")
gpu = "GPU" in st.session_state.get("device_label", "")
labels = {p: f"{p} (~{estimate_seconds(model, p, n_cells, gpu=gpu) / 60:.1f} min on {n_cells:,} cells)"
          for p in PRESETS[model]}
preset = st.radio("Preset", list(PRESETS[model]), index=list(PRESETS[model]).index(
    st.session_state.get("preset", "default")) if st.session_state.get("preset") in PRESETS[model] else 1,
    format_func=labels.get, horizontal=True, key="model-preset")
st.session_state["preset"] = preset

with st.form("model-advanced"):
    st.markdown("**Advanced**")
    opts = dict(PRESETS[model][preset])
    overrides: dict = {}
    c = st.columns(4)
    seed = c[0].number_input("Seed", 0, 10_000, st.session_state.get("seed", 0), key="model-seed")
    device = c[1].selectbox("Device", ["auto", "cpu", "cuda"], key="model-device")
    if model == "sims":
        epochs = c[2].number_input("Max epochs", 1, 2000, opts.get("max_epochs", 500), key="model-epochs")
        lr = c[3].number_input("Learning rate", 1e-5, 1.0, 0.01, format="%.4f", key="model-lr")
        if int(epochs) != opts.get("max_epochs", 500):
            overrides["max_epochs"] = int(epochs)
        if abs(float(lr) - 0.01) > 1e-12:
            overrides["lr"] = float(lr)
    threshold = st.slider("Unassigned below confidence", 0.0, 1.0, 0.5, 0.05, key="model-threshold")
    if st.form_submit_button("Save settings"):
        st.session_state.update(model_overrides=overrides, overrides_model=model, seed=int(seed), device=device,
                                threshold=float(threshold))
        st.success("Saved. Start training on the Train page.")
st.page_link("pages/train.py", label="Next: train", icon=":material/arrow_forward:")
