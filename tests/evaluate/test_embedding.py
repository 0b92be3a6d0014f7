"""Display maps of big runs: a class-stratified sample, its UMAP stored in the run, the job's state on disk."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from scapp import runs
from scapp.evaluate.embedding import compute_cell_map, sample_umap
from scapp.sampling import downsample_idx


def test_sample_umap_maps_a_stratified_sample_only():
    rng = np.random.default_rng(0)
    labels = np.array(["common"] * 990 + ["rare"] * 10)
    latent = rng.normal(size=(1000, 5)).astype(np.float32)
    out = sample_umap(latent, labels, max_cells=15)  # < 20 cells: PCA stand-in, no umap-learn needed here
    idx = out["index"]
    assert out["umap"].shape == (len(idx), 2) and len(idx) == 15
    assert np.all(np.diff(idx) > 0) and (labels[idx] == "rare").any()
    np.testing.assert_array_equal(idx, downsample_idx(labels, 15))  # the same sample every time
    with pytest.raises(ValueError, match="labels"):
        sample_umap(latent, labels[:10])


def test_compute_cell_map_stores_the_map_in_the_run(tmp_path):
    store = runs.RunStore(tmp_path / "run")
    store.write_predictions(pd.DataFrame({"cell_id": [f"c{i}" for i in range(40)], "true": ["a", "b"] * 20,
                                          "p_a": np.linspace(0, 1, 40), "p_b": np.linspace(1, 0, 40)}))
    path = store.cell_map_path(15)
    assert path.name == "umap_proba_15.safetensors"  # no latent space: a map of the class probabilities
    assert store.cell_map_state(15) == ("missing", None)
    store.mark_cell_map_running(15, os.getpid())
    assert store.cell_map_state(15)[0] == "running"
    store.mark_cell_map_running(15, 999999999)  # a job that died
    assert store.cell_map_state(15)[0] == "missing"
    arrays = compute_cell_map(store, 15)
    assert store.cell_map_state(15) == ("ready", None)
    assert arrays["umap"].shape == (15, 2) and set(store.cell_map(15)) == {"index", "umap"}
    store.write_embedding(np.zeros((40, 3), np.float32))
    assert store.cell_map_path(15).name == "umap_15.safetensors"
    arrays = compute_cell_map(store, 15)  # on the latent space now
    assert store.cell_map_state(15) == ("ready", None) and arrays["umap"].shape == (15, 2)


def test_compute_cell_map_records_a_failure(tmp_path):
    store = runs.RunStore(tmp_path / "run")
    store.write_predictions(pd.DataFrame({"cell_id": ["c0", "c1"], "p_a": [0.5, 0.5]}))  # no "true" column
    with pytest.raises(KeyError):
        compute_cell_map(store, 15)
    state, msg = store.cell_map_state(15)
    assert state == "failed" and "could not be computed (KeyError" in msg


def test_cli_map_refuses_a_run_without_predictions(tmp_path, capsys):
    from scapp import cli

    run = tmp_path / "empty-run"
    run.mkdir()
    runs.write_status(run, "running")
    assert cli.main(["map", str(run)]) == cli.EXIT_USER
    assert "no predictions yet" in capsys.readouterr().err
