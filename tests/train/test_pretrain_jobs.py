"""scapp.train.pretrain_jobs (issue 13): what the Model page offers for pretraining, the checks before queueing,
the chain of queued jobs (pretraining → from scratch → fine-tune) and how a queued pretraining job is run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scapp import runs
from scapp.errors import ConfigError, InputError, LabelError
from scapp.train.engine import TrainRequest
from scapp.train.pretrain_jobs import (
    PretrainPlan,
    check_plan,
    current_step,
    fitting_pretraining_runs,
    job_of,
    job_steps,
    plan_line,
    pretrain_methods,
    pretraining_file_options,
    scratch_candidates,
    start_pretrain_jobs,
)

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "assets" / "demo_pbmc3k.h5ad"
QUERY = REPO / "assets" / "demo_pbmc4k_query.h5ad"


class _Proc:
    pid = os.getpid()


@pytest.fixture
def no_processes(monkeypatch):
    from scapp.train import job

    started = []
    monkeypatch.setattr(job, "spawn", lambda cmd, *a, **k: started.append(cmd) or _Proc())
    return started


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """A labelled file and an unlabelled one sharing its genes (synthetic counts, 300 cells × 300 genes)."""
    from scapp.data.demo import synthetic

    d = tmp_path_factory.mktemp("files")
    ref = synthetic(300, 300, seed=0)
    other = synthetic(200, 300, seed=1)
    del other.obs["cell_type"]
    ref.write_h5ad(d / "ref.h5ad")
    other.write_h5ad(d / "other.h5ad")
    return d / "ref.h5ad", d / "other.h5ad"


@pytest.fixture(scope="module")
def pretrained(small_files, tmp_path_factory):
    """A finished tiny pretraining run on both files (seconds)."""
    from scapp import cli

    ref, other = small_files
    root = tmp_path_factory.mktemp("pre-runs")
    cfg = root.parent / "tiny.json"
    cfg.write_text(json.dumps({"encoder_widths": [32, 16]}))
    assert cli.main(["pretrain", str(ref), str(other), "--config", str(cfg), "--epochs", "2", "--out",
                     str(root / "pre"), "--device", "cpu", "--quiet"]) == 0
    return root / "pre"


def test_file_options_put_other_cells_first_and_list_uploads(tmp_path):
    opts = pretraining_file_options(str(DEMO))
    assert list(opts) == [str(QUERY.resolve()), str(DEMO.resolve())]  # the demo's query is offered with the demo
    assert "query" in opts[str(QUERY.resolve())] and "training file" in opts[str(DEMO.resolve())]
    up = tmp_path / "uploads"
    up.mkdir()
    (up / "atlas.h5ad").write_bytes(b"x")
    (up / "notes.pdf").write_bytes(b"x")  # not a data file
    opts = pretraining_file_options(str(DEMO), query=str(QUERY), uploads=up)
    assert list(opts) == [str(QUERY.resolve()), str(DEMO.resolve()), str((up / "atlas.h5ad").resolve())]
    assert opts[str(QUERY.resolve())].endswith("(the query)") and "uploaded" in opts[str(up / "atlas.h5ad")]
    assert pretraining_file_options(None) == {}


def test_objectives_follow_the_encoder_a_method_can_load():
    assert pretrain_methods("ssl") == ("mae", "vicreg", "simclr")
    assert pretrain_methods("sims") == ("tabnet",)  # SIMS starts from TabNet's encoder
    assert pretrain_methods("logreg") == ()


def test_plan_needs_files_or_a_run_and_says_what_it_will_do():
    with pytest.raises(ConfigError):
        PretrainPlan()
    with pytest.raises(ConfigError):
        PretrainPlan(files=["a.h5ad"], from_run="/x/run")
    line = plan_line(PretrainPlan(files=["/d/a.h5ad", "/d/b.h5ad"], epochs=5))
    assert line == ("pretraining (masked autoencoder, up to 5 epochs) on a.h5ad, b.h5ad, then fine-tuning from it; "
                    "and the same network from scratch on the same split, for comparison")
    assert plan_line(PretrainPlan(from_run="/r/pre-1", scratch=False)) == "fine-tuning from pretraining run pre-1"


def test_check_plan_refuses_what_the_jobs_would_fail_on(small_files, pretrained, tmp_path):
    ref, other = small_files
    req = TrainRequest(data=str(ref), label="cell_type", model="ssl")
    check_plan(req, PretrainPlan(files=[str(other)]))
    check_plan(req, PretrainPlan(from_run=str(pretrained)))
    with pytest.raises(ConfigError, match="does not pretrain"):
        check_plan(TrainRequest(data=str(ref), label="cell_type", model="logreg"), PretrainPlan(files=[str(other)]))
    with pytest.raises(LabelError, match="label column"):
        check_plan(TrainRequest(data=str(ref), label=None, model="ssl"), PretrainPlan(files=[str(other)]))
    with pytest.raises(InputError, match="gone"):
        check_plan(req, PretrainPlan(files=[str(tmp_path / "missing.h5ad")]))
    with pytest.raises(ConfigError, match="tabnet"):
        check_plan(req, PretrainPlan(files=[str(other)], method="tabnet"))
    with pytest.raises(ConfigError, match="at least 1 epoch"):
        check_plan(req, PretrainPlan(files=[str(other)], epochs=0))


def test_fitting_runs_need_a_matching_objective_and_shared_genes(small_files, pretrained):
    import anndata as ad

    ref, _ = small_files
    var = ad.read_h5ad(ref).var
    got = fitting_pretraining_runs("ssl", var, pretrained.parent)
    assert got["run_id"].tolist() == ["pre"] and got.loc[0, "method"] == "mae"
    assert got.loc[0, "cells"] == 500 and got.loc[0, "shared"] == 1.0
    assert fitting_pretraining_runs("sims", var, pretrained.parent).empty  # an MLP encoder: not SIMS's
    assert fitting_pretraining_runs("ssl", [f"other{i}" for i in range(300)], pretrained.parent).empty
    half = pd.DataFrame(index=[*var.index[:100], *[f"x{i}" for i in range(200)]])
    assert fitting_pretraining_runs("ssl", half, pretrained.parent).empty  # a third of its genes: too few


def test_start_queues_pretraining_scratch_then_finetune_and_run_job_pretrains(small_files, tmp_path, no_processes,
                                                                              monkeypatch):
    from scapp import cli
    from scapp.train.job import queued_work
    from scapp.train.pretrain import PretrainRequest, run_pretraining

    ref, other = small_files
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(root))
    req = TrainRequest(data=str(ref), label="cell_type", model="ssl", device="cpu",
                       model_config={"encoder_widths": [32, 16], "max_epochs": 2, "pretrain_epochs": 0})
    jobs = start_pretrain_jobs(req, PretrainPlan(files=[str(other), str(ref)], epochs=2), root=root)
    assert [Path(c[-1]) for c in no_processes] == [jobs.pretraining, jobs.scratch, jobs.finetune]
    steps = job_steps(jobs.finetune)
    assert [s.role for s in steps] == ["pretraining", "scratch", "finetune"] and all(s.queued_here for s in steps)
    assert [s.path for s in job_steps(jobs.pretraining)] == [s.path for s in steps]  # any step finds the chain
    assert current_step(steps).role == "pretraining"
    pre_req, work = queued_work(jobs.pretraining)
    assert isinstance(pre_req, PretrainRequest) and work is run_pretraining
    assert pre_req.genes_of == str(ref) and pre_req.model_config == {"encoder_widths": [32, 16], "max_epochs": 2}
    assert queued_work(jobs.finetune)[0].from_run == str(jobs.pretraining)
    assert scratch_candidates(jobs.finetune, root)["run_id"].tolist() == [jobs.scratch.name]  # queued with it

    for p in (jobs.pretraining, jobs.scratch, jobs.finetune):
        assert cli.main(["run-job", str(p)]) == 0
    assert runs.RunStore(jobs.pretraining).config()["kind"] == "pretraining"
    ft = runs.RunStore(jobs.finetune)
    assert ft.config()["from_run"] == str(jobs.pretraining)
    assert ft.metrics()["fit_info"]["warm_start"]["run"] == jobs.pretraining.name
    # the from-scratch control differs from the fine-tune only in its starting weights: same genes, same network
    sc = runs.RunStore(jobs.scratch)
    assert sc.genes() == ft.genes() == runs.RunStore(jobs.pretraining).genes()
    assert "warm_start" not in sc.metrics()["fit_info"] and sc.config()["like_run"] == str(jobs.pretraining)
    assert sc.config()["model_config"]["encoder_widths"] == ft.config()["model_config"]["encoder_widths"]
    assert all(s.state == "finished" for s in job_steps(jobs.finetune))
    assert current_step(job_steps(jobs.finetune)).role == "finetune"
    cands = scratch_candidates(jobs.finetune, root)
    assert cands["run_id"].tolist() == [jobs.scratch.name] and bool(cands.loc[0, "queued_with"])


def test_a_failed_pretraining_fails_the_finetune_with_its_reason(small_files, tmp_path, no_processes, monkeypatch):
    from scapp import cli

    ref, _ = small_files
    root = tmp_path / "runs"
    root.mkdir()
    monkeypatch.setenv("SCAPP_RUNS_DIR", str(root))
    bad = tmp_path / "bad.csv"
    bad.write_text("cell,g1\nc1,0.5\n")  # not counts, two genes: pretraining refuses it
    req = TrainRequest(data=str(ref), label="cell_type", model="ssl", device="cpu",
                       model_config={"encoder_widths": [32, 16], "max_epochs": 1})
    jobs = start_pretrain_jobs(req, PretrainPlan(files=[str(bad)], epochs=1, scratch=False), root=root)
    assert jobs.scratch is None
    assert cli.main(["run-job", str(jobs.pretraining)]) != 0
    assert cli.main(["run-job", str(jobs.finetune)]) != 0
    st = runs.read_status(jobs.finetune)
    assert st["state"] == "failed" and jobs.pretraining.name in st["error"] and "no trained encoder" in st["error"]


def test_scratch_candidates_are_same_method_file_and_labels_without_pretraining(small_files, pretrained, tmp_path):
    from scapp import cli

    ref, _ = small_files
    root = tmp_path / "runs"
    cfg = tmp_path / "tiny.json"
    cfg.write_text(json.dumps({"encoder_widths": [32, 16], "max_epochs": 1}))
    common = ["--config", str(cfg), "--device", "cpu", "--quiet"]
    assert cli.main(["train", str(ref), "--label", "cell_type", "--model", "ssl", "--from", str(pretrained),
                     "--out", str(root / "ft"), *common]) == 0
    assert cli.main(["train", str(ref), "--label", "cell_type", "--model", "ssl", "--out", str(root / "scratch"),
                     *common]) == 0
    assert cli.main(["train", str(ref), "--label", "cell_type", "--model", "logreg", "--out",
                     str(root / "other-method"), "--device", "cpu", "--quiet"]) == 0
    assert cli.main(["train", str(ref), "--label", "cell_type", "--model", "ssl", "--from", str(pretrained),
                     "--out", str(root / "ft2"), *common]) == 0
    got = scratch_candidates(root / "ft", root)
    assert got["run_id"].tolist() == ["scratch"] and not got.loc[0, "queued_with"]
    assert np.isfinite(got.loc[0, "macro_f1"])
    assert job_of(root / "ft") == {} and job_steps(root / "ft") == []  # a CLI run belongs to no job


def test_pretraining_time_counts_the_files_cells_and_learns_from_past_runs(small_files, pretrained, tmp_path):
    """The Model page's pretraining estimate: cells counted from the h5ad files without reading them, scaled with
    epochs, and once a pretraining run of the same network has finished here, its measured speed is what counts."""
    from scapp.train import timing
    from scapp.train.pretrain_jobs import cells_in_file, pretraining_time

    ref, other = small_files
    assert cells_in_file(ref) == 300 and cells_in_file(other) == 200
    assert cells_in_file(tmp_path / "x.csv") is None and cells_in_file(tmp_path / "gone.h5ad") is None
    plan = PretrainPlan(files=[str(ref), str(other)], epochs=10)
    empty = tmp_path / "no-runs"
    empty.mkdir()
    text = pretraining_time(plan, "ssl", {}, 300, root=empty)
    assert "10 epochs over 500 cells" in text and "built-in calibration" in text
    ten = timing.pretraining_estimate("mae", 475, 300, 10, architecture={"encoder_widths": [512, 512, 256, 256, 64]},
                                      records=[])
    hundred = timing.pretraining_estimate("mae", 475, 300, 100, architecture={"encoder_widths": [512, 512, 256, 256,
                                                                                                 64]}, records=[])
    assert hundred.seconds - hundred.startup_s == pytest.approx(10 * (ten.seconds - ten.startup_s))
    assert pretraining_time(PretrainPlan(from_run=str(pretrained)), "ssl", {}, 300) is None
    # the tiny run in ``pretrained`` recorded its speed: an estimate of the same network on its root learns from it
    rec = runs.RunStore(pretrained).timing()
    arch = runs.RunStore(pretrained).config()["architecture"]
    assert arch["encoder_widths"] == [32, 16]
    assert rec["model"] == timing.pretraining_key("mae", arch) and rec["epochs_run"] == 2
    learned = timing.pretraining_estimate("mae", rec["n_cells"], rec["n_genes"], 4, architecture=arch,
                                          root=pretrained.parent)
    assert learned.n_past == 1 and learned.epoch_s == pytest.approx(rec["epoch_s"])
    assert learned.phases["main"] == pytest.approx(4 * rec["epoch_s"])
    assert timing.pretraining_estimate("vicreg", 475, 300, 4, architecture=arch,
                                       root=pretrained.parent).n_past == 0  # another objective: not learned from
