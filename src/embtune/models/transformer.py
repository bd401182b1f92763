"""Transformer: a Hugging Face encoder plus its tokenizer, producing token embeddings (B, T, D)."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import EmbtuneError
from ..utils.paths import os_error
from ..utils.text_cap import cap_texts
from .fast_encoder import FastEncoder
from .fast_weights import from_hf, load_fast, save_fast, to_hf, unsupported_reason
from .weights_check import check_loading_info, quiet_transformers

logger = logging.getLogger(__name__)

_PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")
_SAFE_WEIGHTS = ("model.safetensors", "model.safetensors.index.json")
BACKENDS = ("auto", "fast", "hf")


def check_weight_files(folder: Path, allow_pickle: bool) -> None:
    """Refuse folders whose only weights are pickle files unless the caller opted in explicitly."""
    if any((folder / name).is_file() for name in _SAFE_WEIGHTS):
        return
    pickled = [name for name in _PICKLE_WEIGHTS if (folder / name).is_file()]
    if pickled and not allow_pickle:
        raise EmbtuneError(
            f"{folder}: only pickle weights ({pickled[0]}) were found; pickle files can run arbitrary code. "
            "Convert them to model.safetensors, or pass allow_pickle=True (CLI: --allow-pickle) if you trust the source"
        )
    if not pickled:
        raise EmbtuneError(
            f"{folder}: no model weights found (expected model.safetensors); the model folder is incomplete"
        )


def check_safetensors(path: Path) -> None:
    """Read the header of a safetensors file (cheap: no tensor data) and name the file if it is damaged."""
    from safetensors import safe_open

    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise os_error(exc, path, "weights file") from None
    try:
        with safe_open(str(path), framework="pt") as handle:
            handle.keys()
    except Exception as exc:  # truncated or overwritten files fail in several ways inside safetensors
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:120]
        raise EmbtuneError(
            f"{path}: corrupted or truncated safetensors file ({reason}); restore it from the original model "
            "(or re-download it)"
        ) from None


def _check_weights_readable(folder: Path) -> None:
    for path in sorted(folder.glob("*.safetensors")):
        check_safetensors(path)


def _check_tokenizer(folder: Path, tokenizer) -> None:
    """transformers builds an empty tokenizer (special tokens only) when the files are missing: refuse it."""
    specials = set(getattr(tokenizer, "all_special_tokens", ()))
    if len(tokenizer) <= len(specials):
        raise EmbtuneError(
            f"{folder}: no tokenizer vocabulary found (tokenizer.json, vocab.txt, ...); the model folder is "
            "incomplete: copy the tokenizer files from the original model"
        )


def _check_remote_code(folder: Path, trust_remote_code: bool) -> None:
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EmbtuneError(
            f"{config_path}: file is missing, so this is not a complete Hugging Face model folder; restore "
            "config.json from the original model"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EmbtuneError(f"{config_path}: not valid JSON ({exc}); restore the file from the original model") from None
    if not isinstance(config, dict):
        raise EmbtuneError(f"{config_path}: expected a JSON object; restore the file from the original model")
    tokenizer_config = folder / "tokenizer_config.json"
    if not trust_remote_code and tokenizer_config.is_file():
        try:
            custom = json.loads(tokenizer_config.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EmbtuneError(f"{tokenizer_config}: not valid JSON ({exc}); restore the file from the original model") from None
        if isinstance(custom, dict) and custom.get("auto_map"):
            raise EmbtuneError(
                f"{folder}: the tokenizer needs custom code from its folder (auto_map in tokenizer_config.json); "
                "pass trust_remote_code=True (CLI: --trust-remote-code) only if you trust its source"
            )
    if config.get("auto_map") and not trust_remote_code:
        raise EmbtuneError(
            f"{folder}: the model needs custom code from its folder (auto_map in config.json); "
            "pass trust_remote_code=True (CLI: --trust-remote-code) only if you trust its source"
        )


@contextlib.contextmanager
def _quiet_loading():
    """Hide transformers' "Loading weights" / "Writing model shards" progress bars (restored afterwards)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    if was_enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class Transformer(nn.Module):
    """A Hugging Face encoder and its fast tokenizer.

    Args:
        model: the loaded ``transformers`` model (its output's ``last_hidden_state`` is used).
        tokenizer: the matching tokenizer (a fast tokenizer gives the quick tokenization path).
        max_seq_length: longer inputs are truncated to this many tokens (special tokens included).
        do_lower_case: lowercase texts before tokenizing.
    """

    def __init__(self, model: nn.Module, tokenizer, max_seq_length: int | None = None, do_lower_case: bool = False):
        super().__init__()
        self.auto_model = model
        self.tokenizer = tokenizer
        limit = getattr(model.config, "max_position_embeddings", None)
        if max_seq_length is None:
            max_seq_length = tokenizer.model_max_length if tokenizer.model_max_length < 1_000_000 else limit
        if max_seq_length is None:
            max_seq_length = 512
        if limit and limit > 0 and max_seq_length > limit:
            max_seq_length = limit
        self.max_seq_length = int(max_seq_length)
        self.do_lower_case = bool(do_lower_case)
        self.model_input_names = list(getattr(tokenizer, "model_input_names", ["input_ids", "attention_mask"]))
        self._backend = None  # private copy of the Rust tokenizer, configured for truncation only
        self.source_folder: Path | None = None  # set by ``load``

    @property
    def hidden_size(self) -> int:
        return int(self.auto_model.config.hidden_size)

    @property
    def backend(self) -> str:
        """Either "fast" (embtune's FastEncoder) or "hf" (the Hugging Face modules)."""
        return "fast" if isinstance(self.auto_model, FastEncoder) else "hf"

    @property
    def architecture(self) -> str:
        """The Hugging Face class name of the encoder (the one a saved folder loads as), e.g. BertModel."""
        return self.auto_model.hf_class if isinstance(self.auto_model, FastEncoder) else type(self.auto_model).__name__

    def use_backend(self, backend: str = "auto") -> Transformer:
        """Switch the encoder to embtune's FastEncoder ("fast", or "auto" where supported) or keep Hugging Face's.

        "auto" uses the fast path for BERT, RoBERTa/XLM-RoBERTa, MPNet and DistilBERT and the Hugging Face
        modules for everything else; "fast" raises for other architectures; "hf" keeps (or restores) the
        Hugging Face modules. Weights are shared, not copied (except the fused query/key/value).
        """
        if backend not in BACKENDS:
            raise EmbtuneError(f"unknown backend {backend!r}; use one of: {', '.join(BACKENDS)}")
        if backend == "hf":
            if isinstance(self.auto_model, FastEncoder):
                self.auto_model = to_hf(self.auto_model)
            return self
        if isinstance(self.auto_model, FastEncoder):
            return self
        reason = unsupported_reason(self.auto_model)
        if reason is not None:
            if backend == "fast":
                raise EmbtuneError(f"backend 'fast' does not support this model ({reason}); use backend 'auto' or 'hf'")
            logger.info("using the Hugging Face modules: %s", reason)
            return self
        training = self.auto_model.training
        self.auto_model = from_hf(self.auto_model).train(training)
        return self

    @classmethod
    def load(
        cls,
        folder: Path,
        max_seq_length: int | None = None,
        do_lower_case: bool = False,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        dtype: torch.dtype | None = None,
        weights_cache: Path | None = None,
        backend: str = "auto",
    ) -> Transformer:
        """Load model and tokenizer from a local folder, safetensors only unless ``allow_pickle``.

        ``dtype``: the weights' dtype (None: what the folder's config says, else the weights' own); LoRA runs
        with a bf16 base load straight into bf16: with ``weights_cache`` (a folder) from a bf16 copy of the
        weights made there once (``models/low_precision.py``), so loading never holds the float32 file in memory.
        ``backend`` "auto"/"fast": a folder the fast path can read as it is loads straight into a FastEncoder
        (``fast_weights.load_fast``; no Hugging Face model is built); "hf", and every other folder, load
        through ``AutoModel.from_pretrained`` (``use_backend`` then converts where it can).
        """
        from transformers import AutoConfig, AutoTokenizer

        folder = Path(folder)
        check_weight_files(folder, allow_pickle)
        _check_weights_readable(folder)
        _check_remote_code(folder, trust_remote_code)
        try:
            with _quiet_loading(), quiet_transformers():
                config = AutoConfig.from_pretrained(folder, trust_remote_code=trust_remote_code)
                weights_folder = folder
                if dtype == torch.bfloat16 and weights_cache is not None:
                    from .low_precision import bf16_weights_folder

                    weights_folder = bf16_weights_folder(folder, weights_cache)
                model = load_fast(weights_folder, config, dtype) if backend != "hf" else None
                if model is None:
                    from transformers import AutoModel

                    model, info = AutoModel.from_pretrained(
                        weights_folder,
                        config=config,
                        trust_remote_code=trust_remote_code,
                        use_safetensors=None if allow_pickle else True,
                        output_loading_info=True,
                        ignore_mismatched_sizes=True,  # reported by check_loading_info, naming the keys
                        **({"dtype": dtype} if dtype is not None else {}),
                    )
                    check_loading_info(folder, info, config)
                tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
        except EmbtuneError:
            raise
        except OSError as exc:
            raise os_error(exc, folder, "model file") from None
        except Exception as exc:  # transformers raises many types for a broken folder
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EmbtuneError(
                f"{folder}: could not load the transformer ({first}); check that the folder holds a complete "
                "Hugging Face model (config.json, model.safetensors, tokenizer files)"
            ) from None
        _check_tokenizer(folder, tokenizer)
        loaded = cls(model.eval(), tokenizer, max_seq_length=max_seq_length, do_lower_case=do_lower_case)
        loaded.source_folder = folder  # where the weights came from (a bf16 LoRA base is restored from it)
        return loaded

    def save(self, folder: Path) -> None:
        """Write config.json, model.safetensors (Hugging Face weight names) and the tokenizer files into ``folder``."""
        with _quiet_loading():
            if isinstance(self.auto_model, FastEncoder):
                save_fast(self.auto_model, Path(folder))
            else:
                self.auto_model.save_pretrained(folder, safe_serialization=True)
            self.tokenizer.save_pretrained(folder)

    # --- tokenization ---------------------------------------------------------------------------------

    def _backend_tokenizer(self):
        if self._backend is None and getattr(self.tokenizer, "is_fast", False):
            from tokenizers import Tokenizer

            backend = Tokenizer.from_str(self.tokenizer.backend_tokenizer.to_str())
            backend.no_padding()
            backend.enable_truncation(self.max_seq_length, strategy="longest_first")
            self._backend = (backend, self.max_seq_length)
        if self._backend is not None and self._backend[1] != self.max_seq_length:
            self._backend[0].enable_truncation(self.max_seq_length, strategy="longest_first")
            self._backend = (self._backend[0], self.max_seq_length)
        return None if self._backend is None else self._backend[0]

    def preprocess(self, texts: list[str]) -> list[str]:
        texts = cap_texts(texts, self.max_seq_length)  # a 200 MB text must not reach the tokenizer whole
        return [t.lower() for t in texts] if self.do_lower_case else texts

    def token_ids(self, texts: list[str]) -> tuple[list[list[int]], list[list[int]] | None, int]:
        """Tokenize without padding: (input_ids per text, token_type_ids per text or None, number truncated)."""
        texts = self.preprocess(texts)
        want_types = "token_type_ids" in self.model_input_names
        backend = self._backend_tokenizer()
        if backend is not None:
            encodings = backend.encode_batch(texts, add_special_tokens=True)
            ids = [e.ids for e in encodings]
            types = [e.type_ids for e in encodings] if want_types else None
            truncated = sum(1 for e in encodings if e.overflowing)
            return ids, types, truncated
        out = self.tokenizer(
            texts, truncation="longest_first", max_length=self.max_seq_length, return_overflowing_tokens=False
        )
        full = self.tokenizer(texts, truncation=False)["input_ids"]
        truncated = sum(1 for f in full if len(f) > self.max_seq_length)
        return out["input_ids"], out.get("token_type_ids") if want_types else None, truncated

    def pad(self, ids: list[list[int]], types: list[list[int]] | None = None) -> dict[str, Tensor]:
        """Right-pad a list of token id lists into tensors (B, T): input_ids, attention_mask[, token_type_ids]."""
        width = max(len(x) for x in ids)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        token_types = np.zeros((len(ids), width), dtype=np.int64) if types is not None else None
        for row, seq in enumerate(ids):
            input_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
            if token_types is not None:
                token_types[row, : len(seq)] = types[row]
        features = {"input_ids": torch.from_numpy(input_ids), "attention_mask": torch.from_numpy(mask)}
        if token_types is not None:
            features["token_type_ids"] = torch.from_numpy(token_types)
        return features

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        """Tokenize and pad a batch of texts: the features ``forward`` takes."""
        ids, types, _ = self.token_ids(texts)
        return self.pad(ids, types)

    # --- forward --------------------------------------------------------------------------------------

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        """features with input_ids/attention_mask (B, T) -> token embeddings (B, T, D)."""
        if isinstance(self.auto_model, FastEncoder):
            return self.auto_model(features["input_ids"], features["attention_mask"], features.get("token_type_ids"))
        inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return self.auto_model(**inputs, return_dict=True).last_hidden_state
