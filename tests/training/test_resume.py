"""Exact resume: from a checkpoint, and after the training process is killed with SIGKILL."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from embtune import EmbeddingModel
from embtune.errors import EmbtuneError
from embtune.training.checkpoint import find_last_checkpoint, list_checkpoints
from embtune.training.loop import train
from embtune.training.recipe import config_from_dict


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in EmbeddingModel.load(folder).state_dict().items()}


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max(float((a[k].float() - b[k].float()).abs().max()) for k in a)
    assert worst <= atol, worst


@pytest.mark.slow
def test_resume_from_checkpoint_gives_the_same_final_weights(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    common = {"max_steps": 10, "save_steps": 4, "gradient_accumulation_steps": 2, "warmup_steps": 2}
    full = train(config_from_dict(config_factory(tiny_bert_dir, pairs_file, tmp_path / "full", **common)))

    part = tmp_path / "part"
    train(config_from_dict(config_factory(tiny_bert_dir, pairs_file, part, **common)))
    # pretend the run died right after checkpoint-4: drop later checkpoints and the final model
    for ckpt in list_checkpoints(part):
        if ckpt.name != "checkpoint-4":
            shutil.rmtree(ckpt)
    resumed = train(config_from_dict(
        config_factory(tiny_bert_dir, pairs_file, part, resume_from_checkpoint="last", **common)))
    _assert_same(_weights(full.model_path), _weights(resumed.model_path), atol=1e-6)
    log_full = [json.loads(x) for x in full.log_path.read_text().splitlines()]
    log_resumed = [json.loads(x) for x in resumed.log_path.read_text().splitlines()]
    assert [r["loss"] for r in log_full] == pytest.approx([r["loss"] for r in log_resumed], abs=1e-6)


def test_fresh_run_refuses_an_existing_output_dir(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    cfg = config_factory(tiny_bert_dir, pairs_file, tmp_path / "run", max_steps=2, save_steps=2)
    train(config_from_dict(cfg))
    with pytest.raises(EmbtuneError, match="resume_from_checkpoint: last"):
        train(config_from_dict(cfg))
    cfg["args"]["overwrite_output_dir"] = True
    assert train(config_from_dict(cfg)).metrics["global_step"] == 2


CHILD = """
import json, sys, time
import embtune.training.checkpoint as checkpoint
from embtune.training.loop import train
from embtune.training.recipe import config_from_dict

save = checkpoint.save_checkpoint
def slow_save(*a, **k):  # leave the parent time to kill us between checkpoints
    out = save(*a, **k)
    time.sleep(0.5)
    return out
checkpoint.save_checkpoint = slow_save
train(config_from_dict(json.loads(sys.argv[1])))
"""


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    common = {"max_steps": 12, "save_steps": 2, "save_total_limit": 2}
    full = train(config_from_dict(config_factory(tiny_bert_dir, pairs_file, tmp_path / "full", **common)))

    out = tmp_path / "killed"
    cfg = config_factory(tiny_bert_dir, pairs_file, out, **common)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "src")}
    child = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while find_last_checkpoint(out) is None:
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no checkpoint within 60 s"
        time.sleep(0.02)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not (out / "modules.json").exists()  # it really died before the end

    cfg["args"]["resume_from_checkpoint"] = "last"
    resumed = train(config_from_dict(cfg))
    assert resumed.metrics["global_step"] == 12
    _assert_same(_weights(full.model_path), _weights(resumed.model_path), atol=1e-6)
