"""EmbeddingModel: transformer -> pooling -> (dense) -> (normalize), with fast ``encode``.

>>> model = EmbeddingModel.load("bundled:all-MiniLM-L6-v2")          # doctest: +SKIP
>>> emb = model.encode(["A cat sits.", "A dog runs."])               # doctest: +SKIP
>>> model.similarity(emb, emb).shape                                 # doctest: +SKIP
torch.Size([2, 2])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .._version import __version__
from ..errors import EmbtuneError
from ..similarity import canonical_name, pairwise_fn, similarity_fn
from . import st_format
from .dense import Dense
from .encode import encode_texts
from .hub import resolve_model_folder
from .normalize import Normalize
from .pooling import Pooling
from .transformer import Transformer


class EmbeddingModel(nn.Module):
    """A sentence-embedding model: ``forward(features) -> (B, D)`` and ``encode(texts) -> (N, D)``.

    Args:
        transformer: the encoder and its tokenizer.
        steps: modules applied after the transformer, in order: a Pooling, then optional Dense and Normalize.
        prompts: named prompts, e.g. ``{"query": "query: ", "passage": "passage: "}`` (e5 models).
        default_prompt_name: prompt used by ``encode`` when none is given.
        similarity_fn_name: cosine | dot | euclidean | manhattan; used by ``similarity``.
    """

    def __init__(
        self,
        transformer: Transformer,
        steps: Sequence[nn.Module],
        prompts: dict[str, str] | None = None,
        default_prompt_name: str | None = None,
        similarity_fn_name: str = "cosine",
    ) -> None:
        super().__init__()
        if not steps or not isinstance(steps[0], Pooling):
            raise EmbtuneError("the module after the Transformer must be a Pooling module")
        self.transformer = transformer
        self.steps = nn.ModuleList(steps)
        self.prompts = dict(prompts or {})
        if default_prompt_name is not None and default_prompt_name not in self.prompts:
            raise EmbtuneError(
                f"default_prompt_name {default_prompt_name!r} is not one of the prompts {sorted(self.prompts)}; add it"
            )
        self.default_prompt_name = default_prompt_name
        self.similarity_fn_name = canonical_name(similarity_fn_name)
        self.source: str | None = None  # where the model was loaded from (for model cards)
        self.eval()  # inference mode until a trainer calls .train()

    # --- construction ---------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        name_or_path: str | os.PathLike,
        *,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
        backend: str = "auto",
        dtype: torch.dtype | None = None,
        weights_cache: str | os.PathLike | None = None,
    ) -> EmbeddingModel:
        """Load a sentence-transformers folder (classic or 5/6 layout), a plain HF folder, ``bundled:all-MiniLM-L6-v2``
        or a Hugging Face Hub id. Weights come from safetensors only unless ``allow_pickle=True``.

        ``backend``: "auto" (default) runs embtune's own encoder (models/fast_encoder.py) for BERT, RoBERTa /
        XLM-RoBERTa, MPNet and DistilBERT and the Hugging Face modules otherwise; "fast" requires the former;
        "hf" always uses the Hugging Face modules. Saved folders are identical either way."""
        folder, trusted_root = resolve_model_folder(name_or_path, revision, cache_dir, allow_pickle)
        transformer, steps, st_config = st_format.load_modules(folder, trusted_root, trust_remote_code, allow_pickle,
                                                               dtype, weights_cache, backend)
        transformer.use_backend(backend)
        if not steps or not isinstance(steps[0], Pooling):
            steps = [Pooling(transformer.hidden_size, "mean"), *steps]
        prompts = st_config.get("prompts") or {}
        if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
            raise EmbtuneError(f"{folder / 'config_sentence_transformers.json'}: 'prompts' must map names to strings")
        default = st_config.get("default_prompt_name")
        model = cls(
            transformer,
            steps,
            prompts=prompts,
            default_prompt_name=default if default in prompts else None,
            similarity_fn_name=st_config.get("similarity_fn_name") or "cosine",
        )
        model.source = str(name_or_path)
        if device is not None:
            model.to(device)
        return model

    @classmethod
    def from_transformer(
        cls,
        name_or_path: str | os.PathLike,
        *,
        pooling: str | list[str] = "mean",
        normalize: bool = False,
        dense_dim: int | None = None,
        max_seq_length: int | None = None,
        similarity_fn_name: str = "cosine",
        prompts: dict[str, str] | None = None,
        trust_remote_code: bool = False,
        allow_pickle: bool = False,
        backend: str = "auto",
        dtype: torch.dtype | None = None,
        weights_cache: str | os.PathLike | None = None,
    ) -> EmbeddingModel:
        """Compose a new model from a plain Hugging Face encoder with the chosen pooling / dense / normalize
        (``backend`` as in ``load``)."""
        folder, _root = resolve_model_folder(name_or_path, None, None, allow_pickle)
        transformer = Transformer.load(
            folder, max_seq_length, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, dtype=dtype,
            weights_cache=weights_cache, backend=backend,
        ).use_backend(backend)
        steps: list[nn.Module] = [Pooling(transformer.hidden_size, pooling)]
        if dense_dim is not None:
            steps.append(Dense(steps[0].output_dimension, dense_dim))
        if normalize:
            steps.append(Normalize())
        model = cls(transformer, steps, prompts=prompts, similarity_fn_name=similarity_fn_name)
        model.source = str(name_or_path)
        return model

    def save(self, path: str | os.PathLike, preserve: Sequence[str] = (), card: str | None = None) -> Path:
        """Write the model in the classic sentence-transformers layout, atomically.

        Args:
            path: target folder; an existing model there is replaced in one step.
            preserve: entries of an existing folder to keep (e.g. ``checkpoints`` of a training run).
            card: README.md text (model card) to write beside the model.
        """
        from ..utils.atomic import atomic_dir

        path = Path(path)
        if path.exists() and any(path.iterdir()) and not _looks_like_model(path):
            raise EmbtuneError(
                f"{path}: exists and is not a model folder; choose an empty or new folder (nothing was written)"
            )
        with atomic_dir(path, preserve=preserve) as tmp:
            self.write_folder(tmp)
            if card is not None:
                (tmp / "README.md").write_text(card, encoding="utf-8")
        return path

    def write_folder(self, folder: str | os.PathLike) -> None:
        """Write the model files into an existing empty folder, non-atomically (``save`` wraps this in an
        atomic swap; the trainer calls it inside its own atomic output folder)."""
        st_format.save_modules(Path(folder), self.transformer, list(self.steps), self._st_config())

    def _st_config(self) -> dict[str, Any]:
        import transformers

        return {
            "__version__": {
                "embtune": __version__,
                "transformers": transformers.__version__,
                "pytorch": torch.__version__,
            },
            "model_type": "SentenceTransformer",
            "prompts": self.prompts,
            "default_prompt_name": self.default_prompt_name,
            "similarity_fn_name": self.similarity_fn_name,
        }

    # --- properties -----------------------------------------------------------------------------------

    @property
    def tokenizer(self):
        return self.transformer.tokenizer

    @property
    def max_seq_length(self) -> int:
        return self.transformer.max_seq_length

    @max_seq_length.setter
    def max_seq_length(self, value: int) -> None:
        self.transformer.max_seq_length = int(value)

    @property
    def pooling(self) -> Pooling:
        return self.steps[0]

    @property
    def normalizes(self) -> bool:
        return any(isinstance(s, Normalize) for s in self.steps)

    @property
    def embedding_dim(self) -> int:
        dim = self.pooling.output_dimension
        for step in self.steps:
            if isinstance(step, Dense):
                dim = step.out_features
        return dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- compute --------------------------------------------------------------------------------------

    def forward(self, features: dict[str, Tensor], prompt_length: int = 0) -> Tensor:
        """Tokenized batch (input_ids, attention_mask[, token_type_ids], each (B, T)) -> embeddings (B, D)."""
        hidden = self.transformer(features)
        x = self.pooling(hidden, features["attention_mask"], prompt_length)
        for step in self.steps[1:]:
            x = step(x)
        return x

    def embed_roles(self, features: dict[str, dict[str, Tensor]]) -> dict[str, Tensor]:
        """Embed every role of a training batch: role -> features (B_role, T_role) -> role -> (B_role, D).

        On the fast backend all roles run as one forward (rows concatenated; the encoder drops the padding),
        which gives larger matmuls and half or a third of the operations; the Hugging Face backend embeds
        each role on its own, as padding to a common width would cost it real compute.
        """
        if len(features) < 2 or self.transformer.backend != "fast":
            return {role: self(feats) for role, feats in features.items()}
        width = max(f["input_ids"].shape[1] for f in features.values())
        keys = list(next(iter(features.values())))
        merged = {
            key: torch.cat([torch.nn.functional.pad(f[key], (0, width - f[key].shape[1])) for f in features.values()])
            for key in keys
        }  # padded ids are never read (the mask is 0 there), so 0 is as good as the pad id
        sizes = [f["input_ids"].shape[0] for f in features.values()]
        return dict(zip(features, self(merged).split(sizes), strict=True))

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        """Texts -> padded features for ``forward``, truncated at ``max_seq_length``."""
        return self.transformer.tokenize(texts)

    def resolve_prompt(self, prompt: str | None = None, prompt_name: str | None = None) -> str:
        """The prompt text ``encode`` prepends: an explicit prompt, a named one, or the default one."""
        if prompt is not None and prompt_name is not None:
            raise EmbtuneError("pass either prompt or prompt_name, not both")
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return ""
        if name not in self.prompts:
            raise EmbtuneError(f"unknown prompt_name {name!r}; this model has prompts: {sorted(self.prompts) or 'none'}")
        return self.prompts[name]

    def encode(
        self,
        texts: str | Sequence[str],
        batch_size: int | None = None,
        *,
        max_batch_tokens: int | None = None,
        normalize: bool = False,
        prompt: str | None = None,
        prompt_name: str | None = None,
        precision: str = "auto",
        quantize: str | None = None,
        truncate_dim: int | None = None,
        convert_to: str = "numpy",
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
    ) -> np.ndarray | Tensor:
        """Embed texts: (N,) -> (N, D) float32 (or int8/uint8 with ``quantize``).

        Args:
            texts: one text or a list of texts.
            batch_size: largest number of texts per forward pass (texts are sorted by length first); None:
                batches are cut by ``max_batch_tokens`` alone (at most 1,024 texts).
            max_batch_tokens: cap on rows x padded length per batch; None: 4,096 on CPU (larger batches
                fall out of the CPU caches: on the bundled model 4,096 tokens per forward encode short
                sentences 1.2x and 256-token texts 1.2x faster than 128 texts per forward), 65,536 elsewhere.
            normalize: L2-normalize the output (models with a Normalize module already are).
            prompt / prompt_name: text prepended to every input, or the name of one of ``self.prompts``.
            precision: "auto" (bf16 where the hardware is fast at it, else fp32), "bf16", "fp16", "fp32",
                or "int8" (CPU: Linear layers as int8 matmuls, quantized on the fly; no calibration data).
                The output is float32 in every case.
            quantize: None, "int8", "uint8", "binary" or "ubinary" (packed bits, as ST's quantize_embeddings).
            truncate_dim: keep the first k dimensions (Matryoshka models), before normalizing.
            convert_to: "numpy" or "torch".
            show_progress_bar: None shows it for inputs of more than 2,000 texts.
        """
        return encode_texts(
            self,
            texts,
            batch_size=batch_size,
            max_batch_tokens=max_batch_tokens,
            normalize=normalize,
            prompt=self.resolve_prompt(prompt, prompt_name),
            precision=precision,
            quantize=quantize,
            truncate_dim=truncate_dim,
            convert_to=convert_to,
            show_progress_bar=show_progress_bar,
            device=device,
        )

    def similarity(self, a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> Tensor:
        """(N, D), (M, D) -> (N, M) scores with the model's similarity function."""
        return similarity_fn(self.similarity_fn_name)(_as_tensor(a), _as_tensor(b))

    def similarity_pairwise(self, a: np.ndarray | Tensor, b: np.ndarray | Tensor) -> Tensor:
        """(N, D), (N, D) -> (N,) scores with the model's similarity function."""
        return pairwise_fn(self.similarity_fn_name)(_as_tensor(a), _as_tensor(b))

    def describe(self) -> dict[str, Any]:
        """What ``embtune info`` prints: architecture, sizes and settings."""
        return {
            "architecture": self.transformer.architecture,
            "backend": self.transformer.backend,
            "embedding_dim": self.embedding_dim,
            "max_seq_length": self.max_seq_length,
            "pooling": self.pooling.modes,
            "dense": [s.get_config() for s in self.steps if isinstance(s, Dense)],
            "normalize": self.normalizes,
            "similarity_fn_name": self.similarity_fn_name,
            "prompts": self.prompts,
            "default_prompt_name": self.default_prompt_name,
            "parameters": sum(p.numel() for p in self.parameters()),
        }

    def architecture_repr(self) -> str:
        """A sentence-transformers style one-module-per-line description, for model cards."""
        lines = [
            f"  (0): Transformer({{'max_seq_length': {self.max_seq_length}, 'do_lower_case': "
            f"{self.transformer.do_lower_case}}}) with Transformer model: {self.transformer.architecture} "
        ]
        for idx, step in enumerate(self.steps, start=1):
            if isinstance(step, Pooling | Dense):
                lines.append(f"  ({idx}): {type(step).__name__}({step.get_config()})")
            else:
                lines.append(f"  ({idx}): {type(step).__name__}()")
        return "SentenceTransformer(\n" + "\n".join(lines) + "\n)"


def _as_tensor(x: np.ndarray | Tensor) -> Tensor:
    t = torch.as_tensor(x)
    return t.float() if t.dtype != torch.float32 else t


def _looks_like_model(path: Path) -> bool:
    return (path / "modules.json").is_file() or (path / "config.json").is_file()
