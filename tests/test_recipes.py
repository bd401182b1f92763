"""Every shipped recipe loads, validates, builds its losses and points to data embtune can generate."""

from __future__ import annotations

from pathlib import Path

import pytest

from embtune.data.synthetic import PREFIX, write_synthetic
from embtune.data.synthetic_seeds import write_seed_data
from embtune.losses import build_loss
from embtune.training.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert {"pairs_mnrl.yaml", "sts_cosent.yaml"} <= {p.name for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads_and_builds_its_losses(path, tmp_path):
    cfg = load_recipe(path)
    synthetic = set(write_synthetic(tmp_path)) | set(write_seed_data(tmp_path / "seeds"))
    for dataset in cfg.datasets:
        params = dataset.loss.params
        loss = build_loss(dataset.loss.name, **params)
        shown = loss.config()  # what the model card prints: every recipe parameter, with the recipe's value
        assert set(params) <= set(shown), (set(params), shown)
        for key, value in params.items():
            if isinstance(value, str):  # names are shown canonically ('euclidean' -> TripletDistanceMetric...)
                assert build_loss(dataset.loss.name, **{**params, key: shown[key]}).config() == shown, key
            else:
                assert shown[key] == value, key
        assert build_loss(dataset.loss.name, **shown).config() == shown  # the card's config rebuilds the loss
        for p in (dataset.path, dataset.eval_path):
            if p and p.startswith(PREFIX):
                assert p[len(PREFIX):] in synthetic
    for evaluator in cfg.eval.evaluators:
        if evaluator.path.startswith(PREFIX):
            assert evaluator.path[len(PREFIX):] in synthetic
