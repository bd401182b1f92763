"""embtune: fine-tune, evaluate and serve sentence-embedding models (sentence-transformers folder compatible)."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["EmbeddingModel", "EmbtuneError", "__version__"]


def __getattr__(name: str) -> Any:
    # Lazy: `import embtune` stays cheap (no torch import) so the CLI answers --help instantly.
    if name == "EmbeddingModel":
        from .models.embedding_model import EmbeddingModel

        return EmbeddingModel
    if name == "EmbtuneError":
        from .errors import EmbtuneError

        return EmbtuneError
    raise AttributeError(f"module 'embtune' has no attribute {name!r}")
