"""The word-embedding matrix: step time and quality with dense AdamW, row-wise updates, and frozen embeddings.

    .venv/bin/python bench/embeddings.py steps     # e5-small shape step time (random weights, ~1 minute)
    .venv/bin/python bench/embeddings.py quality   # STS-B test Spearman after 1 CoSENT epoch, 3 modes (~5 min)

steps: a BERT built in-process in the shape of multilingual-e5-small (12 layers, 384 hidden, 1536 FFN, 12
heads, 250,037-token vocabulary, 118M parameters; random weights), mean pooling, MNRL (scale 20) on a batch
of 32 (anchor, positive) pairs of 16 random tokens each (64 x 16 tokens), bf16 autocast, embtune's
build_optimizer + clip_grad_norm, the way the training loop calls them. Per mode: 2 warm-up steps, then the
median of 5 steps for forward+backward, grad clipping, optimizer step and zero_grad.
quality: ``embtune train`` of bundled all-MiniLM-L6-v2 on STS-B train (CoSENT, 1 epoch, batch 16, lr 2e-5,
10 % warmup, seed 42) in each mode, then Spearman (cosine) on STS-B test, fp32 encoding.
Writes bench/results/embeddings_{steps,quality}.json. Run under ``flock -x /tmp/cpu.lock``.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes

STSB = HERE.parent.parent / "shared" / "data" / "stsb"
MODES = {"dense": ("dense", False), "rowwise": ("rowwise", False), "frozen": ("rowwise", True)}


def _e5_small():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=250037, hidden_size=384, num_hidden_layers=12, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=514)
    return BertModel(config)


def _mnrl(a: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    scores = torch.nn.functional.normalize(a, dim=-1) @ torch.nn.functional.normalize(p, dim=-1).T * 20.0
    return torch.nn.functional.cross_entropy(scores, torch.arange(len(a)))


def step_times(mode: str) -> dict[str, float]:
    from embtune.training.config import FreezeCfg, TrainArgs
    from embtune.training.freeze import apply_freeze
    from embtune.training.optim import build_optimizer
    from embtune.training.rowwise import clip_grad_norm

    updates, frozen = MODES[mode]
    model = _e5_small().train()
    if frozen:
        apply_freeze(model, FreezeCfg(embeddings=True))
    optimizer = build_optimizer(model, TrainArgs(embedding_updates=updates, learning_rate=5e-5))
    params = [p for p in model.parameters() if p.requires_grad]
    gen = torch.Generator().manual_seed(1)
    phases: dict[str, list[float]] = {"forward_backward": [], "clip": [], "optimizer": [], "zero_grad": []}
    for step in range(7):
        ids = torch.randint(1000, 250037, (64, 16), generator=gen)
        mask = torch.ones_like(ids)
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
        emb = hidden.float().mean(dim=1)
        _mnrl(emb[:32], emb[32:]).backward()
        t1 = time.perf_counter()
        clip_grad_norm(params, 1.0)
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        t4 = time.perf_counter()
        if step >= 2:
            for key, value in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                phases[key].append(value)
    out = {k: round(statistics.median(v), 4) for k, v in phases.items()}
    out["step"] = round(sum(out.values()), 4)
    out["trainable_parameters"] = sum(p.numel() for p in params)
    out["optimizer_class"] = type(optimizer).__name__
    return out


def quality(mode: str, work: Path) -> dict[str, float]:
    from embtune.evaluation import evaluate
    from embtune.training.loop import train
    from embtune.training.recipe import config_from_dict

    updates, frozen = MODES[mode]
    recipe = {
        "model": {"name": "bundled:all-MiniLM-L6-v2", "freeze": ["embeddings"] if frozen else []},
        "datasets": [{
            "name": "stsb", "path": str(STSB / "train.csv"),
            "columns": {"anchor": "sentence1", "positive": "sentence2", "label": "score"},
            "loss": {"name": "cosent"},
        }],
        "args": {"output_dir": str(work / mode), "num_train_epochs": 1, "per_device_train_batch_size": 16,
                 "learning_rate": 2e-5, "warmup_ratio": 0.1, "save_strategy": "no", "logging_steps": 50,
                 "disable_tqdm": True, "embedding_updates": updates, "seed": 42},
    }
    start = time.perf_counter()
    result = train(config_from_dict(recipe))
    seconds = time.perf_counter() - start
    metrics = evaluate(str(result.model_path), str(STSB / "test.csv"), "sts", precision="fp32",
                       columns={"sentences1": "sentence1", "sentences2": "sentence2", "scores": "score"})
    return {"spearman_cosine": round(metrics["spearman_cosine"], 5), "train_seconds": round(seconds, 1)}


def main() -> None:
    what = sys.argv[1] if len(sys.argv) > 1 else "steps"
    results: dict = {"threads": torch.get_num_threads()}
    if what == "steps":
        results["shape"] = "BERT 12 layers, 384 hidden, 1536 FFN, vocab 250037; batch 64 x 16 tokens, bf16"
        for mode in MODES:
            results[mode] = step_times(mode)
            print(mode, results[mode], flush=True)
    else:
        from embtune.evaluation import evaluate

        base = evaluate("bundled:all-MiniLM-L6-v2", str(STSB / "test.csv"), "sts", precision="fp32",
                        columns={"sentences1": "sentence1", "sentences2": "sentence2", "scores": "score"})
        results["base"] = {"spearman_cosine": round(base["spearman_cosine"], 5)}
        with tempfile.TemporaryDirectory() as tmp:
            for mode in MODES:
                results[mode] = quality(mode, Path(tmp))
                print(mode, results[mode], flush=True)
    out = HERE / "results" / f"embeddings_{what}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
