"""Time estimates (issue 11): calibrated per phase, scaled with cells × genes, learned from past runs, said
as 'about'; the trainer's phase events and the status the Train page reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
import torch

from scapp import runs
from scapp.models.registry import Phase, StepOutput
from scapp.train import timing
from scapp.train.progress import options_line, phase_line, progress_text, time_left, timing_note
from scapp.train.trainer import Trainer


# -- the estimator ----------------------------------------------------------------------------------------------
def test_builtin_estimate_is_the_calibration_and_scales_with_cells_times_genes():
    e = timing.estimate("sims", "fast", timing.DEMO_CELLS, timing.DEMO_GENES, records=[])
    cal = timing.builtin("sims")["fast"]
    assert e.seconds == pytest.approx(timing.STARTUP_S + sum(v for k, v in cal.items() if k not in ("epoch_s", "epochs")))
    assert "built-in" in e.source
    double = timing.estimate("sims", "fast", 2 * timing.DEMO_CELLS, 2 * timing.DEMO_GENES, records=[])
    assert double.seconds - double.startup_s == pytest.approx(4 * (e.seconds - e.startup_s))
    assert double.epoch_s == pytest.approx(4 * e.epoch_s)
    # presets cost what their options say: thorough above default above fast
    assert (timing.estimate("hydra", "fast", records=[]).seconds < timing.estimate("hydra", "default", records=[]).seconds
            < timing.estimate("hydra", "thorough", records=[]).seconds)


def test_a_runs_own_options_are_estimated_as_the_preset_they_are():
    opts = timing.resolved_options("hydra", "fast")
    assert timing.preset_of("hydra", opts) == "fast"
    assert timing.estimate("hydra", options=opts, records=[]).seconds == pytest.approx(
        timing.estimate("hydra", "fast", records=[]).seconds)
    assert timing.preset_of("hydra", {**opts, "n_models": 7}) is None


def test_auto_sums_its_members():
    auto = timing.estimate("auto", "fast", records=[])
    members = timing.resolved_options("auto", "fast")["members"]
    parts = [timing.estimate(m["model"], m["preset"], records=[]) for m in members]
    assert auto.seconds == pytest.approx(timing.STARTUP_S + sum(p.seconds - p.startup_s for p in parts)
                                         + timing.COMBINE_S)


def _record(seconds: dict[str, float], *, n_cells=1000, n_genes=1000, host=None, preset="fast", **kw):
    m = timing.machine()
    rec = timing.timing_record("sims", timing.resolved_options("sims", preset), n_cells=n_cells, n_genes=n_genes,
                               device="cpu", phases=seconds, epoch_s=1.0, epochs_run=10,
                               total_s=sum(seconds.values()))
    if host is not None:
        rec["host"] = host
    rec.update(kw)
    assert rec["host"] == (host or m["host"])
    return rec


def test_past_runs_on_this_machine_win_by_their_median_scaled_to_the_size(tmp_path):
    recs = [_record({"load": 1.0, "main": main, "evaluate": 2.0}) for main in (10.0, 30.0, 20.0)]
    recs.append(_record({"main": 5000.0}, host="another-machine"))  # not this machine
    recs.append(_record({"main": 7000.0}, preset="thorough"))  # other options
    stores = [runs.RunStore(tmp_path / f"run{i}") for i in range(len(recs))]
    stores[1] = runs.RunStore(tmp_path / "auto").member("1-sims")  # an ensemble's member runs count too
    for store, rec in zip(stores, recs):
        store.path.mkdir(parents=True)
        store.write_status("finished")
        store.write_timing(rec)
    e = timing.estimate("sims", "fast", 2000, 1000, root=tmp_path)  # twice the cells of the records
    assert e.phases == pytest.approx({"load": 2.0, "main": 40.0, "evaluate": 4.0})
    assert e.n_past == 3 and "median of 3 past runs" in e.source
    assert e.after("main") == pytest.approx(4.0) and e.after("load") == pytest.approx(44.0)
    # a GPU run learns only from GPU runs: none here, so the calibration divided by the GPU speed-up
    assert "built-in" in timing.estimate("sims", "fast", 2000, 1000, root=tmp_path, gpu=True).source
    assert len(runs.timing_records(tmp_path)) == 5
    assert json.loads((tmp_path / "run0" / "timing.json").read_text())["device"] == "cpu"


def test_remaining_is_a_range_from_patience_to_max_epochs_plus_later_phases():
    est = timing.Estimate({"load": 1.0, "main": 50.0, "refine": 100.0, "evaluate": 10.0}, "test")
    lo, hi = timing.remaining(est, "main", phase_low=5.0, phase_high=30.0, in_phase_s=0.0)
    assert lo == pytest.approx(5.0 + 0.8 * 110.0) and hi == pytest.approx(30.0 + 1.25 * 110.0)
    # a phase without its own measurement: what is left of its estimate, scaled by how slow the run goes
    lo, hi = timing.remaining(est, "refine", phase_low=None, phase_high=None, in_phase_s=40.0, speed=2.0)
    assert lo == pytest.approx(160.0 + 0.8 * 20.0) and hi == pytest.approx(160.0 + 1.25 * 20.0)
    assert timing.remaining(None, "main", phase_low=None, phase_high=None, in_phase_s=0.0) is None


@pytest.mark.parametrize(("lo", "hi", "text"), [(70, 200, "about 1–3.5 min"), (20, 45, "about 20–45 s"),
                                                 (2, 2, "about 2 s"), (300, 1000, "about 5–17 min")])
def test_ranges_are_said_as_about(lo, hi, text):
    assert timing.about_range(lo, hi) == text


def test_about_rounds_as_a_person_would():
    assert [timing.about(s) for s in (3, 44, 233, 5400)] == ["about 3 s", "about 45 s", "about 4 min",
                                                             "about 1.5 h"]


# -- the trainer's phase events ---------------------------------------------------------------------------------
def _phase(name: str, key: str | None, epochs: int, patience: int | None = None) -> Phase:
    net = torch.nn.Linear(3, 1)
    X = torch.randn(40, 3)

    def step(idx):
        return StepOutput(net(X[idx]).square().mean(), len(idx))

    return Phase(name=name, key=key, module=net, optimizer=torch.optim.SGD(net.parameters(), lr=0.01), step=step,
                 max_epochs=epochs, n_items=40, batch_size=10, validate=lambda: {"valid_loss": 1.0},
                 monitor="valid_loss" if patience else None, patience=patience)


def test_every_phase_announces_itself_and_counts_its_steps():
    events: list[dict] = []
    tr = Trainer(events.append)
    tr.run(_phase("training the VAE", None, 6, patience=2))  # valid loss never improves: stops after 3
    tr.run(_phase("refining 25 models", "refine", 3))
    list(tr.iterate("Integrated Gradients", range(4), unit="class", key="ig"))
    seen = [(e["phase"], e.get("phase_key"), e.get("phase_unit"), e.get("phase_step"), e.get("phase_steps"))
            for e in events]
    assert seen[0] == ("training the VAE", "main", "epoch", 0, 6)
    assert ("training the VAE", "main", "epoch", 3, 6) in seen and ("training the VAE", "main", "epoch", 4, 6) \
        not in seen
    assert [s[3] for s in seen if s[0] == "refining 25 models"] == [0, 1, 2, 3]
    assert [s[3] for s in seen if s[0] == "Integrated Gradients"] == [0, 1, 2, 3, 4]
    assert all(s[2] == "class" and s[1] == "ig" for s in seen if s[0] == "Integrated Gradients")
    ep = [e for e in events if e.get("phase_key") == "main" and e.get("phase_step")]
    # the early-stopping range: patience left (low) to every epoch left (high)
    assert all(e["eta_s"] <= e["eta_max_s"] for e in ep)
    assert ep[0]["eta_max_s"] == pytest.approx(ep[0]["eta_s"] * 5 / 2, rel=1e-6)


def test_the_engine_writes_phase_count_and_time_range_for_the_page(tmp_path):
    from scapp.train.engine import _Reporter

    run = tmp_path / "r"
    run.mkdir()
    runs.write_status(run, "running", started=runs.now_iso())
    rep = _Reporter(run, max_epochs=6)
    rep.set_estimate(timing.Estimate({"load": 1.0, "main": 6.0, "refine": 60.0, "evaluate": 5.0}, "test",
                                     epoch_s=1.0))
    tr = Trainer(rep.emit)
    tr.run(_phase("refining 25 models", "refine", 2))
    st = runs.read_status(run)
    assert (st["phase"], st["phase_step"], st["phase_steps"], st["phase_unit"]) == ("refining 25 models", 2, 2,
                                                                                   "epoch")
    assert phase_line(st) == "refining 25 models: epoch 2/2"
    assert st["eta_s"] < st["eta_max_s"] and st["estimate_s"] == pytest.approx(72.0 + timing.STARTUP_S)
    assert time_left(st).startswith("about ") and time_left(st).endswith(" left") and "–" in time_left(st)
    assert progress_text(st).startswith("refining 25 models: epoch 2/2 · about ")
    rep.enter("evaluate", "evaluating", 0.88)
    st = runs.read_status(run)
    assert st["phase"] == "evaluating" and st["phase_steps"] is None and phase_line(st) == "evaluating"


def test_page_words_options_and_timing():
    assert options_line({"max_epochs": 40, "early_stopping_patience": 5, "n_d": 8}) == \
        "max epochs 40 · patience 5 · n_d 8"
    assert "{" not in options_line({"members": [{"model": "sims", "preset": "fast"}], "balance": True})
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    done = {"state": "finished", "started": t0.isoformat(), "finished": (t0 + timedelta(seconds=130)).isoformat(),
            "estimate_s": 120.0, "estimate_source": "x"}
    assert timing_note(done) == "Took 2 min 10 s of training; estimate was about 2 min in all (x)."
    run = {"state": "running", "started": t0.isoformat(), "estimate_s": 120.0}
    assert timing_note(run, now=t0 + timedelta(seconds=30)).startswith("Running for 30 s; estimated about 2 min")
