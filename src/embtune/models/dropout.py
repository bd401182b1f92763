"""Dropout with cheap masks: the same semantics as ``nn.Dropout``, a third of its cost on CPU.

``torch.bernoulli_`` draws one 32-bit random number per element; on a 2-core CPU that was ~20 % of a training
step of the bundled model (attention probabilities are the largest tensor dropout touches). Here one 64-bit
random word gives four 16-bit uniform integers, and an element is kept when its integer is at least
``round(p * 65536)``. So:

- the drop probability is ``round(p * 65536) / 65536`` (0.1 -> 0.1000061), and kept values are scaled by
  ``1 / (1 - that)``, so the expectation of every element is unchanged, exactly as in ``nn.Dropout``;
- the masks are a function of torch's default generator: on CPU each mask draws one 64-bit seed from it and
  numpy's SFC64 generator (2.4x faster than torch's Mersenne twister here) expands that seed into the mask's
  words; on other devices torch's generator draws the words. Either way ``torch.manual_seed`` and saved RNG
  states (also the ones gradient checkpointing restores to recompute a layer) reproduce the masks, which
  exact resume relies on;
- the mask is applied as a {0, 1} tensor of the input's dtype, then the scale: the same values as
  multiplying by a boolean mask (exact: x * 1 and x * 0), at a third of the cost (a float-by-bool multiply is a
  slow mixed-type loop); the backward multiplies the gradient by the same mask and scale.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

_LEVELS = 1 << 16


def drop_levels(p: float) -> tuple[int, float]:
    """(levels, scale): an element is dropped with probability ``levels / 65536`` (``round(p * 65536)``) and
    kept ones are scaled by ``1 / (1 - levels / 65536)``. Also the fused kernels' dropout (``fused.py``)."""
    levels = round(p * _LEVELS)
    return levels, _LEVELS / (_LEVELS - levels)


def draw_seed() -> int:
    """One 62-bit seed from torch's default generator (advancing it by one draw): what a mask is made from."""
    return int(torch.randint(0, 1 << 62, (), dtype=torch.int64))


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str = "cpu") -> tuple[Tensor, float]:
    """A boolean mask of ``shape`` (True = keep) and the scale ``1 / (1 - p_effective)`` for kept values."""
    numel = 1
    for size in shape:
        numel *= size
    levels, scale = drop_levels(p)
    halves = random_words((numel + 3) // 4, device).view(torch.int16)[:numel]  # four uniform int16 per word
    keep = halves >= levels - (1 << 15)
    return keep.view(shape), scale


def random_words(count: int, device: torch.device | str = "cpu") -> Tensor:
    """``count`` uniformly random int64 words, determined by the state of torch's default generator (which this
    advances by one draw on CPU)."""
    if torch.device(device).type == "cpu":
        return torch.from_numpy(np.random.SFC64(draw_seed()).random_raw(count).view(np.int64))
    words = torch.empty(count, dtype=torch.int64, device=device)
    return words.random_(-(1 << 63), (1 << 63) - 1)


class _MaskedScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, keep: Tensor, scale: float) -> Tensor:
        ones = keep.view(torch.uint8).to(x.dtype)  # {0, 1} in x's dtype: same-dtype multiplies
        ctx.save_for_backward(ones)
        ctx.scale = scale
        return torch.mul(x, ones).mul_(scale)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (ones,) = ctx.saved_tensors
        return torch.mul(grad, ones.to(grad.dtype)).mul_(ctx.scale), None, None


def dropout(x: Tensor, p: float, training: bool = True) -> Tensor:
    """Functional form: ``x`` unchanged when not training or ``p == 0``."""
    if not training or p <= 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    keep, scale = keep_mask(x.shape, p, x.device)
    return _MaskedScale.apply(x, keep, scale)


class Dropout(nn.Module):
    """Drop-in for ``nn.Dropout(p)`` (same ``p`` attribute and ``train``/``eval`` behaviour)."""

    def __init__(self, p: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
