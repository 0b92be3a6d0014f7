"""Issue 11, defect 3: one explained cell's expression, read back from the training file, and what each kind of
explanation means."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from scapp import cli, runs
from scapp.errors import InputError
from scapp.explain.cells import explained_cells_expression
from scapp.explain.kinds import KINDS, describe
from scapp.models.registry import EXPLAIN_KINDS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.fixture(scope="module")
def sims_run(tmp_path_factory) -> runs.RunStore:
    out = tmp_path_factory.mktemp("explain-cells") / "run"
    rc = cli.main(["train", str(FIXTURES / "pbmc_small.h5ad"), "--label", "cell_type", "--model", "sims",
                   "--epochs", "1", "--out", str(out), "--device", "cpu", "--quiet"])
    assert rc == 0
    return runs.RunStore(out)


def test_explained_cells_expression_is_the_log_normalised_counts_of_those_cells(sims_run):
    X, features = explained_cells_expression(sims_run)
    ex = sims_run.explain()
    assert X.shape == (len(ex["cell_index"]), len(features)) == ex["cell_masks"].shape
    a = ad.read_h5ad(FIXTURES / "pbmc_small.h5ad")
    ids = sims_run.predictions(columns=["cell_id"])["cell_id"].to_numpy()[ex["cell_index"]]
    genes = sims_run.genes()  # what the recipe normalises over
    counts = a[ids, genes].X
    counts = counts.toarray() if hasattr(counts, "toarray") else np.asarray(counts)
    expect = np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)
    cols = [genes.index(f) for f in features]
    np.testing.assert_allclose(X.toarray(), expect[:, cols], rtol=1e-5, atol=1e-5)


def test_a_moved_training_file_is_a_clear_error(sims_run, tmp_path):
    import shutil

    copy = runs.RunStore(tmp_path / "moved")
    shutil.copytree(sims_run.path, copy.path)
    cfg = copy.config()
    copy.write_config({**cfg, "data": str(tmp_path / "gone.h5ad")})
    with pytest.raises(InputError, match="not there any more"):
        explained_cells_expression(copy)


def test_every_explanation_kind_says_what_it_means():
    assert set(KINDS) == set(EXPLAIN_KINDS)
    mask = describe("tabnet_mask")
    assert "looked at" in mask.meaning and "not evidence" in mask.meaning and "no sign" in mask.meaning
    assert describe(None).meaning == "" and describe("unknown").cell_value == "score"
