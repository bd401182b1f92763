"""Pooling: turn token embeddings (B, T, D) and an attention mask (B, T) into one vector per text (B, D).

Each mode is a pure function of (hidden, mask). ``Pooling`` concatenates one or more modes, as a
sentence-transformers Pooling module does, and can leave prompt tokens out of the pool.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from ..errors import EmbtuneError


def _float_mask(hidden: Tensor, mask: Tensor) -> Tensor:
    return mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)


def cls_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """The first attended token (the [CLS] token with right padding): (B, T, D), (B, T) -> (B, D)."""
    first = mask.to(torch.int32).argmax(dim=1)  # index of the first 1 in each row
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), first]


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Average of attended tokens: (B, T, D), (B, T) -> (B, D). Sums in float32 even for bf16 input."""
    m = _float_mask(hidden, mask)
    total = (hidden * m).sum(dim=1, dtype=torch.float32)
    count = m.sum(dim=1, dtype=torch.float32).clamp(min=1e-9)
    return (total / count).to(hidden.dtype)


def mean_sqrt_len_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Sum of attended tokens divided by sqrt(number of tokens): (B, T, D), (B, T) -> (B, D)."""
    m = _float_mask(hidden, mask)
    total = (hidden * m).sum(dim=1, dtype=torch.float32)
    count = m.sum(dim=1, dtype=torch.float32).clamp(min=1e-9)
    return (total / count.sqrt()).to(hidden.dtype)


def max_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Element-wise maximum over attended tokens: (B, T, D), (B, T) -> (B, D)."""
    return hidden.masked_fill(mask.unsqueeze(-1) == 0, float("-inf")).max(dim=1).values


def weighted_mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Position-weighted mean (SGPT): the k-th attended token weighs k. (B, T, D), (B, T) -> (B, D).

    Positions count from the first attended token, so left padding does not shift the weights.
    """
    positions = torch.arange(1, hidden.shape[1] + 1, device=hidden.device, dtype=torch.float32)
    offset = mask.to(torch.int32).argmax(dim=1).to(torch.float32)  # leading pad tokens per row
    weights = (positions.unsqueeze(0) - offset.unsqueeze(1)) * mask.to(torch.float32)  # (B, T)
    total = (hidden.float() * weights.unsqueeze(-1)).sum(dim=1)
    return (total / weights.sum(dim=1, keepdim=True).clamp(min=1e-9)).to(hidden.dtype)


def last_token_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """The last attended token (decoder-style embedders): (B, T, D), (B, T) -> (B, D)."""
    seq_len = mask.shape[1]
    from_end = mask.to(torch.int32).flip(1).argmax(dim=1)  # distance of the last 1 from the end
    last = seq_len - 1 - from_end
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


POOLING_FUNCTIONS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "cls": cls_pool,
    "mean": mean_pool,
    "max": max_pool,
    "mean_sqrt_len_tokens": mean_sqrt_len_pool,
    "weightedmean": weighted_mean_pool,
    "lasttoken": last_token_pool,
}

# Classic sentence-transformers 1_Pooling/config.json booleans, in the order ST concatenates them.
LEGACY_FLAGS: dict[str, str] = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
_MODE_ORDER = list(LEGACY_FLAGS.values())


class Pooling(nn.Module):
    """Pool token embeddings with one or several modes (outputs concatenated in the classic ST order).

    Args:
        dimension: width of the token embeddings (D).
        modes: one mode or a list of modes from POOLING_FUNCTIONS.
        include_prompt: when False, tokens of the prompt (after the first special token) are left out
            of the pool; the caller passes ``prompt_length``.
        keep_order: concatenate several modes in the given order (as an ST 5/6 ``pooling_mode`` list does)
            instead of the classic order cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken.
    """

    def __init__(
        self, dimension: int, modes: str | list[str] = "mean", include_prompt: bool = True, keep_order: bool = False
    ) -> None:
        super().__init__()
        mode_list = [modes] if isinstance(modes, str) else list(modes)
        unknown = [m for m in mode_list if m not in POOLING_FUNCTIONS]
        if unknown or not mode_list:
            raise EmbtuneError(
                f"unknown pooling mode {unknown or mode_list!r}; use one or more of: {', '.join(POOLING_FUNCTIONS)}"
            )
        self.dimension = int(dimension)
        unique = list(dict.fromkeys(mode_list))
        self.modes = unique if keep_order else sorted(unique, key=_MODE_ORDER.index)
        self.include_prompt = bool(include_prompt)

    @property
    def output_dimension(self) -> int:
        return self.dimension * len(self.modes)

    def forward(self, hidden: Tensor, mask: Tensor, prompt_length: int | Tensor = 0) -> Tensor:
        """(B, T, D), (B, T) -> (B, D * len(modes)). ``prompt_length``: one for the batch, or (B,) per row."""
        if not self.include_prompt and isinstance(prompt_length, Tensor):
            positions = torch.arange(mask.shape[1], device=mask.device)
            mask = mask * (positions[None, :] >= prompt_length.to(mask.device)[:, None]).to(mask.dtype)
        elif not self.include_prompt and prompt_length > 0:
            mask = mask.clone()
            mask[:, :prompt_length] = 0
        outputs = [POOLING_FUNCTIONS[m](hidden, mask) for m in self.modes]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)

    def get_config(self) -> dict:
        """Classic 1_Pooling/config.json (booleans), which sentence-transformers 2.x to 6.x all read."""
        config: dict = {"word_embedding_dimension": self.dimension}
        for flag, mode in LEGACY_FLAGS.items():
            config[flag] = mode in self.modes
        config["include_prompt"] = self.include_prompt
        if self.modes != sorted(self.modes, key=_MODE_ORDER.index):
            config["pooling_mode"] = list(self.modes)  # ST 5/6 read this list and keep its order
        return config

    @classmethod
    def from_config(cls, config: dict) -> Pooling:
        """Read either the classic booleans or the ST 5/6 ``pooling_mode`` key."""
        dim = config.get("word_embedding_dimension", config.get("embedding_dimension"))
        if dim is None:
            raise EmbtuneError(
                "pooling config has no 'word_embedding_dimension' or 'embedding_dimension'; "
                "add the token embedding width to 1_Pooling/config.json"
            )
        if "pooling_mode" in config:
            modes = config["pooling_mode"]
            return cls(int(dim), modes, bool(config.get("include_prompt", True)), keep_order=True)
        else:
            modes = [mode for flag, mode in LEGACY_FLAGS.items() if config.get(flag)]
            if not modes:
                modes = ["mean"]
        return cls(int(dim), modes, bool(config.get("include_prompt", True)))

    def extra_repr(self) -> str:
        return f"dimension={self.dimension}, modes={self.modes}, include_prompt={self.include_prompt}"
