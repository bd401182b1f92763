"""Where a training step's time goes: forward, backward, grad clip, optimizer step, zero_grad, per backend.

    .venv/bin/python bench/profile_step.py                         # bundled MiniLM, SNLI pairs, batch 32, bf16
    .venv/bin/python bench/profile_step.py --shape e5small --ops   # plus the top operators (torch.profiler)

Runs the same pieces the training loop runs (``EmbeddingModel.embed_roles``, the MNRL loss on float32
embeddings, ``build_optimizer`` with embtune's default arguments, clip at 1.0) on real batches of the SNLI
slice's entailment pairs, and prints the median milliseconds of each phase over ``--steps`` steps (after 2
warm-up steps), for the fast and the Hugging Face backend. Run it under ``flock -x /tmp/cpu.lock``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes
from train import SHAPES, _snli_pairs, build_random_model  # noqa: E402


def _phases(model, batches, args, amp: bool) -> dict[str, float]:
    from embtune.losses import build_loss
    from embtune.training.config import TrainArgs
    from embtune.training.optim import build_optimizer

    loss_fn = build_loss("mnrl", scale=20.0)
    optimizer = build_optimizer(model, TrainArgs(learning_rate=1e-5))
    params = [p for p in model.parameters() if p.requires_grad]
    try:
        from embtune.training.rowwise import clip_grad_norm  # sparse-aware clip, when present
    except ImportError:
        clip_grad_norm = torch.nn.utils.clip_grad_norm_
    times: dict[str, list[float]] = {k: [] for k in ("forward", "backward", "clip", "optimizer", "zero_grad")}
    model.train()
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            emb = model.embed_roles(batch)
        loss = loss_fn({k: v.float() for k, v in emb.items()}, None)
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        clip_grad_norm(params, 1.0)
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        t5 = time.perf_counter()
        if i >= 2:
            for key, a, b in (("forward", t0, t1), ("backward", t1, t2), ("clip", t2, t3), ("optimizer", t3, t4),
                              ("zero_grad", t4, t5)):
                times[key].append((b - a) * 1000)
    return {k: round(statistics.median(v), 1) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=["minilm", *SHAPES], default="minilm")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--fp32", action="store_true")
    parser.add_argument("--ops", action="store_true", help="also print the top operators of the fast backend")
    parser.add_argument("--shapes", action="store_true", help="with --ops: one row per operator and input shape")
    args = parser.parse_args()

    from embtune.models.bundled import bundled_model_path
    from embtune.models.embedding_model import EmbeddingModel
    from embtune.utils.memory import reuse_freed_blocks

    reuse_freed_blocks()  # as the training loop does

    pairs = _snli_pairs()
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = bundled_model_path() if args.shape == "minilm" else build_random_model(args.shape, Path(tmp) / "m")
        for backend in ("fast", "hf"):
            model = EmbeddingModel.from_transformer(folder, backend=backend, max_seq_length=128)
            batches = []
            for _ in range(args.steps + 2):
                rows = random.sample(pairs, args.batch)
                batches.append({"anchor": model.tokenize([r["anchor"] for r in rows]),
                                "positive": model.tokenize([r["positive"] for r in rows])})
            tokens = statistics.mean(sum(int(f["attention_mask"].sum()) for f in b.values()) for b in batches)
            phases = _phases(model, batches, args, amp=not args.fp32)
            total = sum(phases.values())
            print(f"{backend:<5} {total:7.1f} ms/step ({args.batch / total * 1000:6.1f} pairs/s, {tokens:.0f} real "
                  f"tokens/step): " + ", ".join(f"{k} {v}" for k, v in phases.items()), flush=True)
            if args.ops and backend == "fast":
                from torch.profiler import profile

                with profile(record_shapes=args.shapes) as prof:
                    _phases(model, batches[:5], args, amp=not args.fp32)
                table = prof.key_averages(group_by_input_shape=args.shapes)
                print(table.table(sort_by="self_cpu_time_total", row_limit=40 if args.shapes else 18))
            del model


if __name__ == "__main__":
    main()
