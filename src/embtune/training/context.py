"""``Run``: the objects of one training run that the loop's helpers share, and the sampler protocol."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from ..evaluation.base import Evaluator
from ..models.embedding_model import EmbeddingModel
from .build import TrainData
from .checkpoint import TrainState
from .config import TrainArgs
from .log import JsonlLogger


class TrainSampler(Protocol):
    """What the loop needs from the batch sampler: ``(dataset index, row ids)`` per batch, epochs, resume state."""

    def __iter__(self) -> Iterator[tuple[int, list[int]]]: ...

    def __len__(self) -> int: ...

    @property
    def batches_done(self) -> int: ...  # batches yielded so far in the current epoch

    def set_epoch(self, epoch: int) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Run:
    """The objects of one run that the helpers of ``training/loop.py`` share, built in blocks 1-4 of ``train``."""

    args: TrainArgs
    output_dir: Path
    model: EmbeddingModel
    encoder: nn.Module  # RoleEncoder, DDP-wrapped in a multi-process run
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    scaler: torch.amp.GradScaler | None  # fp16 only
    sampler: TrainSampler
    data: list[TrainData]
    evaluators: list[Evaluator]
    state: TrainState
    logger: JsonlLogger | None  # rank 0 only
    dtype: torch.dtype | None  # autocast dtype; None = fp32
    device: torch.device

    def autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=self.dtype or torch.bfloat16, enabled=self.dtype is not None)
