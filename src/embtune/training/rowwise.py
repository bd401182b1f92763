"""Row-wise updates for large embedding matrices: sparse gradients and an AdamW that touches only used rows.

A batch of a few thousand tokens reads a few thousand rows of a 250,000-row word-embedding matrix. A dense
gradient makes backward write a (V, D) zero tensor, grad clipping read it, AdamW update all V rows and
``zero_grad`` free it, every step. With ``nn.Embedding(sparse=True)`` backward returns only the rows used, and
``RowwiseAdamW`` updates only those rows.

What differs from dense AdamW, exactly (everything else is the same formula as ``torch.optim.AdamW``):

- A row that gets no gradient in a step is not touched: its weights, first and second moments stay as they
  are. Dense AdamW would still move it by its decaying momentum ``m / (sqrt(v) + eps)`` and apply weight decay.
- Each row counts its own steps for bias correction: a row's t-th update uses ``1 - beta**t`` with t the
  number of steps in which that row had a gradient. So each row follows the dense AdamW trajectory it would
  have if only the steps that used it existed, at the learning rate of each of those steps. A row that is
  used in every step gets exactly the dense AdamW update (equal up to float32 rounding).
- Weight decay (decoupled, ``p *= 1 - lr * weight_decay``) is applied to a row only in the steps that use it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

MIN_ROWS = 1000  # embeddings with fewer rows (positions, token types) are read almost entirely: keep them dense


def rowwise_embeddings(model: nn.Module, min_rows: int | None = None) -> list[nn.Parameter]:
    """Switch every trainable ``nn.Embedding`` with at least ``min_rows`` (default ``MIN_ROWS``) rows to sparse
    gradients.

    Returns their weights (the parameters ``RowwiseAdamW`` updates row-wise). Any module tree works: the
    Hugging Face encoders and embtune's own encoder both look up words through ``nn.Embedding``.
    """
    found = []
    min_rows = MIN_ROWS if min_rows is None else min_rows
    for module in model.modules():
        if type(module) is nn.Embedding and module.num_embeddings >= min_rows and module.weight.requires_grad:
            module.sparse = True
            found.append(module.weight)
    return found


def clip_grad_norm(params: Iterable[nn.Parameter], max_norm: float) -> Tensor:
    """``torch.nn.utils.clip_grad_norm_`` (L2) that also accepts sparse gradients (coalesced in place)."""
    dense, sparse = [], []
    for p in params:
        if p.grad is None:
            continue
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
            sparse.append(p.grad)
        else:
            dense.append(p.grad)
    norms = [torch.linalg.vector_norm(g._values(), 2.0) for g in sparse]
    if dense:
        norms.append(torch.nn.utils.get_total_norm(dense, 2.0))
    if not norms:
        return torch.zeros(())
    total = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]), 2.0)
    coef = max_norm / (float(total) + 1e-6)
    if coef < 1.0 and math.isfinite(max_norm):
        if dense:
            torch._foreach_mul_(dense, coef)
        for g in sparse:
            g._values().mul_(coef)
    return total


class RowwiseAdamW(torch.optim.AdamW):
    """``torch.optim.AdamW`` whose parameters with sparse gradients are updated row-wise (see module docstring).

    Dense-gradient parameters take the normal (fused, where available) AdamW path. Per-row state lives in
    ``self.state[p]`` as ``exp_avg``, ``exp_avg_sq`` (V, D) and ``row_step`` (V,), so checkpoints save and
    resume it like any optimizer state.
    """

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001 - torch's signature
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        held = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None and p.grad.is_sparse:
                    self._rowwise_update(p, group)
                    held.append((p, p.grad))
                    p.grad = None  # the dense step below skips it
        super().step()
        for p, grad in held:
            p.grad = grad
        return loss

    def _rowwise_update(self, p: nn.Parameter, group: dict) -> None:
        grad = p.grad.coalesce()
        rows, values = grad.indices()[0], grad.values().to(p.dtype)  # (n,), (n, D)
        if rows.numel() == 0:
            return
        state = self.state[p]
        if "row_step" not in state:
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["row_step"] = torch.zeros(p.shape[0], dtype=torch.float32, device=p.device)
            state["step"] = torch.tensor(0.0)  # steps with any row updated; torch's AdamW expects the key
        state["step"] += 1
        beta1, beta2 = group["betas"]
        lr, eps, wd = float(group["lr"]), group["eps"], group["weight_decay"]
        weights = p.index_select(0, rows)
        if wd != 0:
            weights.mul_(1 - lr * wd)
        m = state["exp_avg"].index_select(0, rows).lerp_(values, 1 - beta1)
        v = state["exp_avg_sq"].index_select(0, rows).mul_(beta2).addcmul_(values, values, value=1 - beta2)
        t = state["row_step"].index_select(0, rows).add_(1).double()
        step_size = (lr / (1 - beta1**t)).to(p.dtype).unsqueeze(1)  # (n, 1)
        bc2_sqrt = (1 - beta2**t).sqrt().to(p.dtype).unsqueeze(1)
        denom = (v.sqrt() / bc2_sqrt).add_(eps)
        weights.sub_(step_size * m / denom)
        p.index_copy_(0, rows, weights)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        state["row_step"].index_copy_(0, rows, t.float())
