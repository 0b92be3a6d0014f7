"""Contract tests run for every registered model (style guide: add a method, add it to a list)."""

from __future__ import annotations

import numpy as np
import pytest

from scapp.data.preprocess import PreprocessConfig, Recipe
from scapp.data.split import stratified_split
from scapp.data.validate import get_labels
from scapp.models import AVAILABLE, get_model_class
from scapp.models.base import FitData, Progress, config_from_dict


def _prepared(adata, model_cls):
    codes, classes, _ = get_labels(adata, "cell_type")
    split = stratified_split(codes, seed=0)
    genes = adata.var_names.tolist()
    recipe = Recipe.fit(adata.X, genes, PreprocessConfig(**model_cls.preprocess_defaults), train_idx=split.train)
    return recipe.transform(adata[:, recipe.genes].X), codes, classes, split  # Hydra's recipe drops rare genes


@pytest.fixture(scope="module", params=AVAILABLE)
def trained(request, pbmc_small):
    cls = get_model_class(request.param)
    Xp, y, classes, split = _prepared(pbmc_small, cls)
    # TabNet learns slowly on 280 cells: small batches give it enough optimizer steps.
    # Hydra: a small ensemble and few refinement epochs keep the whole pipeline to seconds on a CPU.
    opts = {"sims": {"max_epochs": 40, "batch_size": 64},
            "hydra": {"n_models": 4, "refine_epochs": 3, "ig_cells_per_class": 10, "batch_size": 128}}.get(cls.name, {})
    model = cls(config_from_dict(cls.Config, opts), n_features=Xp.shape[1], classes=classes, device="cpu")
    events = []
    model.fit(FitData(Xp[split.train], y[split.train]), FitData(Xp[split.valid], y[split.valid]),
              Progress(events.append))
    return cls, model, Xp, y, classes, events


def test_fit_emits_progress(trained):
    _, model, *_, events = trained
    assert events and any("valid_loss" in e for e in events)
    assert model.best_epoch is not None


def test_predict_proba_is_full_softmax(trained):
    _, model, Xp, y, classes, _ = trained
    p = model.predict_proba(Xp)
    assert p.shape == (Xp.shape[0], len(classes))
    assert np.allclose(p.sum(1), 1, atol=1e-5)
    assert (p >= 0).all()
    # learned something real: better than always predicting the largest class
    assert (p.argmax(1) == y).mean() > np.bincount(y).max() / len(y) - 0.05


def test_embed_shape(trained):
    cls, model, Xp, *_ = trained
    e = model.embed(Xp)
    if cls.has_embedding:
        assert e.shape[0] == Xp.shape[0] and e.ndim == 2
    else:
        assert e is None


def test_explain_shapes(trained):
    _, model, Xp, y, classes, _ = trained
    ex = model.explain(Xp, y)
    assert ex.class_scores.shape == (len(classes), Xp.shape[1])
    assert ex.global_importance.shape == (Xp.shape[1],)
    assert np.isclose(ex.global_importance.sum(), 1, atol=1e-4)


def test_save_load_round_trip(trained, tmp_path):
    cls, model, Xp, *_ = trained
    path = tmp_path / "model.safetensors"
    model.save_weights(str(path))
    other = cls(model.config, n_features=Xp.shape[1], classes=model.classes, device="cpu")
    other.load_weights(str(path))
    assert np.allclose(model.predict_logits(Xp), other.predict_logits(Xp), atol=1e-6)


def test_unknown_option_is_refused():
    from scapp.errors import ConfigError

    for name in AVAILABLE:
        with pytest.raises(ConfigError, match="Unknown option"):
            config_from_dict(get_model_class(name).Config, {"no_such_option": 1})
