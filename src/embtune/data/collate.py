"""Build a padded batch from cached token ids: rows sliced out of the memory map, numpy padding, no re-tokenization."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .prepare import PreparedDataset


@dataclass
class Batch:
    """One training batch.

    Attributes:
        features: role → {"input_ids", "attention_mask"[, "token_type_ids"]}, each (B, T_role) int64,
            right-padded with the tokenizer's pad id to the longest text of that role in the batch.
        labels: (B,) float32 (or (B, k) for list labels), None for losses without labels.
    """

    features: dict[str, dict[str, Tensor]]
    labels: Tensor | None

    def to(self, device: torch.device | str) -> Batch:
        """The batch on ``device`` (non-blocking copies)."""
        features = {
            role: {name: t.to(device, non_blocking=True) for name, t in feats.items()}
            for role, feats in self.features.items()
        }
        labels = None if self.labels is None else self.labels.to(device, non_blocking=True)
        return Batch(features, labels)

    def __len__(self) -> int:
        return len(next(iter(self.features.values()))["input_ids"])


def collate(prepared: PreparedDataset, indices: list[int]) -> Batch:
    """Gather rows ``indices`` of ``prepared`` into a padded Batch.

    The features equal ``tokenizer(texts, padding=True, truncation=True, max_length=max_seq_length)`` for
    the same rendered texts, per role.
    """
    index = np.asarray(indices, dtype=np.int64)
    if index.size and (index.min() < 0 or index.max() >= prepared.num_rows):
        raise IndexError(f"row index out of range for {prepared.num_rows} rows")
    features: dict[str, dict[str, Tensor]] = {}
    for role in prepared.roles:
        ids, mask = _pad(prepared.token_rows.rows(role, index), prepared.pad_token_id)
        feats = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if prepared.uses_token_type_ids:
            feats["token_type_ids"] = torch.zeros_like(feats["input_ids"])  # single-text inputs: segment 0
        features[role] = feats
    labels = None if prepared.labels is None else torch.from_numpy(prepared.labels[index])
    return Batch(features, labels)


def _pad(rows: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, T) int64 ids and attention mask from each row's ids, right-padded to the longest."""
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    width = int(lengths.max()) if len(lengths) else 0
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
    mask = (np.arange(width) < lengths[:, None]).astype(np.int64)
    return ids, mask
