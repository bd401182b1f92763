"""The inference path behind ``EmbeddingModel.encode``: tokenize once, sort by length, pad per batch.

Speed comes from (1) tokenizing every text in one Rust call, (2) batching texts of similar length so
padding is small, in batches of a token budget that fits the CPU caches, (3) bf16 on hardware with native
bf16 matmuls, through a bf16 copy of the model (made once, refreshed only when the fp32 weights change), so
no per-call weight casts are paid. ``precision="int8"``
runs a copy whose Linear layers are int8 matmuls (``models/int8.py``); pooling and normalization stay float.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import EmbtuneError
from ..utils.device import fast_bf16, resolve_precision, warn_slow_on_this_cpu
from ..utils.memory import reuse_freed_blocks
from ..utils.threads import adapt_threads
from .fast_encoder import FastEncoder

logger = logging.getLogger(__name__)

QUANTIZE = ("int8", "uint8", "binary", "ubinary")
CPU_BATCH_TOKENS = 4096  # default padded tokens per forward on CPU (see EmbeddingModel.encode)
MAX_BATCH_TEXTS = 1024  # texts per forward when no batch_size is given


def _check_texts(texts: str | Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    if isinstance(texts, np.ndarray):
        texts = texts.tolist()
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise EmbtuneError(f"input {i} is {type(t).__name__}, not a string; pass a list of strings")
    return texts


def _prompt_length(model, prompt: str) -> int:
    """Tokens of the prompt as it appears at the start of an input (its own trailing special token excluded)."""
    ids, _, _ = model.transformer.token_ids([prompt])
    return max(len(ids[0]) - 1, 0)


def _weights_fingerprint(module: nn.Module) -> tuple:
    """Changes whenever the weights change: identity, version counters, and a sample of every tensor (the
    first value of every row of a matrix, so each embedding row a row-wise update touches is seen; every
    61st value of a vector), all summed in float64.

    Version counters alone are not enough: fused optimizers (``AdamW(fused=True)``) and writes through
    ``.data`` update weights without bumping them, which would leave a stale low-precision copy in use.
    Computed before every encode call: the earlier strided sample of every 61st value read a cache line per
    value, ~4 ms of a 19 ms call of 16 texts; one value per row is ~3x cheaper.
    """
    with torch.no_grad():
        params = list(module.parameters())
        views = [p.detach()[:, 0] if p.dim() == 2 else p.detach().reshape(-1)[::61] for p in params]
        total = torch.cat(views).sum(dtype=torch.float64)  # one sum: per-tensor sums cost ~1.5 ms more a call
    return (tuple(id(p) for p in params), tuple(p._version for p in params), float(total))


class _LowPrecisionCache:
    """A copy of a module whose Linear weights are stored in a low-precision dtype.

    Run under autocast, its matmuls use native bf16 kernels (AMX on this kind of CPU) without casting the
    weights on every call. embtune's own encoder (``FastEncoder``) runs entirely in bf16 (embeddings, layer
    norms and the residual stream too; its matmuls, softmax and layer norms accumulate in float32 inside the
    kernels) and hands float32 token embeddings to pooling: on all-MiniLM-L6-v2 the worst cosine to fp32 is
    0.9999 on STS-B sentences and on 256-token Norwegian news texts (0.99997 with layer norms and residuals
    in float32, which was ~20 % slower). Hugging Face modules (the fallback) keep those
    in float32. The copy is rebuilt when the original's weights change (e.g. after an optimizer step).
    """

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.copy: nn.Module | None = None

    def get(self, module: nn.Module, dtype: torch.dtype | str) -> nn.Module:
        """The copy for ``dtype`` (a float dtype, or ``"int8"`` for int8 Linear layers)."""
        import copy

        key = (dtype, _weights_fingerprint(module), next(module.parameters()).device)
        if self.key != key or self.copy is None:
            self.copy = None  # free the old copy before building a new one
            module.__dict__.pop("_lowp_cache", None)  # do not deep-copy the cache into the copy
            replica = copy.deepcopy(module).eval()
            module.__dict__["_lowp_cache"] = self
            if dtype == "int8":
                from .int8 import float_linears, quantize_linears

                # attention projections in bf16 where it is native (min cosine to fp32 0.9908 -> 0.9903, +25 %)
                quantize_linears(replica, float_linears(), bf16=fast_bf16(key[2]))
            else:
                for sub in replica.modules():
                    if isinstance(sub, FastEncoder):  # all of it: layer norms and residuals too (see below)
                        sub.to(dtype)
                        sub.output_dtype = torch.float32
                    elif isinstance(sub, nn.Linear):
                        sub.to(dtype)
            for p in replica.parameters():
                p.requires_grad_(False)
            self.copy, self.key = replica, key
        return self.copy


def _runner(model, dtype: torch.dtype | str) -> tuple[nn.Module, contextlib.AbstractContextManager]:
    """The module to call and the context to call it in, for a compute dtype (or ``"int8"``)."""
    if dtype == torch.float32:
        return model, contextlib.nullcontext()
    cache = model.__dict__.setdefault("_lowp_cache", _LowPrecisionCache())
    if dtype == "int8":  # float parts in fp32: with bf16 attention the worst STS-B cosine drops 0.991 -> 0.989
        return cache.get(model, dtype), contextlib.nullcontext()
    return cache.get(model, dtype), torch.autocast(device_type=model.device.type, dtype=dtype)


def _compute_dtype(precision: str, device: torch.device) -> torch.dtype | str:
    """The compute dtype for ``precision`` on ``device``; ``"int8"`` (CPU only) for int8 Linear layers."""
    if precision != "int8":
        return resolve_precision(precision, device)
    if device.type != "cpu":
        raise EmbtuneError(f"precision='int8' runs on CPU only; the model is on {device}; use bf16 or fp16 there")
    from .int8 import HAS_INT8_DOT

    if not HAS_INT8_DOT:
        warn_slow_on_this_cpu("int8")
    return "int8"


def _check_options(batch_size, max_batch_tokens, convert_to, quantize, truncate_dim, dim: int) -> None:
    for name, value in (("batch_size", batch_size), ("max_batch_tokens", max_batch_tokens)):
        if value is not None and value < 1:
            raise EmbtuneError(f"{name} must be at least 1, got {value}")
    if convert_to not in ("numpy", "torch"):
        raise EmbtuneError(f"convert_to must be 'numpy' or 'torch', got {convert_to!r}")
    if quantize is not None and quantize not in QUANTIZE:
        raise EmbtuneError(f"unknown quantize {quantize!r}; use one of: {', '.join(QUANTIZE)}")
    if truncate_dim is not None and not 0 < truncate_dim <= dim:
        raise EmbtuneError(f"truncate_dim must be between 1 and {dim}, got {truncate_dim}")


def encode_texts(
    model,
    texts: str | Sequence[str],
    *,
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    normalize: bool = False,
    prompt: str = "",
    precision: str = "auto",
    quantize: str | None = None,
    truncate_dim: int | None = None,
    convert_to: str = "numpy",
    show_progress_bar: bool | None = None,
    device: str | torch.device | None = None,
) -> np.ndarray | Tensor:
    """See ``EmbeddingModel.encode``."""
    single = isinstance(texts, str)
    items = _check_texts(texts)
    dim = model.embedding_dim
    _check_options(batch_size, max_batch_tokens, convert_to, quantize, truncate_dim, dim)
    if device is not None and torch.device(device) != model.device:
        model.to(device)
    dtype = _compute_dtype(precision, model.device)
    out = torch.empty((len(items), dim), dtype=torch.float32)
    if items:
        inputs = [prompt + t for t in items] if prompt else items
        prompt_len = _prompt_length(model, prompt) if prompt and not model.pooling.include_prompt else 0
        ids, types, truncated = model.transformer.token_ids(inputs)
        if truncated:
            logger.warning(
                "%d of %d texts were longer than max_seq_length=%d tokens and were truncated",
                truncated, len(items), model.max_seq_length,
            )
        _encode_into(out, model, ids, types, dtype, batch_size, max_batch_tokens, prompt_len, show_progress_bar)

    if truncate_dim is not None:
        out = out[:, :truncate_dim]
    if normalize:
        out = torch.nn.functional.normalize(out, p=2, dim=-1)
    result: np.ndarray | Tensor = out
    if quantize is not None:
        result = torch.from_numpy(quantize_embeddings(out.numpy(), quantize))
    if convert_to == "numpy":
        result = result.numpy()
    return result[0] if single else result


def encode_token_ids(
    model,
    ids: list[list[int]],
    types: list[list[int]] | None = None,
    *,
    precision: str = "auto",
    batch_size: int | None = None,
    max_batch_tokens: int | None = None,
    prompt_length: int | Sequence[int] = 0,
) -> np.ndarray:
    """Embed texts that are already tokenized (``model.transformer.token_ids``: truncated, special tokens
    added): (N,) id lists -> (N, D) float32, the rows ``encode`` gives for the same texts. ``embtune serve``
    tokenizes each request once in its HTTP process (for limits and ``usage``) and hands the ids to the
    encoder process, so the encoder spends no time on tokenizing.

    ``prompt_length``: tokens of a prompt at the start of every text, or one count per text, which a pooling
    with ``include_prompt: false`` leaves out (``encode`` computes it from its ``prompt``)."""
    if isinstance(prompt_length, (int, np.integer)):
        prompt_length = int(prompt_length)
    else:
        prompt_length = np.asarray(prompt_length, dtype=np.int64)
        if prompt_length.shape != (len(ids),):
            raise EmbtuneError(f"prompt_length has {prompt_length.size} values for {len(ids)} texts; pass one per text")
    _check_options(batch_size, max_batch_tokens, "numpy", None, None, model.embedding_dim)
    out = torch.empty((len(ids), model.embedding_dim), dtype=torch.float32)
    if ids:
        _encode_into(out, model, ids, types, _compute_dtype(precision, model.device), batch_size, max_batch_tokens,
                     prompt_length, False)
    return out.numpy()


def _encode_into(out: Tensor, model, ids, types, dtype, batch_size, max_batch_tokens, prompt_len: int | np.ndarray,
                 show_progress_bar: bool | None) -> None:
    """Fill ``out`` (N, D) with the embeddings of N tokenized texts: sorted by length, cut into batches.
    ``prompt_len``: one prompt length for all texts, or an (N,) array of them."""
    reuse_freed_blocks()  # batches reuse the last one's freed blocks instead of page-faulting in fresh ones
    run_device = model.device
    if max_batch_tokens is None:
        max_batch_tokens = CPU_BATCH_TOKENS if run_device.type == "cpu" else 65536
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(-lengths, kind="stable")
    was_training = model.training
    # the bf16 / int8 copies are always in eval mode; the model itself is switched only when it runs (fp32)
    # and is training: walking its modules twice per call cost ~1 ms of a 16-text call
    switch = was_training or (dtype == torch.float32 and any(m.training for m in model.modules()))
    if switch:
        model.eval()
    try:
        runner, ctx = _runner(model, dtype)
        progress = _progress(len(ids), show_progress_bar)
        with torch.inference_mode(), ctx:
            for idx in _batches(order, lengths, batch_size or MAX_BATCH_TEXTS, max_batch_tokens):
                adapt_threads()  # fewer torch threads while another process keeps the CPU busy (utils/threads.py)
                feats = model.transformer.pad([ids[i] for i in idx], [types[i] for i in idx] if types else None)
                feats = {k: v.to(run_device, non_blocking=True) for k, v in feats.items()}
                emb = runner(feats, prompt_len if isinstance(prompt_len, int) else torch.from_numpy(prompt_len[idx]))
                out[torch.from_numpy(idx)] = emb.float().cpu()
                if progress is not None:
                    progress.update(len(idx))
        if progress is not None:
            progress.close()
    finally:
        if switch:
            model.train(was_training)


def _batches(order: np.ndarray, lengths: np.ndarray, batch_size: int, max_tokens: int):
    """Cut length-sorted rows into batches of at most ``batch_size`` rows and ``max_tokens`` padded tokens."""
    start, n = 0, len(order)
    while start < n:
        longest = int(lengths[order[start]])  # rows are sorted longest first
        size = max(1, min(batch_size, max_tokens // max(longest, 1)))
        yield order[start : start + size]
        start += size


def _progress(total: int, show: bool | None):
    if show is False or (show is None and total <= 2000):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="encode", unit="text")


def quantize_embeddings(emb: np.ndarray, kind: str, ranges: np.ndarray | None = None) -> np.ndarray:
    """Quantize float embeddings (N, D).

    int8/uint8: each dimension's [min, max] (over ``emb`` or the given ``ranges`` of shape (2, D)) is mapped
    onto 256 evenly spaced levels (nearest level; min -> level 0, max -> level 255); values outside the range
    are clipped. binary/ubinary: one bit per dimension (x > 0),
    packed 8 per byte; ``binary`` is offset by -128 into int8.
    """
    if kind in ("binary", "ubinary"):
        packed = np.packbits(emb > 0, axis=-1)
        return (packed.astype(np.int16) - 128).astype(np.int8) if kind == "binary" else packed
    if ranges is None:
        ranges = np.stack([emb.min(axis=0), emb.max(axis=0)])
    low = ranges[0]
    steps = np.maximum((ranges[1] - ranges[0]) / 255.0, np.finfo(np.float32).tiny)
    buckets = np.clip(np.rint((emb - low) / steps), 0, 255)
    return (buckets - 128).astype(np.int8) if kind == "int8" else buckets.astype(np.uint8)
