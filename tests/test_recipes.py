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
        loss = build_loss(dataset.loss.name, **dataset.loss.params)
        assert loss.config() is not None
    for p in paths:  # relative to the recipe file: recipes/data/<a file generate.py writes>
        assert Path(p).parent == path.parent / "data" and Path(p).name in generated, p
