"""Model: pick a method and a preset; advanced options in a form."""

from __future__ import annotations

import streamlit as st

from pages._ui import device_label, load_current
from scapp.models import REGISTRY, get_spec
from scapp.models.presets import OPTION_LABELS, estimate_seconds, option_defaults

st.title("Model")
loaded = None
try:
    loaded = load_current()
except Exception:  # noqa: BLE001 - the Data page shows the reason
    loaded = None
n_cells = loaded[1].n_cells if loaded else 3000

cols = st.columns(3)
# methods trained from data; an ensemble of finished runs is made on the Compare page
for i, (name, spec) in enumerate((n, s) for n, s in REGISTRY.items() if s.trainable):
    with cols[i % 3].container(border=True):
        st.markdown(f"#### {spec.title}")
        st.write(spec.about)
        st.caption(spec.paper)
        if spec.available:
            if st.button("Use this model", key=f"model-pick-{name}",
                         type="primary" if st.session_state.get("model", "sims") == name else "secondary"):
                st.session_state["model"] = name
        else:
            st.button("Coming", key=f"model-pick-{name}", disabled=True)

model = st.session_state.setdefault("model", "sims")
spec = get_spec(model)
st.subheader(f"Settings for {spec.title}")
gpu = device_label().startswith("GPU")
labels = {p: f"{p} (~{estimate_seconds(model, p, n_cells, gpu=gpu) / 60:.1f} min on {n_cells:,} cells)"
          for p in spec.presets}
preset = st.radio("Preset", list(spec.presets), index=list(spec.presets).index(
    st.session_state.get("preset", "default")) if st.session_state.get("preset") in spec.presets else 1,
    format_func=labels.get, horizontal=True, key="model-preset")
st.session_state["preset"] = preset
if spec.preset_notes.get(preset):
    st.caption(spec.preset_notes[preset])

with st.form("model-advanced"):
    st.markdown("**Advanced**")
    overrides: dict = {}
    c = st.columns(4)
    seed = c[0].number_input("Seed", 0, 10_000, st.session_state.get("seed", 0), key="model-seed")
    device = c[1].selectbox("Device", ["auto", "cpu", "cuda"], key="model-device")
    defaults = option_defaults(model, preset)
    oc = st.columns(4)
    for i, (name, default) in enumerate(defaults.items()):
        label = OPTION_LABELS.get(name, name.replace("_", " ").capitalize())
        key = f"model-opt-{model}-{name}"
        col = oc[i % 4]
        if isinstance(default, bool):
            val = col.checkbox(label, value=default, key=key)
        elif isinstance(default, int):
            val = int(col.number_input(label, 0, 10**7, default, key=key))
        elif isinstance(default, float):
            val = float(col.number_input(label, 0.0, 1e6, default, format="%g", key=key))
        else:
            continue
        if val != default:
            overrides[name] = val
    threshold = st.slider("Unassigned below confidence", 0.0, 1.0, 0.5, 0.05, key="model-threshold")
    if st.form_submit_button("Save settings"):
        st.session_state.update(model_overrides=overrides, overrides_model=model, seed=int(seed), device=device,
                                threshold=float(threshold))
        st.success("Saved. Start training on the Train page.")
st.page_link("pages/train.py", label="Next: train", icon=":material/arrow_forward:")
