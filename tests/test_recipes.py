"""Every shipped recipe loads, validates, builds its losses and points to data recipes/data/generate.py writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from embtune.losses import build_loss
from embtune.training.recipe import load_recipe

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert {"pairs_mnrl.yaml", "sts_cosent.yaml"} <= {p.name for p in RECIPES}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads_and_builds_its_losses(path, recipes_dir):
    cfg = load_recipe(path)
    generated = {p.name for p in (recipes_dir / "data").glob("*.jsonl")}
    paths = [p for d in cfg.datasets for p in (d.path, d.eval_path) if p] + [e.path for e in cfg.eval.evaluators]
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
    for p in paths:  # relative to the recipe file: recipes/data/<a file generate.py writes>
        assert Path(p).parent == path.parent / "data" and Path(p).name in generated, p
