"""OpenVINO IR export: the ONNX export's two graphs converted to OpenVINO's format, in the same folder.

``export_openvino(model, "out")`` writes everything ``export_onnx`` writes, plus::

    out/openvino/openvino_model.xml (+ .bin)    the encoder, where sentence-transformers' ``backend="openvino"``
                                                (optimum-intel) looks for it
    out/embedding/model.xml (+ .bin)            self-contained: tokens -> pooled (normalized) embedding (not
                                                named openvino*.xml, so ST's loader finds one IR, not two)

Converted with ``openvino.convert_model`` from the traced ONNX graphs (same inputs and outputs, dynamic batch
and length) and saved with float32 weights (``save_model`` would halve them to fp16 by default; OpenVINO still
picks bf16 or fp16 for the computation on CPUs that have it, as its own default "performance" hint does).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import EmbtuneError
from .onnx import prepare_output, write_onnx_files

IR_NAME = "openvino_model.xml"  # the file name sentence-transformers' openvino backend looks for
EMBEDDING_IR_NAME = "model.xml"


def _require_openvino():
    try:
        import openvino
    except ImportError:
        raise EmbtuneError(
            "OpenVINO export needs the openvino extra; install it with: pip install 'embtune[openvino]'"
        ) from None
    return openvino


def onnx_to_ir(source: Path, target: Path) -> None:
    """Convert one ONNX graph to OpenVINO IR (``target`` .xml plus its .bin), float32 weights kept."""
    ov = _require_openvino()
    ov.save_model(ov.convert_model(str(source)), str(target), compress_to_fp16=False)


def export_openvino(model, output: str | os.PathLike) -> Path:
    """Export ``model`` (an EmbeddingModel) to ``output`` atomically: the ONNX export plus both graphs as
    OpenVINO IR; returns the folder.

    Args:
        model: the model to export (its weights in float32).
        output: a new or empty folder, or a previous export (replaced in one step).
    """
    from ..utils.atomic import atomic_dir

    _require_openvino()
    output = prepare_output(model, output)
    with atomic_dir(output) as tmp:
        write_onnx_files(model, tmp)
        onnx_to_ir(tmp / "onnx" / "model.onnx", tmp / "openvino" / IR_NAME)
        onnx_to_ir(tmp / "embedding" / "model.onnx", tmp / "embedding" / EMBEDDING_IR_NAME)
        config_path = tmp / "embedding" / "config.json"
        meta = json.loads(config_path.read_text(encoding="utf-8"))
        meta["files"]["openvino"] = EMBEDDING_IR_NAME
        config_path.write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return output
