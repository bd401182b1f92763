"""LoRA adapters on the encoder, with the ``peft`` library (the ``[lora]`` extra).

- ``attach_lora(model, cfg)`` wraps ``model.transformer.auto_model`` in a ``peft.PeftModel``: only the LoRA
  matrices train, the base weights are frozen. Target modules default per architecture (``default_targets``).
- While an adapter is attached, ``model.save(folder)`` writes the *adapter layout*: the sentence-transformers
  files of the base model (modules.json, pooling, tokenizer, ...) with ``adapter_config.json`` and
  ``adapter_model.safetensors`` in place of the encoder weights. sentence-transformers loads such a folder
  (``SentenceTransformer(folder)``, its base found through ``base_model_name_or_path``), and so does
  ``model.load_adapter(folder)`` on a loaded base model. Training checkpoints of a LoRA run use this layout.
- ``merge_lora(model)`` folds the adapter into the base weights (``W + alpha/r * B @ A``) and removes peft:
  the result saves as a plain model that loads anywhere. The trainer's default output.
- ``load_lora(model, folder, cfg)`` re-attaches an adapter saved by embtune (exact resume).
- A bf16 base (``model.adapter.base_dtype``, bf16 by default under bf16 training): the encoder loads in bf16,
  its frozen Linear and embedding weights stay bf16 (half the memory), layer norms and the adapters are
  float32. ``merge_lora`` first re-reads the base's float32 weights from its safetensors, tensor by tensor,
  so the merged model equals ``W_fp32 + alpha/r * B @ A`` and is not rounded to bf16.

embtune itself never follows ``base_model_name_or_path`` (a path out of the folder): to load an adapter
folder in embtune, load the base model and call ``load_lora``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import EmbtuneError

if TYPE_CHECKING:
    from .embedding_model import EmbeddingModel

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"

# Linear layers of each encoder family that LoRA adapts by default: attention q/k/v/output and both
# feed-forward layers. The Hugging Face pooler head (``pooler.dense``) is excluded: mean/CLS pooling never reads it.
_HF_DEFAULTS: dict[str, list[str]] = {
    "bert": ["query", "key", "value", "dense"],
    "xlm-roberta": ["query", "key", "value", "dense"],
    "roberta": ["query", "key", "value", "dense"],
    "camembert": ["query", "key", "value", "dense"],
    "electra": ["query", "key", "value", "dense"],
    "mpnet": ["q", "k", "v", "o", "dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "modernbert": ["Wqkv", "Wo", "Wi"],
}
# embtune's own fast encoder (models/fast_encoder.py, when present) names its layers differently.
_FAST_DEFAULTS = ["qkv", "attn_out", "ffn_in", "ffn_out"]
_EXCLUDE = ["pooler.dense"]


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise EmbtuneError(
            "model.adapter needs the peft library; install it with: pip install 'embtune[lora]'"
        ) from None
    return peft


def default_targets(auto_model: nn.Module) -> list[str]:
    """The LoRA target module names for this encoder (see ``_HF_DEFAULTS``)."""
    names = {name.rsplit(".", 1)[-1] for name, m in auto_model.named_modules() if isinstance(m, nn.Linear)}
    if set(_FAST_DEFAULTS) <= names:
        return list(_FAST_DEFAULTS)
    model_type = getattr(getattr(auto_model, "config", None), "model_type", None)
    if model_type in _HF_DEFAULTS:
        return list(_HF_DEFAULTS[model_type])
    raise EmbtuneError(
        f"model.adapter: no default LoRA target modules for model type {model_type!r}; set "
        f"model.adapter.target_modules to names of its Linear layers (e.g. {sorted(names)[:6]})"
    )


@dataclass
class LoraInfo:
    """What a card says about an attached adapter."""

    config: dict[str, Any]
    trainable_parameters: int
    total_parameters: int


def is_lora(model: EmbeddingModel) -> bool:
    """Whether a peft adapter is attached to ``model``'s encoder."""
    peft = _peft_or_none()
    return peft is not None and isinstance(model.transformer.auto_model, peft.PeftModel)


def _peft_or_none() -> Any:
    try:
        import peft
    except ImportError:
        return None
    return peft


def attach_lora(
    model: EmbeddingModel,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.05,
    target_modules: list[str] | None = None,
    base_name: str | None = None,
) -> LoraInfo:
    """Wrap the encoder of ``model`` in LoRA adapters (in place); only the adapters stay trainable.

    Args:
        r / alpha / dropout: LoRA rank, scaling numerator (scale = alpha / r) and dropout on the adapter input.
        target_modules: Linear layer names to adapt; None picks ``default_targets``.
        base_name: what ``adapter_config.json`` names as its base model (a Hub id or an absolute folder).
    """
    peft = _peft()
    model.transformer.use_backend("hf")  # peft wraps Hugging Face's module names (query/key/value/dense)
    auto_model = model.transformer.auto_model
    if isinstance(auto_model, peft.PeftModel):
        raise EmbtuneError("model.adapter: the model already has an adapter; merge it first (merge_lora)")
    targets = list(target_modules) if target_modules else default_targets(auto_model)
    present = {name.rsplit(".", 1)[-1] for name, m in auto_model.named_modules() if isinstance(m, nn.Linear)}
    missing = [t for t in targets if t not in present]
    if missing:
        raise EmbtuneError(
            f"model.adapter.target_modules: {missing} match no Linear layer of this model; use names among "
            f"{sorted(present)[:12]}"
        )
    config = peft.LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=targets,
        exclude_modules=[e for e in _EXCLUDE if e.rsplit(".", 1)[-1] in targets] or None,
        bias="none",
        base_model_name_or_path=base_name,
    )
    wrapped = peft.get_peft_model(auto_model, config)
    model.transformer.auto_model = wrapped
    return lora_info(model)


def base_weights_dtype(setting: str, amp_dtype: torch.dtype | None) -> torch.dtype | None:
    """The dtype a LoRA base loads in for ``model.adapter.base_dtype`` (None: float32)."""
    if setting == "bf16" or (setting == "auto" and amp_dtype == torch.bfloat16):
        return torch.bfloat16
    return None


def _settle_dtypes(model: EmbeddingModel) -> None:
    """After attaching to a bf16 base: adapters, layer norms and every other small module back to float32;
    only frozen ``nn.Linear`` / ``nn.Embedding`` weights (the bulk of the model) stay bf16."""
    for module in model.transformer.auto_model.modules():
        keep_low = isinstance(module, (nn.Linear, nn.Embedding))
        for param in module.parameters(recurse=False):
            if param.dtype == torch.bfloat16 and (param.requires_grad or not keep_low):
                param.data = param.data.float()
        for name, buf in module.named_buffers(recurse=False):
            if buf.dtype == torch.bfloat16:
                setattr(module, name, buf.float())


def _low_precision_base(model: EmbeddingModel) -> bool:
    return any(p.dtype == torch.bfloat16 for p in model.transformer.auto_model.parameters())


def restore_float32_base(model: EmbeddingModel) -> int:
    """Replace the bf16 frozen base weights by their float32 originals from the folder they were loaded from.

    Reads one tensor at a time (safetensors), so memory grows to the float32 model, never beyond. Returns the
    number of tensors restored. A weight the folder does not hold (it was never in a file) is upcast instead.
    """
    from safetensors import safe_open

    folder = getattr(model.transformer, "source_folder", None)
    files = sorted(Path(folder).glob("*.safetensors")) if folder is not None else []
    where: dict[str, Path] = {}
    for file in files:
        with safe_open(str(file), framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                where[key] = file
    base = model.transformer.auto_model
    base = base.get_base_model() if hasattr(base, "get_base_model") else base
    restored = 0
    for name, param in base.named_parameters():
        if param.dtype != torch.bfloat16:
            continue
        hf_name = name.replace(".base_layer.", ".")
        key = hf_name if hf_name in where else next((k for k in where if k.endswith("." + hf_name)), None)
        if key is None:
            param.data = param.data.float()
            continue
        with safe_open(str(where[key]), framework="pt") as handle:
            tensor = handle.get_tensor(key)
        if tuple(tensor.shape) != tuple(param.shape):
            raise EmbtuneError(f"{where[key]}: {key} has shape {tuple(tensor.shape)}, the model {tuple(param.shape)}; "
                               "the base model folder changed during training; restore it, or save: adapter")
        param.data = tensor.float()
        restored += 1
    return restored


def lora_info(model: EmbeddingModel) -> LoraInfo:
    """Adapter config and trainable / total parameter counts of a model with an attached adapter."""
    wrapped = model.transformer.auto_model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    cfg = wrapped.peft_config["default"]
    shown = {
        "kind": "lora",
        "r": cfg.r,
        "alpha": cfg.lora_alpha,
        "dropout": cfg.lora_dropout,
        "target_modules": sorted(cfg.target_modules),
    }
    return LoraInfo(shown, trainable, total)


def load_lora(model: EmbeddingModel, folder: str | Path, trainable: bool = True) -> LoraInfo:
    """Attach the adapter saved in ``folder`` (``adapter_config.json`` + ``adapter_model.safetensors``).

    The base weights are ``model``'s own: ``base_model_name_or_path`` in the folder is not followed.
    """
    peft = _peft()
    folder = Path(folder)
    for name in (ADAPTER_CONFIG, ADAPTER_WEIGHTS):
        if not (folder / name).is_file():
            raise EmbtuneError(f"{folder}: no {name}; pass a folder saved with model.adapter.save: adapter")
    model.transformer.use_backend("hf")  # adapters name Hugging Face's modules
    auto_model = model.transformer.auto_model
    if isinstance(auto_model, peft.PeftModel):
        raise EmbtuneError(f"{folder}: the model already has an adapter; load the adapter into a base model")
    wrapped = peft.PeftModel.from_pretrained(auto_model, str(folder), is_trainable=trainable)
    model.transformer.auto_model = wrapped
    return lora_info(model)


def merge_lora(model: EmbeddingModel) -> None:
    """Fold the adapter into the base weights and drop peft, in place (a no-op without an adapter).

    A bf16 base gets its float32 weights back first (``restore_float32_base``)."""
    if is_lora(model):
        if _low_precision_base(model):
            restore_float32_base(model)
        model.transformer.auto_model = model.transformer.auto_model.merge_and_unload()


def adapter_base_name(name: str) -> str:
    """How ``adapter_config.json`` should name a base model: local folders (and ``bundled:``) absolute."""
    if name.startswith("bundled"):
        from .hub import resolve_model_folder

        return str(resolve_model_folder(name)[0].resolve())
    path = Path(name)
    return str(path.resolve()) if path.exists() else name


def with_adapter(model: EmbeddingModel, base_name: str, cfg: Any, checkpoint: Path | None = None) -> EmbeddingModel:
    """``model`` with the LoRA adapter of ``cfg`` (an ``AdapterCfg``): fresh, or read from ``checkpoint``.

    ``save: adapter`` needs a Hugging Face ``transformers`` encoder: the saved adapter names its layers, and
    sentence-transformers / PEFT load it only onto that same module tree.
    """
    from transformers import PreTrainedModel

    if cfg.save == "adapter" and not isinstance(model.transformer.auto_model, PreTrainedModel):
        raise EmbtuneError(
            f"model.adapter.save: adapter needs the Hugging Face encoder, but this model runs "
            f"{type(model.transformer.auto_model).__name__}; set model.backend: hf, or save: merged"
        )
    if checkpoint is not None:
        info = load_lora(model, checkpoint)
    else:
        info = attach_lora(model, cfg.r, cfg.alpha, cfg.dropout, cfg.target_modules or None, adapter_base_name(base_name))
    if _low_precision_base(model):
        _settle_dtypes(model)
    model.source = base_name
    model.adapter_info = info  # what the model card reports (kept after merge_lora)
    return model


def finish_adapter(model: EmbeddingModel, cfg: Any) -> None:
    """Before the final save of a run: merge the adapter unless ``cfg.save`` is ``adapter``."""
    if cfg is not None and cfg.save == "merged":
        merge_lora(model)
