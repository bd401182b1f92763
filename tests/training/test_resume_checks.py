"""Resume refuses a checkpoint trained on other data, another loss or another learning-rate schedule (one
line naming what changed); ``resume_force`` / ``--resume-force`` accepts with a warning and applies the new
settings."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from embtune.cli import main
from embtune.errors import EmbtuneError
from embtune.training.loop import train
from embtune.training.recipe import config_from_dict

COMMON = {"max_steps": 6, "save_steps": 3, "logging_steps": 1}

# this folder's conftest helpers, by path (a bare `import conftest` is ambiguous when several test folders run)
_spec = importlib.util.spec_from_file_location("training_conftest", Path(__file__).with_name("conftest.py"))
helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(helpers)


@pytest.fixture(scope="module")
def stopped_run(tiny_bert_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A 6-step run interrupted right after its checkpoint at step 3: (its output folder, its data file)."""
    import embtune.training.loop as loop

    root = tmp_path_factory.mktemp("resume-checks")
    data = helpers.write_pairs(root / "pairs.jsonl", n=24)
    out = root / "out"
    real = loop._save

    def save_then_stop(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(loop, "_save", save_then_stop)
        with pytest.raises(KeyboardInterrupt):
            train(config_from_dict(helpers.make_config(tiny_bert_dir, data, out, **COMMON)))
    assert (out / "checkpoints" / "checkpoint-3").is_dir()  # kept: the run is resumable
    return out, data


def _resume_cfg(tiny_bert_dir, data: Path, out: Path, tmp_path: Path, loss=None, **args) -> dict:
    copy = tmp_path / "out"
    shutil.copytree(out, copy)  # each test resumes its own copy of the stopped run
    cfg = helpers.make_config(tiny_bert_dir, data, copy, resume_from_checkpoint="last", **{**COMMON, **args})
    if loss is not None:
        cfg["datasets"][0]["loss"] = loss
    return cfg


def _changed_data(data: Path, tmp_path: Path, rows: int | None = None, edit: bool = False) -> Path:
    lines = data.read_text().splitlines(keepends=True)
    if rows is not None:
        lines = lines[:rows]
    if edit:
        row = json.loads(lines[5])
        row["positive"] += " too"
        lines[5] = json.dumps(row) + "\n"
    path = tmp_path / "data" / data.name  # same file name: same dataset name, different content
    path.parent.mkdir()
    path.write_text("".join(lines))
    return path


@pytest.mark.parametrize(("change", "message"), [
    ("rows", "dataset 'pairs' changed (24 -> 20 rows)"),
    ("content", "dataset 'pairs' changed (same 24 rows, different content)"),
    ("loss", "the loss of dataset 'pairs' changed (mnrl() -> mnrl(scale=10.0))"),
    ("learning_rate", "the learning-rate schedule changed (learning_rate 0.001 -> 0.002)"),
    ("scheduler", "lr_scheduler_type linear -> cosine"),
    ("max_steps", "total_steps 6 -> 9"),
])
def test_resume_refuses_a_changed_run(change, message, stopped_run, tiny_bert_dir, tmp_path):
    out, data = stopped_run
    kwargs = {
        "rows": lambda: {"data": _changed_data(data, tmp_path, rows=20)},
        "content": lambda: {"data": _changed_data(data, tmp_path, edit=True)},
        "loss": lambda: {"loss": {"name": "mnrl", "scale": 10.0}},
        "learning_rate": lambda: {"learning_rate": 2e-3},
        "scheduler": lambda: {"lr_scheduler_type": "cosine"},
        "max_steps": lambda: {"max_steps": 9},
    }[change]()
    cfg = _resume_cfg(tiny_bert_dir, kwargs.pop("data", data), out, tmp_path, **kwargs)
    with pytest.raises(EmbtuneError) as info:
        train(config_from_dict(cfg))
    text = str(info.value)
    assert message in text and "checkpoint-3" in text and "--resume-force" in text, text
    assert "\n" not in text


def test_resume_with_unchanged_settings_passes(stopped_run, tiny_bert_dir, tmp_path):
    out, data = stopped_run
    result = train(config_from_dict(_resume_cfg(tiny_bert_dir, data, out, tmp_path)))
    assert result.metrics["global_step"] == 6


def test_resume_force_accepts_with_a_warning_and_uses_the_new_learning_rate(stopped_run, tiny_bert_dir, tmp_path):
    out, data = stopped_run
    cfg = _resume_cfg(tiny_bert_dir, data, out, tmp_path, learning_rate=2e-3, lr_scheduler_type="constant")
    with pytest.warns(UserWarning, match="learning_rate 0.001 -> 0.002.*--resume-force"):
        result = train(config_from_dict(cfg), resume_force=True)
    assert result.metrics["global_step"] == 6
    rows = [json.loads(line) for line in result.log_path.read_text().splitlines()]
    assert [r["learning_rate"] for r in rows if r["step"] > 3] == [2e-3] * 3  # the new constant schedule


def test_cli_resume_force_flag(stopped_run, tiny_bert_dir, tmp_path, capsys):
    import yaml

    out, data = stopped_run
    cfg = _resume_cfg(tiny_bert_dir, _changed_data(data, tmp_path, rows=20), out, tmp_path)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(recipe)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "24 -> 20 rows" in err
    assert main(["train", str(recipe), "--resume-force"]) == 0
    err = capsys.readouterr().err
    assert "embtune: warning: resuming" in err and "24 -> 20 rows" in err
