"""Display maps of big runs: a class-stratified sample, its UMAP stored in the run, the job's state on disk."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from scapp import runs
from scapp.evaluate.embedding import sample_umap
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


def test_cell_map_state_on_disk(tmp_path):
    run = tmp_path / "run"
    (run / "artifacts").mkdir(parents=True)
    pd.DataFrame({"cell_id": [f"c{i}" for i in range(40)], "true": ["a", "b"] * 20,
                  "p_a": np.linspace(0, 1, 40), "p_b": np.linspace(1, 0, 40)}).to_parquet(run / "predictions.parquet")
    path = runs.cell_map_path(run, 15)
    assert path.name == "umap_proba_15.safetensors"  # no latent space: a map of the class probabilities
    assert runs.cell_map_state(run, 15) == ("missing", None)
    path.with_suffix(".running").write_text(str(os.getpid()))
    assert runs.cell_map_state(run, 15)[0] == "running"
    path.with_suffix(".running").write_text("999999999")  # a job that died
    assert runs.cell_map_state(run, 15)[0] == "missing"
    arrays = runs.compute_cell_map(run, 15)
    assert runs.cell_map_state(run, 15) == ("ready", None) and not path.with_suffix(".running").exists()
    assert arrays["umap"].shape == (15, 2) and set(runs.read_arrays(path)) == {"index", "umap"}
    runs.write_arrays(run / "artifacts" / "embedding.safetensors", {"embedding": np.zeros((40, 3), np.float32)})
    assert runs.cell_map_path(run, 15).name == "umap_15.safetensors"


def test_cli_map_refuses_a_run_without_predictions(tmp_path, capsys):
    from scapp import cli

    run = tmp_path / "empty-run"
    run.mkdir()
    runs.write_status(run, "running")
    assert cli.main(["map", str(run)]) == cli.EXIT_USER
    assert "no predictions yet" in capsys.readouterr().err
