"""Non-finite and absurd hyperparameters fail when the recipe loads (one line naming the key), not as a NaN
model hours later."""

from __future__ import annotations

from pathlib import Path

import pytest

from embtune.errors import EmbtuneError
from embtune.training.config import TrainArgs
from embtune.training.recipe import load_recipe

RECIPE = """
model:
  name: bundled:all-MiniLM-L6-v2
datasets:
  - path: data.jsonl
    columns: {anchor: q, positive: a}
    loss: {name: mnrl, scale: 10}
args:
  output_dir: out
"""


@pytest.mark.parametrize(("override", "key"), [
    ("args.learning_rate=.inf", "args.learning_rate"),
    ("args.learning_rate=.nan", "args.learning_rate"),
    ("args.learning_rate=-.inf", "args.learning_rate"),
    ("args.learning_rate=1e30", "args.learning_rate"),
    ("args.learning_rate=5", "args.learning_rate"),
    ("args.learning_rate=1e999", "args.learning_rate"),
    ("args.weight_decay=.nan", "args.weight_decay"),
    ("args.weight_decay=1e6", "args.weight_decay"),
    ("args.adam_epsilon=.inf", "args.adam_epsilon"),
    ("args.max_grad_norm=.inf", "args.max_grad_norm"),
    ("args.num_train_epochs=.inf", "args.num_train_epochs"),
    ("args.warmup_ratio=.nan", "args.warmup_ratio"),
    ("args.warmup_steps=-1", "args.warmup_steps"),
    ("args.adam_beta1=.nan", "args.adam_beta1"),
    ("datasets.0.loss.scale=.inf", "scale"),
    ("datasets.0.loss.scale=.nan", "scale"),
])
def test_non_finite_or_absurd_values_fail_at_load(override, key, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    with pytest.raises(EmbtuneError) as info:
        load_recipe(recipe, [override])
    text = str(info.value)
    assert key in text and "\n" not in text and str(recipe) in text, text


def test_values_in_a_recipe_file_are_checked_too(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace("  output_dir: out", "  output_dir: out\n  learning_rate: .inf"))
    with pytest.raises(EmbtuneError, match=r"args\.learning_rate: inf is not a finite number"):
        load_recipe(recipe)


def test_python_api_is_checked_the_same_way():
    with pytest.raises(EmbtuneError, match="args.learning_rate"):
        TrainArgs(learning_rate=float("nan"))
    with pytest.raises(EmbtuneError, match="far above any working value"):
        TrainArgs(learning_rate=1e30)
    TrainArgs(learning_rate=1.0, weight_decay=0.1)  # large but possible values still load


def test_cli_gives_one_line(tmp_path: Path, capsys):
    from embtune.cli import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    assert main(["train", str(recipe), "args.learning_rate=.inf"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("embtune: error:") and "learning_rate" in err
