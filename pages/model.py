"""Model: pick a method and a preset; advanced options in a form that always shows what Train will use."""

from __future__ import annotations

import streamlit as st

from pages._ui import device_label, load_current, through_app
from scapp.models import REGISTRY, get_spec
from scapp.models.presets import OPTION_HELP, OPTION_LABELS, option_defaults
from scapp.train.timing import about, effective_genes, estimate_seconds

through_app()  # a page opened on its own by a fresh server runs again through app.py
st.title("Model")
loaded = None
try:
    loaded = load_current()
except Exception:  # noqa: BLE001 - the Data page shows the reason
    loaded = None
n_cells = loaded[1].n_cells if loaded else 3000


def _pick(name: str) -> None:
    """A callback, so the card's button is highlighted in the same run as the click."""
    st.session_state["model"] = name


# Without a label column (Data page) only methods that learn without labels can train: chosen by capability.
no_label = bool(st.session_state.get("no_label"))
trainable = {n: s for n, s in REGISTRY.items() if s.trainable}  # an ensemble of finished runs: the Compare page
usable = [n for n, s in trainable.items() if s.available and not (no_label and s.capabilities.needs_labels)]
if no_label:
    st.info("No label column was chosen on the Data page: only methods that learn without labels are offered.",
            icon=":material/label_off:")
    if st.session_state.get("model", "sims") not in usable and usable:
        st.session_state["model"] = usable[0]
cols = st.columns(3)
# without labels, the methods that can train come first (the others stay visible, greyed out)
cards = sorted(trainable.items(), key=lambda kv: kv[0] not in usable) if no_label else list(trainable.items())
for i, (name, spec) in enumerate(cards):
    with cols[i % 3].container(border=True):
        st.markdown(f"#### {spec.title}")
        st.write(spec.about)
        st.caption(spec.paper)
        if name in usable:
            st.button("Use this model", key=f"model-pick-{name}", on_click=_pick, args=(name,),
                      type="primary" if st.session_state.get("model", "sims") == name else "secondary")
        elif spec.available:
            st.button("Needs a label column", key=f"model-pick-{name}", disabled=True,
                      help="This method learns cell types from labels: choose a label column on the Data page.")
        else:
            st.button("Coming", key=f"model-pick-{name}", disabled=True)

model = st.session_state.setdefault("model", "sims")
spec = get_spec(model)
st.subheader(f"Settings for {spec.title}")
gpu = device_label().startswith("GPU")
n_genes = effective_genes(loaded[0].X) if loaded else None  # the genes a run's cost scales with
labels = {p: f"{p} ({about(estimate_seconds(model, p, n_cells, n_genes, gpu=gpu))} on {n_cells:,} cells)"
          for p in spec.presets}  # measured on this machine, then learned from its past runs (scapp.train.timing)
names = list(spec.presets)
if st.session_state.get("preset") not in names:
    st.session_state["preset"] = "default" if "default" in names else names[0]


def _preset_changed() -> None:
    """Advanced settings saved under the previous preset no longer apply: the form (and Train) show the new one's."""
    st.session_state["preset"] = st.session_state["model-preset"]
    st.session_state.pop("model_overrides", None)


preset = st.radio("Preset", names, index=names.index(st.session_state["preset"]), format_func=labels.get,
                  horizontal=True, key="model-preset", on_change=_preset_changed, help=OPTION_HELP["preset"])
st.session_state["preset"] = preset
if spec.preset_notes.get(preset):
    st.caption(spec.preset_notes[preset])

# What Train will use: the preset's values, with what was saved for this model and preset on top. The option
# widgets are keyed by model *and* preset: a widget with a key keeps its value when only its default changes, so
# one key per option would keep showing (and saving) the previous preset's numbers.
saved = (st.session_state.get("model_overrides") or {}) if st.session_state.get("overrides_model") == model else {}
defaults = option_defaults(model, preset)
with st.form("model-advanced"):
    st.markdown("**Advanced**")
    overrides: dict = {}
    c = st.columns(4)
    seed = c[0].number_input("Seed", 0, 10_000, int(st.session_state.get("seed", 0)), key="model-seed",
                             help=OPTION_HELP["seed"])
    devices = ["auto", "cpu", "cuda"]
    device = c[1].selectbox("Device", devices, index=devices.index(st.session_state.get("device", "auto"))
                            if st.session_state.get("device", "auto") in devices else 0, key="model-device",
                            help=OPTION_HELP["device"])
    oc = st.columns(4)
    for i, (name, default) in enumerate(defaults.items()):
        label = OPTION_LABELS.get(name, name.replace("_", " ").capitalize())
        key = f"model-opt-{model}-{preset}-{name}"
        shown = saved.get(name, default)
        col = oc[i % 4]
        kw = {"key": key, "help": OPTION_HELP.get(name)}
        if isinstance(default, bool):
            val = col.checkbox(label, value=bool(shown), **kw)
        elif isinstance(default, int):
            val = int(col.number_input(label, 0, 10**7, int(shown), **kw))
        elif isinstance(default, float):
            val = float(col.number_input(label, 0.0, 1e6, float(shown), format="%g", **kw))
        else:
            continue
        if val != default:
            overrides[name] = val
    threshold = st.slider("Unassigned below confidence", 0.0, 1.0, float(st.session_state.get("threshold", 0.5)),
                          0.05, key="model-threshold", help=OPTION_HELP["threshold"])
    if st.form_submit_button("Save settings"):
        st.session_state.update(model_overrides=overrides, overrides_model=model, seed=int(seed), device=device,
                                threshold=float(threshold))
        st.success("Saved. Start training on the Train page.")
if spec.capabilities.pretrains and not no_label and st.session_state.get("dataset_path"):
    from pages._pretrain import pretraining_form

    pretraining_form(model, {**option_defaults(model, preset), **saved}, loaded)
st.page_link("pages/train.py", label="Next: train", icon=":material/arrow_forward:")
