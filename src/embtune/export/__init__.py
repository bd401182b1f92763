"""Export a model for runtimes without torch: ``export_onnx`` (onnxruntime, sentence-transformers' onnx backend)."""

from .onnx import export_onnx

__all__ = ["export_onnx"]
