"""Recipe loading and config validation: strict keys, types, impossible combinations, overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.training.config import TrainArgs
from embtune.training.optim import build_scheduler
from embtune.training.recipe import config_from_dict, load_recipe

RECIPE = """
model:
  name: bundled:all-MiniLM-L6-v2
datasets:
  - path: data.jsonl
    columns: {anchor: q, positive: a}
    loss: {name: mnrl, scale: 10}
args:
  learning_rate: 2e-5
  output_dir: out
"""


def _recipe(tmp_path: Path, text: str = RECIPE) -> Path:
    path = tmp_path / "r.yaml"
    path.write_text(text)
    return path


def test_loads_types_and_defaults(tmp_path):
    cfg = load_recipe(_recipe(tmp_path), ["args.max_steps=10", "datasets.0.max_rows=5"])
    assert cfg.args.learning_rate == 2e-5  # YAML 1.1 reads 2e-5 as text; accepted as a number
    assert cfg.args.max_steps == 10 and cfg.datasets[0].max_rows == 5
    assert cfg.datasets[0].loss.name == "mnrl" and cfg.datasets[0].loss.params == {"scale": 10}
    assert cfg.args.per_device_train_batch_size == 8 and cfg.args.seed == 42 and cfg.args.bf16 is None
    assert cfg.args.non_default() == {"learning_rate": 2e-5, "max_steps": 10}


def test_unknown_key_has_did_you_mean_and_dotted_path(tmp_path):
    with pytest.raises(EmbtuneError, match=r"r\.yaml: unknown key 'args\.lerning_rate'; did you mean 'args\.learning_rate'"):
        load_recipe(_recipe(tmp_path), ["args.lerning_rate=1e-4"])
    with pytest.raises(EmbtuneError, match=r"unknown key 'datasets\[0\]\.colums'"):
        load_recipe(_recipe(tmp_path, RECIPE.replace("columns:", "colums:")))


def test_wrong_type_names_key_type_and_value(tmp_path):
    with pytest.raises(EmbtuneError, match=r"args\.per_device_train_batch_size: expected an integer, got 'lots'"):
        load_recipe(_recipe(tmp_path), ["args.per_device_train_batch_size=lots"])
    with pytest.raises(EmbtuneError, match=r"args\.bf16: expected true/false, got 'yes please'"):
        load_recipe(_recipe(tmp_path), ["args.bf16=yes please"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"learning_rate": -1.0}, "learning_rate must be >= 0"),
        ({"warmup_ratio": 1.5}, r"warmup_ratio must be in \[0, 1\]"),
        ({"warmup_ratio": 0.1, "warmup_steps": 10}, "mutually exclusive"),
        ({"bf16": True, "fp16": True}, "choose one precision"),
        ({"eval_strategy": "steps"}, "eval_steps is not set"),
        ({"load_best_model_at_end": True}, "needs evaluation"),
        ({"load_best_model_at_end": True, "eval_strategy": "epoch", "save_strategy": "steps"}, "save_strategy == eval_strategy"),
        ({"lr_scheduler_type": "cosine_restarts"}, "is not one of linear"),
        ({"max_steps": 0}, "max_steps must be -1"),
    ],
)
def test_invalid_args_fail_at_load(args, message):
    with pytest.raises(EmbtuneError, match=message):
        TrainArgs(**args)


def test_errors_name_the_recipe_file(tmp_path):
    with pytest.raises(EmbtuneError, match=r"r\.yaml: args\.warmup_ratio must be in"):
        load_recipe(_recipe(tmp_path), ["args.warmup_ratio=2"])


def test_eval_strategy_needs_something_to_evaluate():
    raw = {"datasets": [{"path": "x.jsonl"}], "args": {"eval_strategy": "epoch"}}
    with pytest.raises(EmbtuneError, match="nothing to evaluate"):
        config_from_dict(raw)


def test_warmup_ratio_rounds_up():
    assert TrainArgs(warmup_ratio=0.1).warmup(25) == 3  # ceil, as Hugging Face computes it


@pytest.mark.parametrize("kind", ["linear", "cosine", "constant", "constant_with_warmup"])
@pytest.mark.parametrize("warmup_steps, total", [(0, 10), (2, 10), (3, 7), (0, 1), (5, 5), (3, 11)])
def test_schedules_equal_transformers_get_scheduler(kind, warmup_steps, total):
    from transformers import get_scheduler

    rates = []
    for build in (lambda o: build_scheduler(o, TrainArgs(lr_scheduler_type=kind, warmup_steps=warmup_steps), total),
                  lambda o: get_scheduler(kind, o, num_warmup_steps=warmup_steps, num_training_steps=total)):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=3e-5)
        scheduler, seen = build(optimizer), []
        for _ in range(total + 3):  # past the end too
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
        rates.append(seen)
    assert rates[0] == rates[1]
