"""Fixtures for the export tests: a tiny normalized model and its ONNX export (built once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="the onnx extra is not installed (pip install 'embtune[onnx]')")

from embtune.models.embedding_model import EmbeddingModel  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tiny_bert_dir: Path) -> EmbeddingModel:
    return EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True)


@pytest.fixture(scope="session")
def tiny_export(tiny_model: EmbeddingModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model exported with --quantize int8; treat it as read-only."""
    from embtune.export import export_onnx

    return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "export", quantize="int8")
