"""Normalize: scale each embedding to unit L2 length, so dot product equals cosine similarity."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Normalize(nn.Module):
    """(B, D) -> (B, D) with every row of L2 norm 1 (rows of zeros stay zero)."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.normalize(x, p=2, dim=-1)
