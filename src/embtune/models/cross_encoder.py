"""A cross-encoder scorer: a Hugging Face sequence-classification folder that scores (query, document) pairs.

Used as a teacher (MarginMSELoss, DistillKLDivLoss) and to rescore mined hard negatives. Loading follows the
same rules as embedding models: safetensors only unless ``allow_pickle``, no remote code.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..errors import EmbtuneError
from .hub import resolve_model_folder
from .transformer import _quiet_loading, check_weight_files

_SIGMOID = ("torch.nn.modules.activation.Sigmoid", "Sigmoid")


def is_cross_encoder(name_or_path: str | os.PathLike) -> bool:
    """True for a local folder holding a ``*ForSequenceClassification`` model and no ``modules.json``."""
    folder = Path(str(name_or_path))
    config = folder / "config.json"
    if not config.is_file() or (folder / "modules.json").is_file():
        return False
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (OSError, ValueError):
        return False
    return any(str(a).endswith("ForSequenceClassification") for a in architectures)


class CrossEncoder:
    """Scores text pairs with one forward pass per pair: ``predict([(q, d), ...]) -> (N,) float32``.

    The score is the single logit, passed through a sigmoid when the folder asks for it (sentence-transformers'
    ``activation_fn`` in config.json) or by default for one-label models, as sentence-transformers does.
    """

    def __init__(self, model: torch.nn.Module, tokenizer, max_length: int, sigmoid: bool, source: str) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.sigmoid = sigmoid
        self.source = source

    @classmethod
    def load(cls, name_or_path: str | os.PathLike, *, allow_pickle: bool = False, max_length: int = 512) -> CrossEncoder:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        folder, _ = resolve_model_folder(name_or_path, None, None, allow_pickle)
        check_weight_files(folder, allow_pickle)
        config = json.loads((folder / "config.json").read_text())
        if config.get("num_labels", len(config.get("id2label", {}) or {0: 0})) not in (1, None):
            raise EmbtuneError(f"{folder}: a cross-encoder teacher needs a one-label (score) model")
        with _quiet_loading():
            model = AutoModelForSequenceClassification.from_pretrained(
                folder, use_safetensors=not allow_pickle, trust_remote_code=False
            )
            tokenizer = AutoTokenizer.from_pretrained(folder)
        activation = (config.get("sentence_transformers") or {}).get("activation_fn")
        sigmoid = activation in _SIGMOID if activation else True
        limit = min(max_length, getattr(tokenizer, "model_max_length", max_length) or max_length)
        return cls(model, tokenizer, limit, sigmoid, str(name_or_path))

    @torch.no_grad()
    def predict(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> np.ndarray:
        """(N,) float32 scores of the pairs, in input order."""
        out = np.empty(len(pairs), dtype=np.float32)
        device = next(self.model.parameters()).device
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            features = self.tokenizer(
                [p[0] for p in chunk], [p[1] for p in chunk], padding=True, truncation=True,
                max_length=self.max_length, return_tensors="pt",
            ).to(device)
            logits = self.model(**features).logits[:, 0].float()
            out[start : start + len(chunk)] = (torch.sigmoid(logits) if self.sigmoid else logits).cpu().numpy()
        return out
