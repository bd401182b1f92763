"""Export a model for runtimes without torch: ``export_onnx`` (onnxruntime, sentence-transformers' onnx backend),
``export_openvino`` (the same graphs as OpenVINO IR, sentence-transformers' openvino backend)."""

from .onnx import export_onnx
from .openvino import export_openvino

__all__ = ["export_onnx", "export_openvino"]
