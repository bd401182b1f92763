"""OpenVINO export: OpenVINO's runtime alone reproduces encode from the IR; ST's openvino layout; CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embtune.cli import main

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed (pip install 'embtune[openvino]')")

from test_onnx_export import TEXTS, cosines  # noqa: E402


@pytest.fixture(scope="module")
def ov_export(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from embtune.export import export_openvino

    return export_openvino(tiny_model, tmp_path_factory.mktemp("openvino") / "export")


def _feeds(folder: Path, texts: list[str]) -> dict[str, np.ndarray]:
    from tokenizers import Tokenizer

    config = json.loads((folder / "config.json").read_text())
    batch = Tokenizer.from_file(str(folder / "tokenizer.json")).encode_batch(texts)
    cols = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
    return {n: np.array([getattr(e, cols[n]) for e in batch], dtype=np.int64) for n in config["inputs"]}


def _run_ir(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return next(iter(compiled(feeds).values()))


def test_embedding_ir_equals_encode_at_any_batch_and_length(tiny_model, ov_export):
    folder = ov_export / "embedding"
    assert json.loads((folder / "config.json").read_text())["files"]["openvino"] == "model.xml"
    assert (folder / "model.bin").stat().st_size > 0
    for texts in (TEXTS, TEXTS[:1], TEXTS[1:2] * 7):  # dynamic batch and sequence axes
        ref = tiny_model.encode(texts, precision="fp32")
        out = _run_ir(folder / "model.xml", _feeds(folder, texts))
        assert out.shape == ref.shape
        assert cosines(out, ref).min() >= 0.9999
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)  # the model normalizes


def test_weights_stay_float32(ov_export):
    model = ov.Core().read_model(str(ov_export / "embedding" / "model.xml"))
    types = {op.get_output_element_type(0).get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"}
    assert "f16" not in types and "f32" in types


def test_st_layout_encoder_ir_plus_pooling_equals_encode(tiny_model, ov_export):
    """openvino/openvino_model.xml is the encoder that sentence-transformers' openvino backend runs."""
    from embtune.models.embedding_model import EmbeddingModel

    features = EmbeddingModel.load(ov_export).tokenize(TEXTS)
    compiled = ov.Core().compile_model(str(ov_export / "openvino" / "openvino_model.xml"), "CPU",
                                       {"INFERENCE_PRECISION_HINT": "f32"})
    assert compiled.outputs[0].get_any_name() == "last_hidden_state"
    hidden = compiled({k: v.numpy() for k, v in features.items()})[0]
    mask = features["attention_mask"].numpy()[..., None]
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    assert cosines(pooled, tiny_model.encode(TEXTS, precision="fp32")).min() >= 0.9999
    assert (ov_export / "onnx" / "model.onnx").is_file()  # the ONNX export is there too


def test_sentence_transformers_openvino_backend_loads_the_export(tiny_model, ov_export):
    pytest.importorskip("optimum.intel", reason="optimum-intel (ST's backend='openvino') pins an older transformers")
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(ov_export), backend="openvino", device="cpu")
    assert cosines(st.encode(TEXTS), tiny_model.encode(TEXTS, precision="fp32")).min() >= 0.999


def test_cli_export_openvino(tiny_bert_dir, tmp_path, capsys):
    assert main(["export", str(tiny_bert_dir), "--format", "openvino", "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "openvino" / "openvino_model.xml").is_file()
    assert "openvino_model.bin" in capsys.readouterr().out


def test_cli_export_openvino_refuses_int8_in_one_line(tiny_bert_dir, tmp_path, capsys):
    code = main(["export", str(tiny_bert_dir), "--format", "openvino", "--quantize", "int8",
                 "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "--format onnx" in err
    assert not (tmp_path / "out").exists()
