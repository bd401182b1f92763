"""Fixtures for the reliability tests: a tiny model saved in the sentence-transformers layout."""

from __future__ import annotations

from pathlib import Path

import pytest

from embtune.models.embedding_model import EmbeddingModel


@pytest.fixture(scope="session")
def model_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT saved as a sentence-transformers folder (mean pooling + Normalize); read-only."""
    folder = tmp_path_factory.mktemp("reliability") / "tiny-st"
    return EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True).save(folder)
