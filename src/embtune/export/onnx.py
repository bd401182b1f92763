"""ONNX export: one folder that onnxruntime alone and sentence-transformers' ``backend="onnx"`` both run.

Layout written by ``export_onnx(model, "out")``::

    out/                      a sentence-transformers folder (modules.json, model.safetensors, tokenizer, ...)
    out/onnx/model.onnx       the encoder: tokens -> token embeddings (what ST's onnx backend / optimum load)
    out/embedding/model.onnx  self-contained: input_ids, attention_mask[, token_type_ids] -> pooled embedding
    out/embedding/tokenizer.json   the fast tokenizer with truncation and padding already configured
    out/embedding/config.json      opset, input names, dimension, normalized, max_seq_length, prompts

``--quantize int8`` adds ``model_int8.onnx`` beside each graph (onnxruntime dynamic quantization, int8 weights).
Batch and sequence length are dynamic axes. The graphs are traced from the Hugging Face module tree with the
TorchScript exporter (``dynamo=False``), which handles BERT-style encoders with data-dependent masks robustly.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from ..errors import EmbtuneError

logger = logging.getLogger(__name__)

OPSET = 17
QUANTIZE = ("int8",)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _require_onnx():
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise EmbtuneError(
            "ONNX export needs the onnx extra; install it with: pip install 'embtune[onnx]'"
        ) from None


class _EmbeddingGraph(nn.Module):
    """Tokens -> sentence embedding: the EmbeddingModel forward with positional inputs, for tracing."""

    def __init__(self, model, names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.model(dict(zip(self.names, inputs, strict=True)))


class _EncoderGraph(nn.Module):
    """Tokens -> token embeddings (last_hidden_state), the graph sentence-transformers' onnx backend expects."""

    def __init__(self, model, names: tuple[str, ...]) -> None:
        super().__init__()
        self.transformer = model.transformer
        self.names = names

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.transformer(dict(zip(self.names, inputs, strict=True)))


def _input_names(model) -> tuple[str, ...]:
    accepted = set(model.transformer.model_input_names)
    return tuple(n for n in _INPUTS if n in accepted or n != "token_type_ids")


def _sample(model, names: tuple[str, ...]) -> tuple[Tensor, ...]:
    features = model.tokenize(["an example text for tracing the graph", "short"])
    if "token_type_ids" in names and "token_type_ids" not in features:
        features["token_type_ids"] = torch.zeros_like(features["input_ids"])
    return tuple(features[n] for n in names)


def _trace(module: nn.Module, sample: tuple[Tensor, ...], names, output: str, path: Path, output_axes) -> None:
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[output] = output_axes
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer's notes about Python-side branches (masks are always given, so they stay constant) and
        # advanced indexing (our indices are never negative): noise to a user; the tests run every batch/length
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            module,
            sample,
            str(path),
            input_names=list(names),
            output_names=[output],
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    import onnx

    onnx.checker.check_model(str(path))


def quantize_int8(source: Path, target: Path, reduce_range: bool = False) -> None:
    """Dynamic int8 quantization: per-channel int8 weights, activations quantized per batch at run time
    (per-tensor weights lose too much: cosine 0.96 vs 0.992 per-channel on all-MiniLM-L6-v2).

    ``reduce_range`` quantizes the weights to 7 bits: onnxruntime's u8 x s8 products on x86 CPUs without VNNI
    go through 16-bit pair sums that saturate (its docs recommend it there; on an AVX2 EPYC the worst cosine of
    8-bit weights to fp32 was 0.989 on short sentences). ``write_onnx_files`` turns it on when the exporting
    CPU has no int8 dot products (``models.int8.HAS_INT8_DOT``)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
                     reduce_range=reduce_range)


def _runtime_tokenizer(model, path: Path) -> None:
    """tokenizer.json with truncation at max_seq_length and padding to the longest text of a batch."""
    from tokenizers import Tokenizer, normalizers

    if not getattr(model.tokenizer, "is_fast", False):
        raise EmbtuneError("ONNX export needs a fast tokenizer (tokenizer.json); this model has a slow one")
    tok = Tokenizer.from_str(model.tokenizer.backend_tokenizer.to_str())
    if model.transformer.do_lower_case:
        steps = [normalizers.Lowercase()] + ([tok.normalizer] if tok.normalizer is not None else [])
        tok.normalizer = normalizers.Sequence(steps)
    tok.enable_truncation(model.max_seq_length, strategy="longest_first")
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    pad_token = model.tokenizer.pad_token or tok.id_to_token(pad_id) or "[PAD]"
    tok.enable_padding(pad_id=pad_id, pad_token=pad_token)
    tok.save(str(path))


def _metadata(model, names, quantize: str | None, int8_weight_bits: int) -> dict:
    return {
        "format": "embtune-onnx-embedding",
        "opset": OPSET,
        "inputs": list(names),
        "output": "sentence_embedding",
        "dimension": model.embedding_dim,
        "normalized": model.normalizes,
        "pooling": list(model.pooling.modes),
        "max_seq_length": model.max_seq_length,
        "similarity_fn_name": model.similarity_fn_name,
        "prompts": model.prompts,
        "default_prompt_name": model.default_prompt_name,
        "files": {"fp32": "model.onnx", **({"int8": "model_int8.onnx"} if quantize else {})},
        **({"int8_weight_bits": int8_weight_bits} if quantize else {}),
    }


def write_onnx_files(model, folder: Path, quantize: str | None = None) -> None:
    """Write the ST folder, onnx/ and embedding/ into an existing empty ``folder`` (non-atomic)."""
    names = _input_names(model)
    sample = _sample(model, names)
    model.write_folder(folder)
    was_training = model.training
    model.eval()
    try:
        emb_path = folder / "embedding" / "model.onnx"
        _trace(_EmbeddingGraph(model, names), sample, names, "sentence_embedding", emb_path, {0: "batch"})
        enc_path = folder / "onnx" / "model.onnx"
        _trace(_EncoderGraph(model, names), sample, names, "last_hidden_state", enc_path, {0: "batch", 1: "sequence"})
    finally:
        model.train(was_training)
    from ..models.int8 import HAS_INT8_DOT

    reduce_range = not HAS_INT8_DOT  # a graph for VNNI / AMX servers should be quantized on one
    if quantize == "int8":
        quantize_int8(emb_path, emb_path.with_name("model_int8.onnx"), reduce_range)
        quantize_int8(enc_path, enc_path.with_name("model_qint8.onnx"), reduce_range)
    _runtime_tokenizer(model, folder / "embedding" / "tokenizer.json")
    meta = _metadata(model, names, quantize, 7 if reduce_range else 8)
    (folder / "embedding" / "config.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def export_onnx(model, output: str | os.PathLike, quantize: str | None = None) -> Path:
    """Export ``model`` (an EmbeddingModel) to ``output`` atomically; returns the folder.

    Args:
        model: the model to export (its weights in float32).
        output: a new or empty folder, or a previous export (replaced in one step).
        quantize: None or "int8": also write dynamically int8-quantized graphs.
    """
    from ..utils.atomic import atomic_dir

    if quantize is not None and quantize not in QUANTIZE:
        raise EmbtuneError(f"unknown quantize {quantize!r} for ONNX export; use: {', '.join(QUANTIZE)}")
    output = prepare_output(model, output)
    with atomic_dir(output) as tmp:
        write_onnx_files(model, tmp, quantize)
    return output


def prepare_output(model, output: str | os.PathLike) -> Path:
    """Check the onnx extra and the output folder (new, empty, or a previous export: anything else is refused)
    and put ``model`` in the state the exporters trace (float32, Hugging Face modules); the folder as a Path."""
    _require_onnx()
    if not model.pooling.include_prompt and model.prompts:
        logger.warning("the exported graph pools over prompt tokens too (include_prompt=false is not exported)")
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise EmbtuneError(f"{output}: exists and is not a folder; choose a new --output folder")
    if output.is_dir() and any(output.iterdir()) and not (output / "embedding" / "config.json").is_file():
        raise EmbtuneError(f"{output}: exists and is not an export; choose an empty or new --output folder")
    model.float()
    model.transformer.use_backend("hf")  # trace Hugging Face's modules: every input (token_type_ids too) stays a graph input
    return output
