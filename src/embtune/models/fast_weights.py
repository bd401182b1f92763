"""Hugging Face encoder <-> FastEncoder: which architectures qualify, and the weight-name mapping both ways.

``load_fast`` reads a folder's safetensors straight into a FastEncoder when its weights carry exactly the
names, shapes and extras (the pooler head) of the Hugging Face base model: no Hugging Face model is built, so
its modeling code is never imported (~2.5 s of every load). Everything else (prefixed or legacy names, missing
or mis-shaped weights, pickle files, custom code) goes through ``AutoModel.from_pretrained``, which handles
and reports it; ``from_hf`` then moves its tensors into a FastEncoder without copying them. Either way
query/key/value are concatenated into one ``qkv`` weight; ``hf_state_dict`` splits them again, so a saved
folder holds exactly the Hugging Face names and loads anywhere (sentence-transformers, ``AutoModel``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import Tensor

from .fast_encoder import ACTIVATIONS, EncoderSpec, FastEncoder

# Hugging Face class -> (kind, per-layer prefix, {fast layer name: HF names relative to the layer prefix}).
_BERT_LAYER = {
    "qkv": ("attention.self.query", "attention.self.key", "attention.self.value"),
    "attn_out": ("attention.output.dense",),
    "attn_norm": ("attention.output.LayerNorm",),
    "ffn_in": ("intermediate.dense",),
    "ffn_out": ("output.dense",),
    "ffn_norm": ("output.LayerNorm",),
}
_MPNET_LAYER = {
    "qkv": ("attention.attn.q", "attention.attn.k", "attention.attn.v"),
    "attn_out": ("attention.attn.o",),
    "attn_norm": ("attention.LayerNorm",),
    "ffn_in": ("intermediate.dense",),
    "ffn_out": ("output.dense",),
    "ffn_norm": ("output.LayerNorm",),
}
_DISTILBERT_LAYER = {
    "qkv": ("attention.q_lin", "attention.k_lin", "attention.v_lin"),
    "attn_out": ("attention.out_lin",),
    "attn_norm": ("sa_layer_norm",),
    "ffn_in": ("ffn.lin1",),
    "ffn_out": ("ffn.lin2",),
    "ffn_norm": ("output_layer_norm",),
}
ARCHITECTURES = {
    "BertModel": ("bert", "encoder.layer.{i}.", _BERT_LAYER),
    "RobertaModel": ("bert", "encoder.layer.{i}.", _BERT_LAYER),
    "XLMRobertaModel": ("bert", "encoder.layer.{i}.", _BERT_LAYER),
    "MPNetModel": ("mpnet", "encoder.layer.{i}.", _MPNET_LAYER),
    "DistilBertModel": ("distilbert", "transformer.layer.{i}.", _DISTILBERT_LAYER),
}
_ROBERTA_POSITIONS = ("RobertaModel", "XLMRobertaModel")
# config.json's model_type -> the base model class AutoModel builds for it
MODEL_TYPES = {"bert": "BertModel", "roberta": "RobertaModel", "xlm-roberta": "XLMRobertaModel",
               "mpnet": "MPNetModel", "distilbert": "DistilBertModel"}
_EXTRA_PREFIXES = ("pooler.",)  # weights the base model has and forward never reads: kept and saved back
_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")  # buffers older checkpoints saved


def unsupported_reason(hf_model) -> str | None:
    """Why ``hf_model`` cannot run on the fast path (None when it can)."""
    return unsupported_config(type(hf_model).__name__, hf_model.config)


def unsupported_config(name: str, config) -> str | None:
    """Why the Hugging Face class ``name`` with ``config`` cannot run on the fast path (None when it can)."""
    if name not in ARCHITECTURES:
        return f"{name} is not one of {', '.join(ARCHITECTURES)}"
    act = getattr(config, "activation", None) if name == "DistilBertModel" else getattr(config, "hidden_act", None)
    if not isinstance(act, str) or act not in ACTIVATIONS:
        return f"activation {act!r} is not one of {', '.join(ACTIVATIONS)}"
    if getattr(config, "position_embedding_type", "absolute") not in (None, "absolute"):
        return f"position_embedding_type {config.position_embedding_type!r} (only absolute positions)"
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return "decoder / cross-attention configuration"
    if name == "MPNetModel" and getattr(config, "relative_attention_num_buckets", 32) != 32:
        return "MPNet with other than 32 relative-attention buckets"
    return None


def spec_from_config(name: str, c) -> EncoderSpec:
    """The EncoderSpec of the supported Hugging Face class ``name`` with config ``c`` (see ``unsupported_config``)."""
    kind = ARCHITECTURES[name][0]
    if kind == "distilbert":
        return EncoderSpec(
            kind=kind, vocab_size=c.vocab_size, hidden_size=c.dim, num_layers=c.n_layers, num_heads=c.n_heads,
            intermediate_size=c.hidden_dim, max_positions=c.max_position_embeddings, type_vocab_size=0,
            layer_norm_eps=1e-12, activation=c.activation, hidden_dropout=c.dropout,
            attention_dropout=c.attention_dropout, padding_idx=c.pad_token_id, attn_out_dropout=False,
        )
    padding_idx = 1 if kind == "mpnet" else c.pad_token_id  # MPNet hard-codes padding index 1
    offset = padding_idx if (kind == "mpnet" or name in _ROBERTA_POSITIONS) else None
    return EncoderSpec(
        kind=kind, vocab_size=c.vocab_size, hidden_size=c.hidden_size, num_layers=c.num_hidden_layers,
        num_heads=c.num_attention_heads, intermediate_size=c.intermediate_size,
        max_positions=c.max_position_embeddings, type_vocab_size=0 if kind == "mpnet" else c.type_vocab_size,
        layer_norm_eps=c.layer_norm_eps, activation=c.hidden_act, hidden_dropout=c.hidden_dropout_prob,
        attention_dropout=c.attention_probs_dropout_prob, padding_idx=padding_idx, position_offset=offset,
        relative_buckets=32 if kind == "mpnet" else 0,
    )


def name_map(encoder: FastEncoder) -> dict[str, tuple[str, ...]]:
    """FastEncoder parameter name -> the Hugging Face names it holds (several: concatenated along dim 0)."""
    kind, layer_prefix, layer_map = ARCHITECTURES[encoder.hf_class]
    mapping: dict[str, tuple[str, ...]] = {}
    for sub in ("word_embeddings", "position_embeddings", "token_type_embeddings", "LayerNorm"):
        if hasattr(encoder.embeddings, sub):
            for p in ("weight", "bias") if sub == "LayerNorm" else ("weight",):
                mapping[f"embeddings.{sub}.{p}"] = (f"embeddings.{sub}.{p}",)
    for i in range(len(encoder.layers)):
        prefix = layer_prefix.format(i=i)
        for ours, theirs in layer_map.items():
            for p in ("weight", "bias"):
                mapping[f"layers.{i}.{ours}.{p}"] = tuple(f"{prefix}{t}.{p}" for t in theirs)
    if kind == "mpnet":
        mapping["relative_attention_bias.weight"] = ("encoder.relative_attention_bias.weight",)
    return mapping


def from_hf(hf_model) -> FastEncoder:
    """Build a FastEncoder holding ``hf_model``'s weights (shared storage; q/k/v concatenated)."""
    spec = spec_from_config(type(hf_model).__name__, hf_model.config)
    with torch.device("meta"):  # no allocation: every parameter is replaced by a Hugging Face tensor below
        encoder = FastEncoder(spec, hf_model.config, type(hf_model).__name__, init=False)
    state = {k: v for k, v in hf_model.state_dict().items()}
    used: set[str] = set()
    params = {}
    for ours, theirs in name_map(encoder).items():
        missing = [t for t in theirs if t not in state]
        if missing:
            raise KeyError(f"weight {missing[0]} not found in the {encoder.hf_class} state dict")
        tensors = [state[t] for t in theirs]
        params[ours] = tensors[0] if len(tensors) == 1 else torch.cat(tensors, dim=0)
        used.update(theirs)
    return _fill(encoder, params, {k: v for k, v in state.items() if k not in used})


def _fill(encoder: FastEncoder, params: dict[str, Tensor], extras: dict[str, Tensor]) -> FastEncoder:
    encoder.load_state_dict(params, strict=True, assign=True)
    for i, (name, tensor) in enumerate(sorted(extras.items())):
        encoder.register_buffer(f"_extra_{i}", tensor, persistent=False)  # e.g. the pooler: saved, never used
        encoder.extra_weights[name] = f"_extra_{i}"
    for p in encoder.parameters():
        p.requires_grad_(True)
    return encoder


def load_fast(folder: Path, config, dtype: torch.dtype | None = None) -> FastEncoder | None:
    """A FastEncoder holding ``folder``'s safetensors weights, read without building the Hugging Face model;
    None when the folder needs ``AutoModel.from_pretrained`` (another architecture, pickle or no safetensors,
    custom code, or weights whose names, shapes or extras differ from the base model's: it loads or reports
    those). ``dtype`` None loads as Hugging Face's default does: config.json's dtype, else the weights' own."""
    name = MODEL_TYPES.get(getattr(config, "model_type", None))
    if name is None or getattr(config, "auto_map", None) or unsupported_config(name, config) is not None:
        return None
    files = _weight_files(Path(folder))
    if files is None:
        return None
    from safetensors import safe_open

    where: dict[str, Path] = {}
    specs: dict[str, tuple[str, tuple[int, ...]]] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                piece = handle.get_slice(key)
                where[key], specs[key] = file, (piece.get_dtype(), tuple(piece.get_shape()))
    with torch.device("meta"):  # shapes only: every parameter is replaced by a tensor read below
        encoder = FastEncoder(spec_from_config(name, config), config, name, init=False)
    shapes = {k: tuple(v.shape) for k, v in encoder.state_dict().items()}
    mapping = name_map(encoder)
    wanted = {t for theirs in mapping.values() for t in theirs}
    for ours, theirs in mapping.items():
        rows = shapes[ours][0] // len(theirs)
        expected = (rows, *shapes[ours][1:])
        if any(t not in specs or specs[t][1] != expected for t in theirs):
            return None  # missing or mis-shaped: Hugging Face's loader names them (weights_check.py)
    extras = [k for k in specs if k not in wanted and not k.endswith(_BUFFERS)]
    if any(not k.startswith(_EXTRA_PREFIXES) for k in extras):
        return None  # prefixed (bert.*), legacy (gamma/beta) or head weights: Hugging Face maps or reports them
    target = dtype or _default_dtype(config, specs, wanted)
    tensors = _read(where, [*wanted, *extras], target)
    params = {ours: tensors[theirs[0]] if len(theirs) == 1 else torch.cat([tensors.pop(t) for t in theirs])
              for ours, theirs in mapping.items()}
    config.dtype = target  # what the Hugging Face model's config says after loading
    return _fill(encoder, params, {k: tensors[k] for k in extras})


def _weight_files(folder: Path) -> list[Path] | None:
    """The safetensors files of a folder (one file, or the shards its index names); None when there are none."""
    single = folder / "model.safetensors"
    if single.is_file():
        return [single]
    index = folder / "model.safetensors.index.json"
    if not index.is_file():
        return None
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None  # Hugging Face's loader reports a broken index
    if not all(isinstance(n, str) and n == Path(n).name and n not in ("", ".", "..") for n in names):
        from ..errors import EmbtuneError

        raise EmbtuneError(f"{index}: shard names must be files inside the model folder, got {names[:3]}; "
                           "restore the index from the original model")
    files = [folder / n for n in names]
    return files if all(f.is_file() for f in files) else None


def _default_dtype(config, specs: dict, wanted: set[str]) -> torch.dtype:
    from .low_precision import SAFETENSORS_DTYPES

    stated = getattr(config, "dtype", None)
    if isinstance(stated, str):
        stated = getattr(torch, stated, None)
    if isinstance(stated, torch.dtype) and stated.is_floating_point:
        return stated
    stored = [SAFETENSORS_DTYPES[specs[k][0]] for k in sorted(wanted) if specs[k][0] in SAFETENSORS_DTYPES]
    floats = [d for d in stored if d.is_floating_point]
    return floats[0] if floats else torch.float32


def _read(where: dict[str, Path], keys: list[str], dtype: torch.dtype) -> dict[str, Tensor]:
    """The tensors ``keys``, float ones cast to ``dtype``, one file open at a time."""
    from safetensors import safe_open

    out: dict[str, Tensor] = {}
    by_file: dict[Path, list[str]] = {}
    for key in keys:
        by_file.setdefault(where[key], []).append(key)
    for file, names in by_file.items():
        with safe_open(str(file), framework="pt") as handle:
            for key in names:
                tensor = handle.get_tensor(key)
                out[key] = tensor.to(dtype) if tensor.is_floating_point() else tensor
    return out


def hf_state_dict(encoder: FastEncoder) -> dict[str, Tensor]:
    """The Hugging Face state dict of ``encoder``: contiguous CPU tensors, fused weights split, extras included."""
    params = dict(encoder.named_parameters())
    out: dict[str, Tensor] = {}
    for ours, theirs in name_map(encoder).items():
        tensor = params[ours].detach()
        parts = tensor.chunk(len(theirs), dim=0) if len(theirs) > 1 else (tensor,)
        for name, part in zip(theirs, parts, strict=True):
            out[name] = part.contiguous().cpu().clone() if len(theirs) > 1 else part.contiguous().cpu()
    buffers = dict(encoder.named_buffers())
    for name, buffer in encoder.extra_weights.items():
        out[name] = buffers[buffer].detach().contiguous().cpu()
    return out


def save_fast(encoder: FastEncoder, folder: Path) -> None:
    """Write config.json and model.safetensors as Hugging Face's ``save_pretrained`` does (same names)."""
    from safetensors.torch import save_file

    config = copy.deepcopy(encoder.config)
    config.architectures = [encoder.hf_class]
    config.save_pretrained(folder)
    save_file(hf_state_dict(encoder), str(Path(folder) / "model.safetensors"), metadata={"format": "pt"})


def to_hf(encoder: FastEncoder):
    """A Hugging Face model with ``encoder``'s current weights (for ``backend="hf"`` after training fast)."""
    from transformers import AutoModel

    model = AutoModel.from_config(copy.deepcopy(encoder.config))
    state = hf_state_dict(encoder)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not m.endswith("position_ids")]:
        raise RuntimeError(f"weights do not match {type(model).__name__}: missing {missing}, unexpected {unexpected}")
    return model.to(next(encoder.parameters()).device).train(encoder.training)
