"""End-to-end runs of the training loop on the tiny BERT (CPU, a few steps)."""

from __future__ import annotations

import json

import pytest
import torch

from embtune import EmbeddingModel
from embtune.losses import build_loss
from embtune.training.build import build_model
from embtune.training.checkpoint import list_checkpoints
from embtune.training.loop import train
from embtune.training.recipe import config_from_dict


def test_final_save_runs_without_the_optimizer_state(tiny_bert_dir, pairs_file, tmp_path, config_factory,
                                                     monkeypatch):
    import embtune.training.loop as loop

    made, seen = [], []
    real_build, real_write = loop.build_optimizer, EmbeddingModel.write_folder
    monkeypatch.setattr(loop, "build_optimizer", lambda *a: made.append(real_build(*a)) or made[-1])

    def write_folder(self, folder, *args, **kwargs):
        seen.append((len(made[0].state), [p.grad is None for p in self.parameters()]))
        return real_write(self, folder, *args, **kwargs)

    monkeypatch.setattr(EmbeddingModel, "write_folder", write_folder)
    train(config_from_dict(config_factory(tiny_bert_dir, pairs_file, tmp_path / "run", max_steps=4, save_steps=2)))
    # checkpoints (written during the loop) hold the moments; the final save comes after they are freed
    assert seen[0][0] > 0 and seen[-1][0] == 0 and all(seen[-1][1])
    assert (tmp_path / "run" / "checkpoints" / "checkpoint-4" / "optimizer.pt").exists()


@pytest.mark.slow
def test_six_step_run_writes_model_checkpoints_and_log(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    out = tmp_path / "run"
    result = train(config_from_dict(config_factory(tiny_bert_dir, pairs_file, out)))
    assert result.model_path == out
    model = EmbeddingModel.load(out)
    assert model.encode(["the red cat"]).shape == (1, 32)
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-3", "checkpoint-6"]
    rows = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6]
    assert set(rows[0]) >= {"epoch", "step", "loss", "learning_rate", "grad_norm", "examples_per_s"}
    assert result.metrics["global_step"] == 6
    # the checkpoint holds the resumable state next to a loadable model
    ckpt = out / "checkpoints" / "checkpoint-6"
    assert {"optimizer.pt", "scheduler.pt", "rng_state.pt", "trainer_state.json", "modules.json"} <= {
        p.name for p in ckpt.iterdir()
    }
    final = dict(EmbeddingModel.load(out).named_parameters())
    for name, p in EmbeddingModel.load(ckpt).named_parameters():
        assert torch.equal(p, final[name]), name


@pytest.mark.slow
def test_loss_goes_down_on_an_easy_dataset(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    cfg = config_factory(tiny_bert_dir, pairs_file, tmp_path / "run", max_steps=36, logging_steps=12,
                         save_strategy="no", per_device_train_batch_size=8, lr_scheduler_type="constant")
    rows = [json.loads(x) for x in (train(config_from_dict(cfg)).log_path).read_text().splitlines()]
    losses = [r["loss"] for r in rows]
    assert losses[-1] < 0.7 * losses[0], losses


def test_one_step_is_adamw_along_the_training_batch_gradient(tiny_nodropout_dir, pairs_file, tmp_path,
                                                             config_factory):
    # The whole 4-row file is the one batch; MNRL's mean loss does not depend on the row order. AdamW's
    # first step moves each weight by -lr * g / (|g| + eps) (bias-corrected moments): -lr * sign(g) wherever
    # the (clipped) gradient is well above eps, and never more than lr.
    data = tmp_path / "four.jsonl"
    data.write_text("".join(pairs_file.read_text().splitlines(keepends=True)[:4]), encoding="utf-8")
    lr = 1e-3
    cfg = config_from_dict(config_factory(tiny_nodropout_dir, data, tmp_path / "run", max_steps=1, learning_rate=lr,
                                          save_strategy="no", lr_scheduler_type="constant", weight_decay=0.0))
    base = build_model(cfg.model)
    rows = [json.loads(line) for line in data.read_text().splitlines()]
    loss_fn = build_loss("mnrl")

    def loss_of(model):
        return loss_fn({role: model(model.tokenize([r[role] for r in rows])) for role in ("anchor", "positive")}, None)

    base.train()
    before = loss_of(base)
    before.backward()
    base_params = dict(base.named_parameters())
    trained = EmbeddingModel.load(train(cfg).model_path)
    trained.train()
    moved = 0
    for name, p in trained.named_parameters():
        delta, g = (p - base_params[name]).detach(), base_params[name].grad
        if g is None:  # the unused pooler head: AdamW leaves it alone
            assert torch.equal(delta, torch.zeros_like(delta)), name
            continue
        assert float(delta.abs().max()) <= lr * 1.001, name
        clear = g.abs() > 1e-6  # far above eps and float noise (e.g. key biases get an exactly-zero gradient)
        torch.testing.assert_close(delta[clear], -lr * torch.sign(g[clear]), rtol=0.05, atol=0.0, msg=name)
        moved += int(clear.sum())
    assert moved > 10_000  # most of the tiny BERT's weights
    with torch.no_grad():
        assert float(loss_of(trained)) < float(before)  # and the loss on the training batch went down


@pytest.mark.slow
def test_multi_dataset_round_robin_with_two_losses(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    # the scored dataset is learnable: a row's own paraphrase scores 1, the next row's paraphrase 0
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    scored = tmp_path / "scored.jsonl"
    scored.write_text("".join(
        json.dumps({"anchor": r["anchor"], "positive": p["positive"], "score": s})
        for r, nxt in zip(rows, rows[1:] + rows[:1], strict=True) for p, s in ((r, 1.0), (nxt, 0.0))
    ), encoding="utf-8")
    cfg = config_factory(tiny_bert_dir, pairs_file, tmp_path / "run", max_steps=4, logging_steps=1,
                         save_strategy="no", multi_dataset_batch_sampler="round_robin")
    cfg["datasets"].append({
        "name": "scored",
        "path": str(scored),
        "columns": {"anchor": "anchor", "positive": "positive", "label": "score"},
        "loss": {"name": "cosent"},
        "eval_path": str(scored),
    })
    cfg["args"] |= {"eval_strategy": "steps", "eval_steps": 2}
    result = train(config_from_dict(cfg))
    assert {"eval_scored_loss", "eval_loss"} <= set(result.metrics["final"])
    # two CoSENT steps lower CoSENT's loss on the data it trains on (the MNRL steps in between do not undo it)
    assert result.metrics["final"]["eval_scored_loss"] < result.metrics["base"]["eval_scored_loss"]
    rows = [json.loads(x) for x in result.log_path.read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == [1, 2, 3, 4]


@pytest.mark.slow
def test_gradient_accumulation_and_epoch_strategies(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    cfg = config_factory(tiny_bert_dir, pairs_file, tmp_path / "run", max_steps=-1, num_train_epochs=2,
                         per_device_train_batch_size=8, gradient_accumulation_steps=2, logging_steps=1,
                         save_strategy="epoch", save_total_limit=1, warmup_ratio=0.5, lr_scheduler_type="cosine")
    result = train(config_from_dict(cfg))
    # 48 rows / 8 = 6 batches per epoch -> 3 optimizer steps per epoch, 2 epochs
    assert result.metrics["global_step"] == 6
    assert [p.name for p in list_checkpoints(result.model_path)] == ["checkpoint-6"]


@pytest.mark.slow
def test_final_evaluator_metrics_come_from_the_trained_weights(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    # Evaluators encode at precision "auto": through the bf16 weight copy on CPUs with native bf16, which must
    # follow every optimizer step (fused AdamW updates weights without bumping their version counters), so the
    # final metrics differ from the base ones and equal a fresh evaluation of the saved model at that precision.
    raw = config_factory(tiny_bert_dir, pairs_file, tmp_path / "out", bf16=True, max_steps=4)
    raw["eval"] = {"evaluators": [{"kind": "sts", "name": "sts", "path": str(pairs_file),
                                   "columns": {"sentences1": "anchor", "sentences2": "positive", "scores": "score"}}]}
    result = train(config_from_dict(raw, []))
    key = "eval_sts_spearman_cosine"
    assert result.metrics["final"][key] != result.metrics["base"][key]
    from embtune.evaluation import evaluate

    fresh = evaluate(str(result.model_path), str(pairs_file), "sts", name="sts", precision="auto",
                     columns={"sentences1": "anchor", "sentences2": "positive", "scores": "score"})
    assert abs(fresh["sts_spearman_cosine"] - result.metrics["final"][key]) < 1e-6


def test_the_loop_asks_the_thread_governor_before_every_batch(tiny_bert_dir, pairs_file, tmp_path, config_factory,
                                                              monkeypatch):
    import embtune.training.loop as loop

    calls = []
    monkeypatch.setattr(loop, "adapt_threads", lambda: calls.append(1))
    raw = config_factory(tiny_bert_dir, pairs_file, tmp_path / "run")
    raw["args"].update(save_strategy="no", max_steps=3, gradient_accumulation_steps=1)
    train(config_from_dict(raw))
    assert len(calls) == 3


def test_the_loop_makes_the_heap_reuse_freed_blocks_before_the_first_step(tiny_bert_dir, pairs_file, tmp_path,
                                                                          config_factory, monkeypatch):
    import embtune.training.loop as loop

    calls = []
    monkeypatch.setattr(loop, "reuse_freed_blocks", lambda: calls.append("reuse"))
    monkeypatch.setattr(loop, "adapt_threads", lambda: calls.append("step"))
    raw = config_factory(tiny_bert_dir, pairs_file, tmp_path / "run")
    raw["args"].update(save_strategy="no", max_steps=2, gradient_accumulation_steps=1)
    train(config_from_dict(raw))
    assert calls == ["reuse", "step", "step"]
