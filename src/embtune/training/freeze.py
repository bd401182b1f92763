"""``model.freeze``: keep the embeddings and/or the first N encoder layers fixed during training.

Frozen parameters get ``requires_grad=False``, so backward computes no gradient for them and the optimizer
never sees them. Works on any module tree: the encoder's layers are its longest ``nn.ModuleList`` of
same-type blocks, and the embeddings are every parameter registered before the first layer (word,
position and token-type tables and their LayerNorm in Hugging Face BERT / XLM-R / MPNet / DistilBERT).
"""

from __future__ import annotations

from torch import nn

from ..errors import EmbtuneError
from .config import FreezeCfg


def find_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The encoder's stack of layers: the longest ModuleList whose children all share one class."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and len({type(m) for m in module}) == 1:
            if best is None or len(module) > len(best[1]):
                best = (name, module)
    if best is None:
        raise EmbtuneError("model.freeze: could not find the encoder's list of layers in this model; remove model.freeze")
    return best


def apply_freeze(encoder: nn.Module, cfg: FreezeCfg) -> list[str]:
    """Freeze what ``cfg`` asks for in ``encoder`` (the transformer); return the frozen parameter names."""
    if not cfg.embeddings and cfg.layers == 0:
        return []
    prefix, layers = find_layers(encoder)
    if cfg.layers > len(layers):
        raise EmbtuneError(f"model.freeze.layers: {cfg.layers} but the model has {len(layers)} layers; use at most {len(layers)}")
    frozen = []
    if cfg.embeddings:
        for name, param in encoder.named_parameters():
            if name.startswith(f"{prefix}."):
                break  # everything registered before the first layer is the embedding block
            param.requires_grad_(False)
            frozen.append(name)
    for index in range(cfg.layers):
        for name, param in layers[index].named_parameters():
            param.requires_grad_(False)
            frozen.append(f"{prefix}.{index}.{name}")
    return frozen
