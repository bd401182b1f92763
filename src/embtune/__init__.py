"""embtune: fine-tune, evaluate and serve sentence-embedding models (sentence-transformers folder compatible)."""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["EmbeddingModel", "EmbtuneError", "__version__", "evaluate", "load_recipe", "train"]


def __getattr__(name: str) -> Any:
    # Lazy: `import embtune` stays cheap (no torch import) so the CLI answers --help instantly.
    if name == "EmbeddingModel":
        from .models.embedding_model import EmbeddingModel

        return EmbeddingModel
    if name == "EmbtuneError":
        from .errors import EmbtuneError

        return EmbtuneError
    if name == "train":
        from .training.loop import train

        return train
    if name == "load_recipe":
        from .training.recipe import load_recipe

        return load_recipe
    if name == "evaluate":
        from .evaluation.run import evaluate

        return evaluate
    raise AttributeError(f"module 'embtune' has no attribute {name!r}")
