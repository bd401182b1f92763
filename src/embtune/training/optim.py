"""AdamW with the usual weight-decay exclusions, and learning-rate schedules with warmup."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from ..utils import distributed as dist
from .config import TrainArgs
from .rowwise import RowwiseAdamW, rowwise_embeddings


def build_optimizer(model: nn.Module, args: TrainArgs) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and LayerNorm weights get no weight decay.

    Decaying them pulls normalisation gains towards 0 and brings nothing, which is why the Hugging Face
    trainer excludes them too. A parameter is excluded when its name ends in ``bias`` or it belongs to a
    LayerNorm module.

    With ``args.embedding_updates == "rowwise"`` (single process), large embedding matrices switch to sparse
    gradients and the optimizer is a ``RowwiseAdamW``: only the rows a batch uses are updated (see
    ``training/rowwise.py`` for what differs from dense AdamW). DDP runs keep dense updates.
    """
    rowwise = args.embedding_updates == "rowwise" and not dist.is_distributed() and bool(rowwise_embeddings(model))
    no_decay: set[str] = set()
    for module_name, module in model.named_modules():
        if isinstance(module, nn.LayerNorm) or "layernorm" in type(module).__name__.lower():
            no_decay.update(f"{module_name}.{n}" if module_name else n for n, _ in module.named_parameters(recurse=False))
    decay, plain = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (plain if name in no_decay or name.endswith("bias") else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": args.weight_decay},
        {"params": plain, "weight_decay": 0.0},
    ]
    # The fused kernel does the same AdamW update in one pass per tensor instead of ~10 elementwise ops over
    # all 22M parameters of a MiniLM: 77 -> 17 ms per step on 2 CPU cores (bench/train.py), as HF's default
    # optim="adamw_torch_fused" does. Other devices (mps, xla) keep the default implementation.
    fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in decay + plain) or None
    return (RowwiseAdamW if rowwise else torch.optim.AdamW)(
        [g for g in groups if g["params"]],
        lr=args.learning_rate,
        betas=(args.adam_beta1, args.adam_beta2),
        eps=args.adam_epsilon,
        fused=fused,
    )


def build_scheduler(optimizer: torch.optim.Optimizer, args: TrainArgs, total_steps: int) -> LambdaLR:
    """The schedule of ``args.lr_scheduler_type`` with ``args.warmup(total_steps)`` warmup steps.

    The same learning rates as the Hugging Face trainer's schedules (``transformers.get_scheduler``; a test
    compares them): linear warmup from 0 (all kinds except ``constant``), then linear decay to 0 at
    ``total_steps`` (``linear``), half a cosine down to 0 (``cosine``) or 1 (``constant_with_warmup``).
    Written here because importing ``transformers.optimization`` pulls in its trainer utilities (and peft
    when installed): ~2 s of start-up for four formulas.

    >>> opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    >>> sched = build_scheduler(opt, TrainArgs(warmup_steps=2), total_steps=6)
    >>> lrs = []
    >>> for _ in range(7):
    ...     lrs.append(round(opt.param_groups[0]["lr"], 6)); opt.step(); sched.step()
    >>> lrs
    [0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0]
    """
    kind, warmup = args.lr_scheduler_type, args.warmup(total_steps)

    def factor(step: int) -> float:
        if kind == "constant":
            return 1.0
        if step < warmup:
            return step / max(1, warmup)
        if kind == "constant_with_warmup":
            return 1.0
        if kind == "linear":
            return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
        progress = (step - warmup) / max(1, total_steps - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))

    return LambdaLR(optimizer, factor)
