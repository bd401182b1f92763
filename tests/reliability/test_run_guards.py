"""One run per output folder, failed starts leave no trace, non-finite training stops cleanly.

- a second `embtune train` into a folder another live run holds fails at once, naming that run's pid; the
  lock of a SIGKILLed run does not block the next one;
- a run that fails before its first checkpoint (bad metric name, a non-finite loss at step 1, a data
  error after an overwrite run's setup) leaves the output folder exactly as it found it;
- a non-finite loss or gradient stops training with one line (step, dataset, last good checkpoint), saves
  nothing non-finite, and the JSONL log stays strict JSON.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from reliability_helpers import SRC, assert_one_line_error, pair_rows, run_embtune, snapshot, write_recipe

import embtune.training.loop as loop
from embtune.cli import main
from embtune.losses.in_batch import MultipleNegativesRankingLoss
from embtune.models.embedding_model import EmbeddingModel
from embtune.training.checkpoint import list_checkpoints
from embtune.training.lock import lock_path
from embtune.training.log import JsonlLogger

ARGS = {"max_steps": 4, "save_steps": 2, "logging_steps": 1, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("guard-data") / "pairs.csv"
    path.write_text("anchor,positive\n" + pair_rows(16, score=False))
    return path


def _strict_rows(path: Path) -> list[dict]:
    def refuse(constant: str):
        raise AssertionError(f"{path} holds {constant}, which is not JSON")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


# --- the lock -----------------------------------------------------------------------------------------

HOLDER = """
import sys, time
import embtune.training.loop as loop
real = loop._optimizer_step
def slow(*args, **kwargs):
    print("training", flush=True)
    time.sleep(600)
loop._optimizer_step = slow
from embtune.cli import main
sys.exit(main(["train", sys.argv[1]]))
"""


@pytest.mark.slow  # two child processes and two runs: ~20-50 s on 2 shared cores
def test_second_run_into_a_locked_folder_fails_at_once_naming_the_pid(model_dir, data_file, tmp_path):
    recipe = write_recipe(tmp_path, model_dir, data_file, args=ARGS)
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(recipe)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line in holder.stdout:  # the data report's summary and other progress come first
            if line.strip() == "training":
                break
        else:
            raise AssertionError(holder.stderr.read()[-2000:])
        before = snapshot(tmp_path / "out")
        started = time.monotonic()
        second = run_embtune("train", str(recipe), "args.overwrite_output_dir=true")
        assert_one_line_error(second.returncode, second.stderr, str(tmp_path / "out"), f"pid {holder.pid}",
                              "another embtune train")
        assert time.monotonic() - started < 60  # at once: it does not wait for the holder
        assert snapshot(tmp_path / "out") == before  # the second run touched nothing (not even with overwrite)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    # the dead holder's lock file is still there, but the kernel released its lock: it does not block
    assert lock_path(tmp_path / "out").exists()
    rerun = run_embtune("train", str(recipe), "args.overwrite_output_dir=true")
    assert rerun.returncode == 0, rerun.stderr
    assert (tmp_path / "out" / "modules.json").is_file()
    assert not lock_path(tmp_path / "out").exists()  # released and removed at the end of the run


def test_the_lock_is_per_folder_not_per_spelling(model_dir, data_file, tmp_path, monkeypatch):
    """`out` and `./x/../out` are one folder: a run holding one blocks the other (in-process, no child)."""
    from embtune.training.lock import output_lock

    with output_lock(tmp_path / "out"):
        with pytest.raises(loop.EmbtuneError, match=f"pid {os.getpid()}"):
            with output_lock(tmp_path / "x" / ".." / "out"):
                pass
    with output_lock(tmp_path / "out"):  # released: taken again
        pass


# --- failed starts leave the folder as they found it ------------------------------------------------


def test_misspelt_metric_fails_before_anything_is_written(model_dir, data_file, tmp_path, capsys):
    dev = tmp_path / "dev.csv"
    dev.write_text("s1,s2,score\n" + "".join(f"the red cat {i},a dog {i},0.{i}\n" for i in range(6)))
    recipe = write_recipe(tmp_path, model_dir, data_file, args={
        **ARGS, "output_dir": str(tmp_path / "deep" / "er" / "out"), "eval_strategy": "steps", "eval_steps": 2,
        "metric_for_best_model": "sts-dev_spearman_cosin", "load_best_model_at_end": True})
    text = recipe.read_text() + (
        f"eval:\n  evaluators:\n  - kind: sts\n    path: {dev}\n    name: sts-dev\n"
        "    columns: {sentences1: s1, sentences2: s2, scores: score}\n")
    recipe.write_text(text)
    before = snapshot(tmp_path)
    code = main(["train", str(recipe)])
    assert_one_line_error(code, capsys.readouterr().err, "metric_for_best_model", "sts-dev_spearman_cosin",
                          "did you mean 'sts-dev_spearman_cosine'")
    assert snapshot(tmp_path) == before  # no output folder, no parent folders, no lock file, no log

    fixed = main(["train", str(recipe), "args.metric_for_best_model=sts-dev_spearman_cosine"])
    assert fixed == 0, capsys.readouterr().err


def _nan_loss_after(calls: int, monkeypatch) -> None:
    real, seen = MultipleNegativesRankingLoss.__call__, []

    def poisoned(self, embeddings, labels=None):
        loss = real(self, embeddings, labels)
        seen.append(1)
        return loss * math.nan if len(seen) > calls else loss

    monkeypatch.setattr(MultipleNegativesRankingLoss, "__call__", poisoned)


def test_non_finite_loss_at_step_one_leaves_no_trace_and_the_rerun_needs_no_overwrite(
    model_dir, data_file, tmp_path, capsys, monkeypatch
):
    recipe = write_recipe(tmp_path, model_dir, data_file, args=ARGS)
    _nan_loss_after(1, monkeypatch)  # call 1: the setup check on a first batch; step 1's loss is NaN
    before = snapshot(tmp_path)
    code = main(["train", str(recipe)])
    assert_one_line_error(code, capsys.readouterr().err, "step 1", "dataset 'pairs'", "loss is nan",
                          "no checkpoint was saved yet")
    assert snapshot(tmp_path) == before
    monkeypatch.undo()
    assert main(["train", str(recipe)]) == 0  # no "already holds a run": nothing was left behind


def test_overwrite_run_failing_in_setup_keeps_the_old_run(model_dir, data_file, tmp_path, capsys):
    recipe = write_recipe(tmp_path, model_dir, data_file, args=ARGS)
    assert main(["train", str(recipe)]) == 0
    before = snapshot(tmp_path / "out")
    bad = tmp_path / "bad.csv"
    bad.write_text("anchor,other\nx,y\n")  # no positive column: fails while the data is prepared
    code = main(["train", str(recipe), f"datasets.0.path={bad}", "args.overwrite_output_dir=true"])
    assert code == 2
    capsys.readouterr()
    assert snapshot(tmp_path / "out") == before  # the old run (checkpoints, log, model) is untouched


# --- non-finite training --------------------------------------------------------------------------------


def test_non_finite_loss_stops_with_one_line_and_saves_nothing_non_finite(
    model_dir, data_file, tmp_path, capsys, monkeypatch
):
    recipe = write_recipe(tmp_path, model_dir, data_file, args={**ARGS, "max_steps": 6, "save_steps": 2})
    _nan_loss_after(1 + 3, monkeypatch)  # the setup check, then steps 1-3 finite, step 4's loss is NaN
    code = main(["train", str(recipe)])
    out = tmp_path / "out"
    last = out / "checkpoints" / "checkpoint-2"
    assert_one_line_error(code, capsys.readouterr().err, "step 4", "dataset 'pairs'", "loss is nan",
                          f"last good checkpoint is {last}", "resume_from_checkpoint: last")
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2"]
    assert not (out / "modules.json").exists()  # no final model
    for ckpt in list_checkpoints(out):
        weights = EmbeddingModel.load(ckpt).state_dict()
        assert all(torch.isfinite(w).all() for w in weights.values())
    rows = _strict_rows(out / "training_log.jsonl")
    assert [r["step"] for r in rows] == [1, 2, 3]


def test_non_finite_gradient_stops_before_the_optimizer_step(model_dir, data_file, tmp_path, capsys, monkeypatch):
    recipe = write_recipe(tmp_path, model_dir, data_file, args={**ARGS, "max_steps": 6, "save_steps": 2})
    real, calls = loop._forward_backward, []

    def poisoned(run, *args, **kwargs):
        loss = real(run, *args, **kwargs)
        calls.append(1)
        if len(calls) == 3:  # step 3: a finite loss, but an inf gradient in one weight
            next(p for p in run.model.parameters() if p.grad is not None).grad.fill_(math.inf)
        return loss

    monkeypatch.setattr(loop, "_forward_backward", poisoned)
    code = main(["train", str(recipe)])
    assert_one_line_error(code, capsys.readouterr().err, "step 3", "gradient norm is", "checkpoint-2")
    weights = EmbeddingModel.load(tmp_path / "out" / "checkpoints" / "checkpoint-2").state_dict()
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_a_diverged_model_is_never_saved(model_dir, data_file, tmp_path, capsys, monkeypatch):
    """Even when the loss and gradients looked finite, a weight that became NaN blocks the save."""
    recipe = write_recipe(tmp_path, model_dir, data_file, args=ARGS)
    real, steps = loop._optimizer_step, []

    def diverge(run, *args, **kwargs):
        norm = real(run, *args, **kwargs)
        steps.append(1)
        if len(steps) == 2:  # right after step 2's update, just before its checkpoint
            with torch.no_grad():
                next(run.model.parameters()).fill_(math.nan)
        return norm

    monkeypatch.setattr(loop, "_optimizer_step", diverge)
    code = main(["train", str(recipe)])
    assert_one_line_error(code, capsys.readouterr().err, "checkpoint-2", "not saved", "inf or NaN")
    assert list_checkpoints(tmp_path / "out") == []


def test_the_log_is_strict_json_even_for_non_finite_values(tmp_path):
    logger = JsonlLogger(tmp_path / "log.jsonl")
    logger.restart([{"step": 1, "loss": math.inf}])
    logger.log({"step": 2, "eval_loss": math.nan, "nested": {"x": -math.inf}, "grad_norm": 0.5})
    rows = _strict_rows(tmp_path / "log.jsonl")
    assert rows == [{"step": 1, "loss": None}, {"step": 2, "eval_loss": None, "nested": {"x": None}, "grad_norm": 0.5}]
