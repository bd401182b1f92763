"""torch.distributed helpers that are no-ops in a single process (no process group, WORLD_SIZE unset).

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK; ``init_distributed`` reads them and joins the group
(gloo on CPU, nccl on CUDA). Everything else asks ``rank()`` / ``world_size()`` and works either way.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on the one process that writes files and logs (rank 0)."""
    return rank() == 0


def init_distributed() -> torch.device | None:
    """Join the process group when launched by torchrun with WORLD_SIZE > 1; return this rank's device.

    Returns None when not launched for several processes (the caller picks the device itself).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return device


def shutdown() -> None:
    """Leave the process group (if any), after a final barrier so no rank exits early."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not is_distributed():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def average_gradients(parameters: list[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over ranks in place (what DDP does, for code paths that bypass the DDP wrapper)."""
    if not is_distributed():
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad /= world_size()


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each rank its rows of the summed gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int]) -> Tensor:  # (b_r, ...) -> (sum b, ...)
        ctx.sizes = sizes
        ctx.rank = rank()
        width = max(sizes)
        padded = x.new_zeros((width, *x.shape[1:]))
        padded[: x.shape[0]] = x
        parts = [torch.empty_like(padded) for _ in sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)], dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def all_gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (b_r, ...) from every rank in rank order, keeping the gradient path to local rows.

    Rank sizes may differ. Every rank computes the same loss on the gathered tensor; the backward sums
    the gradients of all ranks, so after DDP's averaging each parameter gets exactly the gradient one
    process would compute on the whole global batch. Identity in a single process.
    """
    if not is_distributed():
        return x
    sizes = [int(n) for n in gather_sizes(x.shape[0])]
    return _GatherWithGrad.apply(x, sizes)


def gather_sizes(n: int) -> list[int]:
    """Every rank's ``n`` (a cheap all_gather of one integer)."""
    if not is_distributed():
        return [n]
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
    t = torch.tensor([n], device=device)
    out = [torch.zeros_like(t) for _ in range(world_size())]
    dist.all_gather(out, t)
    return [int(v.item()) for v in out]
