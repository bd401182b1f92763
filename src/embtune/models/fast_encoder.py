"""FastEncoder: embtune's own encoder for BERT, RoBERTa / XLM-RoBERTa, MPNet and DistilBERT.

The same math as the Hugging Face modules (post-layer-norm Transformer encoders), computed differently:

- every token-wise layer (projections, FFN, layer norms, residuals) runs on the unpadded matrix of real tokens
  (N, H) instead of (B, T, H), so padding costs nothing there;
- attention runs per sequence: sequences of up to ``PACK_MAX`` tokens share packed rows of ``PACK_WIDTH``
  slots with a block-diagonal mask (``_packed_group``; in inference, when a whole batch is packed, the packed
  rows are the token matrix of every layer), longer ones run in up to three groups of similar length
  (``length_groups``): each group's fused q/k/v rows are gathered into a (rows, heads, width, d) grid, so a
  batch of short texts with one long one does not pay (T x T) scores for all; ``scaled_dot_product_attention``
  masks in inference, and training uses explicit scores with embtune's cheap dropout masks (``dropout.py``);
  with the C kernels (``fused.py``) the groups are skipped: attention runs inside each sequence on the token
  rows in place, in bf16 inference on AVX512-BF16 CPUs (``fused.sequence_attention``) and in training, dropout
  and backward included, and float32 inference (``fused.sequence_attention_train``), for sequences of up to
  256 tokens;
- q, k and v come from one fused Linear (``qkv``), so each layer runs 4 matmuls instead of 6; in bf16
  inference on CPU the other three run as oneDNN matmuls with the bias, residual add or activation fused;
- the model's callers can concatenate all roles of a training batch into one forward
  (``EmbeddingModel.embed_roles``), which makes the matmuls larger and halves the number of operations.

Module names (stable; peft LoRA and int8 quantization target them): ``embeddings.word_embeddings``,
``embeddings.position_embeddings``, ``embeddings.token_type_embeddings`` (BERT/RoBERTa), ``embeddings.LayerNorm``,
``layers.{i}.qkv`` (fused query/key/value, rows in that order), ``layers.{i}.attn_out``, ``layers.{i}.attn_norm``,
``layers.{i}.ffn_in``, ``layers.{i}.ffn_out``, ``layers.{i}.ffn_norm`` and, for MPNet,
``relative_attention_bias``. All are plain ``nn.Embedding`` / ``nn.Linear`` / ``nn.LayerNorm``.
``fast_weights.py`` maps them to and from the Hugging Face weight names.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from . import fused
from .dropout import Dropout, dropout

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}

# The same activations as oneDNN matmul epilogues (attr, algorithm) for ``torch.ops.mkldnn._linear_pointwise``
ONEDNN_ACTIVATIONS = {"gelu": ("gelu", "none"), "gelu_new": ("gelu", "tanh"), "gelu_pytorch_tanh": ("gelu", "tanh"),
                      "relu": ("relu", "")}


def _onednn_bf16() -> bool:
    """Whether oneDNN's bf16 matmul op exists in this torch build and runs on this CPU: it needs AVX-512 or
    newer (on an AVX2-only CPU every call raises "could not create a primitive descriptor")."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")):
        return False
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if supported is not None and not supported():
        return False
    try:  # the op itself is the final word (one 8 x 8 product, once per process)
        x = torch.ones(8, 8, dtype=torch.bfloat16)
        torch.ops.mkldnn._linear_pointwise(x, x, None, "none", [], "")
    except RuntimeError:
        return False
    return True


_HAS_ONEDNN = _onednn_bf16()


@dataclass(frozen=True)
class EncoderSpec:
    """Shape and behaviour of one encoder, read from a Hugging Face config by ``fast_weights.spec_from_config``.

    Args:
        kind: "bert" (also RoBERTa / XLM-RoBERTa), "mpnet" or "distilbert": which blocks and weight names.
        position_offset: None: positions are 0..T-1 (BERT, DistilBERT); an int p: real tokens get positions
            p+1, p+2, ... (RoBERTa / XLM-R / MPNet, p = the padding index), as Hugging Face derives them.
        attn_out_dropout: dropout after the attention output projection (all but DistilBERT).
        relative_buckets: MPNet's relative-position buckets (0: none).
    """

    kind: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    activation: str
    hidden_dropout: float
    attention_dropout: float
    padding_idx: int | None
    position_offset: int | None = None
    attn_out_dropout: bool = True
    relative_buckets: int = 0
    relative_max_distance: int = 128


class Embeddings(nn.Module):
    """Token ids of the real tokens (N,) -> (N, H): word + position (+ token type), layer norm, dropout."""

    def __init__(self, spec: EncoderSpec, init: bool = True) -> None:
        super().__init__()
        h = spec.hidden_size

        def table(rows: int, padding_idx: int | None = None) -> nn.Embedding:
            # init=False: weights left as allocated (they are replaced on loading); on the meta device this
            # also skips normal_, whose meta kernel imports torch._dynamo (~1.7 s)
            weight = None if init else torch.empty(rows, h)
            return nn.Embedding(rows, h, padding_idx=padding_idx, _weight=weight)

        self.word_embeddings = table(spec.vocab_size, spec.padding_idx)
        self.position_embeddings = table(spec.max_positions)
        if spec.type_vocab_size > 0:
            self.token_type_embeddings = table(spec.type_vocab_size)
        self.LayerNorm = nn.LayerNorm(spec.hidden_size, eps=spec.layer_norm_eps)
        self.dropout = Dropout(spec.hidden_dropout)

    def forward(self, ids: Tensor, positions: Tensor, types: Tensor | None) -> Tensor:
        x = self.word_embeddings(ids) + self.position_embeddings(positions)
        if hasattr(self, "token_type_embeddings"):
            # all-zero types (single-text inputs) are one broadcast row, not a gather per token
            x = x + (self.token_type_embeddings.weight[0] if types is None else self.token_type_embeddings(types))
        return self.dropout(self.LayerNorm(x))


class EncoderLayer(nn.Module):
    """One post-layer-norm block on unpadded tokens: fused-QKV attention, then the feed-forward network."""

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        h = spec.hidden_size
        self.num_heads = spec.num_heads
        self.head_dim = h // spec.num_heads
        self.attention_dropout = spec.attention_dropout
        self.qkv = nn.Linear(h, 3 * h)
        self.attn_out = nn.Linear(h, h)
        self.attn_norm = nn.LayerNorm(h, eps=spec.layer_norm_eps)
        self.ffn_in = nn.Linear(h, spec.intermediate_size)
        self.ffn_out = nn.Linear(spec.intermediate_size, h)
        self.ffn_norm = nn.LayerNorm(h, eps=spec.layer_norm_eps)
        self.attn_dropout = Dropout(spec.hidden_dropout if spec.attn_out_dropout else 0.0)
        self.ffn_dropout = Dropout(spec.hidden_dropout)
        self.act = ACTIVATIONS[spec.activation]
        self.fused_act = ONEDNN_ACTIVATIONS.get(spec.activation)

    def forward(self, x: Tensor, layout: _Layout, bias: Tensor | None) -> Tensor:
        """(N, H) real tokens -> (N, H)."""
        if type(self.ffn_in).__name__ == "Int8Linear":  # encode's int8 copy (int8.py)
            from . import int8

            if int8.fuses_layer(self, x):
                return int8.layer_forward(self, x, layout, bias)
        if self._fused(x):
            qkv = torch.ops.mkldnn._linear_pointwise(x, self.qkv.weight, self.qkv.bias, "none", [], "")
            return self._fused_rest(self._attention(qkv, layout, bias), x)
        if self._folds_qkv_bias(x, bias):  # the fused attention adds the bias while it splits the heads
            context = self._attention(F.linear(x, self.qkv.weight), layout, bias, qkv_bias=self.qkv.bias)
        else:
            context = self._attention(self.qkv(x), layout, bias)
        if torch.is_grad_enabled() and self._trains_fused(x):
            return self._fused_training_rest(context, x)
        x = self.attn_norm(self.attn_dropout(self.attn_out(context)) + x)
        return self.ffn_norm(self.ffn_dropout(self.ffn_out(self.act(self.ffn_in(x)))) + x)

    def _folds_qkv_bias(self, x: Tensor, bias: Tensor | None) -> bool:
        """Whether training attention runs on ``fused.py``'s kernels for every group (dropout, no position bias)
        with a plain Linear qkv whose float32 bias ``split_heads`` can add (its matmul then runs without one:
        addmm copies the bias into every output row first, and its backward sums the bias gradient again)."""
        return (self.training and 0.0 < self.attention_dropout < 1.0 and bias is None and torch.is_grad_enabled()
                and type(self.qkv) is nn.Linear and fused.can_split_heads(x)
                and fused.is_float_vector(self.qkv.bias, self.qkv.out_features))

    def _trains_fused(self, x: Tensor) -> bool:
        """Whether the rest of a training forward can run on ``fused.py``'s kernels: plain Linear layers with
        float32 biases (not int8 or adapter-wrapped ones), layer norms, a float32 residual stream on CPU."""
        return (all(type(m) is nn.Linear for m in (self.attn_out, self.ffn_out))
                and fused.can_fuse_residual_norm(x, x, self.attn_norm, self.attn_dropout.p, self.attn_out.bias)
                and fused.can_fuse_residual_norm(x, x, self.ffn_norm, self.ffn_dropout.p, self.ffn_out.bias))

    def _fused_training_rest(self, context: Tensor, x: Tensor) -> Tensor:
        """attn_out and ffn_out as matmuls without bias, then bias + dropout + residual + norm in one fused pass
        each (``F.linear``'s addmm copies the bias into every output row first, and its backward sums the bias
        gradient over rows in another pass; the fused backward sums it while it computes the rest)."""
        drop = self.attn_dropout
        x = fused.residual_norm(F.linear(context, self.attn_out.weight), x, self.attn_norm, drop.p, drop.training,
                                bias=self.attn_out.bias)
        drop = self.ffn_dropout
        return fused.residual_norm(F.linear(self.act(self.ffn_in(x)), self.ffn_out.weight), x, self.ffn_norm, drop.p,
                                   drop.training, bias=self.ffn_out.bias)

    def _fused(self, x: Tensor) -> bool:
        """Whether this forward can run as oneDNN matmuls with fused epilogues: bf16 inference on CPU with
        plain Linear layers (not int8 or adapter-wrapped ones) and an activation oneDNN has."""
        return (not torch.is_grad_enabled() and x.device.type == "cpu" and x.dtype == torch.bfloat16
                and self.fused_act is not None and _HAS_ONEDNN
                and all(type(m) is nn.Linear and m.weight.dtype == torch.bfloat16
                        for m in (self.qkv, self.attn_out, self.ffn_in, self.ffn_out)))

    def _fused_rest(self, context: Tensor, x: Tensor) -> Tensor:
        """attn_out + residual, activation(ffn_in), ffn_out + residual: each one oneDNN matmul whose epilogue
        adds the bias and the residual or applies the activation in float32 before rounding to bf16, instead
        of a matmul and separate passes over (tokens x 4H) bf16 tensors. ~40 % less time per layer in encode.
        (The fused qkv runs the same way with its bias in the epilogue: ``F.linear``'s addmm first copies the
        bias into every row of its (tokens x 3H) output, 3 % of encode.)"""
        ops = torch.ops.mkldnn
        x = self.attn_norm(ops._linear_pointwise.binary(context, x, self.attn_out.weight, self.attn_out.bias, "add"))
        attr, algorithm = self.fused_act
        h = ops._linear_pointwise(x, self.ffn_in.weight, self.ffn_in.bias, attr, [], algorithm)
        return self.ffn_norm(ops._linear_pointwise.binary(h, x, self.ffn_out.weight, self.ffn_out.bias, "add"))

    def _fused_training_attention(self, rows: Tensor, group: _Group, p: float, qkv_bias: Tensor | None) -> Tensor:
        """Attention with dropout for one group on ``fused.py``'s kernels: the group's q, k, v heads come out of
        its (tokens, 3H) rows in one pass (no gather, no copies to make them contiguous), scale + key mask +
        softmax + dropout is one pass, and the heads go back into token rows in one pass; backward likewise."""
        n, t, heads = group.rows, group.width, self.num_heads
        q, k, v = fused.split_heads(rows, group.grid_index, group.real_index, n, t, heads, bias=qkv_bias)
        scores = torch.bmm(q, k.transpose(1, 2)).view(n, heads, t, t)
        probs = fused.softmax_dropout(scores, group.key_bias(scores.dtype), 1.0 / math.sqrt(self.head_dim), p,
                                      self.training)
        out = torch.bmm(probs.view(n * heads, t, t).to(v.dtype), v)
        return fused.merge_heads(out, group.grid_index, group.real_index, rows.shape[0], t, heads)

    @staticmethod
    def _group_rows(qkv: Tensor, layout: _Layout) -> list[Tensor]:
        """Each group's rows of the (N, 3H) matrix. One ``split`` (its backward is one concatenation) instead of a
        slice per group: the backward of each slice fills a zero (N, 3H) gradient and autograd adds them up."""
        groups = layout.groups
        if len(groups) == 1 and groups[0].start == 0 and groups[0].end == qkv.shape[0]:
            return [qkv]
        sizes = [g.end - g.start for g in groups]
        rest = qkv.shape[0] - groups[-1].end
        contiguous = groups[0].start == 0 and all(a.end == b.start for a, b in itertools.pairwise(groups))
        if not contiguous or rest < 0:
            return [qkv[g.start:g.end] for g in groups]
        return list(qkv.split(sizes + [rest] if rest else sizes))[:len(groups)]

    def _attention(self, qkv: Tensor, layout: _Layout, bias: Tensor | None, qkv_bias: Tensor | None = None) -> Tensor:
        """(N, 3H) -> (N, H): scaled dot-product attention inside each sequence, padded keys masked. ``qkv_bias``:
        the qkv projection's bias when ``qkv`` was computed without it (``_folds_qkv_bias``).

        The layout cuts the batch into groups of sequences of similar length, so the (T x T) score matrices
        of short texts are not padded to the longest text of the batch. Without dropout or a position bias,
        ``scaled_dot_product_attention`` (a fused kernel on CPU); in training, explicit scores -> softmax ->
        dropout (embtune's cheap masks) -> values: torch's fused CPU kernel has no dropout, and its unfused
        fallback draws ``bernoulli_`` masks and rebuilds the key mask in every layer. Under bf16 autocast the
        softmax runs on the bf16 scores (float32 inside the kernel, bf16 out) instead of autocast's float32 copy:
        the probabilities are rounded to bf16 for the value matmul either way, and dropout and the softmax
        backward then work on half the bytes.
        """
        p = self.attention_dropout if self.training else 0.0
        if layout.segments is not None and bias is None and p < 1.0:
            scale = 1.0 / math.sqrt(self.head_dim)
            if torch.is_grad_enabled() and qkv.dtype in (torch.float32, torch.bfloat16):
                return fused.sequence_attention_train(qkv, layout.segments, self.num_heads, scale, p, self.training,
                                                      bias=qkv_bias)
            if p == 0.0 and qkv_bias is None and qkv.dtype == torch.bfloat16 and not torch.is_grad_enabled():
                return fused.sequence_attention(qkv, layout.segments, self.num_heads, scale)
            if p == 0.0 and qkv.dtype == torch.float32 and not torch.is_grad_enabled():
                return fused.sequence_attention_train(qkv, layout.segments, self.num_heads, scale, 0.0, False,
                                                      bias=qkv_bias, keep_probs=False)
        outs = []
        for group, rows in zip(layout.groups, self._group_rows(qkv, layout), strict=True):
            n, t = group.rows, group.width
            if bias is None and 0.0 < p < 1.0 and fused.can_split_heads(rows, group.grid_index, group.real_index):
                outs.append(self._fused_training_attention(rows, group, p, qkv_bias))
                continue
            if qkv_bias is not None:
                rows = rows + qkv_bias
            grid = group.to_grid(rows).view(n, t, 3, self.num_heads, self.head_dim)
            q, k, v = grid.permute(2, 0, 3, 1, 4).unbind(0)  # each (n, heads, t, d)
            if bias is None and p == 0.0:
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=group.key_mask)
            else:  # MPNet's relative position bias gets its gradient through the explicit sum
                scores = torch.matmul(q * (1.0 / math.sqrt(self.head_dim)), k.transpose(-1, -2))
                add = group.key_bias(scores.dtype)
                if bias is not None:
                    rel = bias[:, :, :t, :t].to(scores.dtype)
                    add = rel if add is None else rel + add
                if add is not None:
                    scores = scores + add
                with torch.autocast(scores.device.type, enabled=False):  # bf16 scores: bf16 probabilities
                    probs = torch.softmax(scores, -1)
                out = torch.matmul(dropout(probs, p, self.training).to(v.dtype), v)
            outs.append(group.from_grid(out.transpose(1, 2).reshape(n * t, -1)))
        if layout.spare:  # the token matrix's spare rows (see FastEncoder.forward): not attended, never read
            outs.append(outs[0].new_zeros(layout.spare, outs[0].shape[1]))
        return outs[0] if len(outs) == 1 else torch.cat(outs)


@dataclass
class _Group:
    """Sequences ``start:end`` of the token matrix (in the layout's order), laid out as a (rows, width) grid."""

    start: int
    end: int
    rows: int
    width: int
    grid_index: Tensor | None  # (rows * width,) token of each grid cell (pads repeat a real token); None: dense
    real_index: Tensor | None  # (end - start,) grid cells that hold real tokens; None: dense
    key_mask: Tensor | None  # True where a query may see a key: (rows, 1, 1, width), packed (rows, 1, width, width)
    packed: bool = False  # rows of several sequences with a block-diagonal key mask (_packed_group)
    _bias: dict = field(default_factory=dict)  # dtype -> additive key mask

    def to_grid(self, x: Tensor) -> Tensor:
        """(tokens, C) -> (rows * width, C). Pad cells copy a real token of their row: finite values that
        attention masks out (as keys, their softmax weight is exactly 0; as queries, their output is dropped),
        so they get exactly zero gradient; the backward therefore reads each token's gradient at its real cell
        (``_GatherRows``) instead of scattering every cell back into zeros."""
        if self.grid_index is None:
            return x
        if x.requires_grad and torch.is_grad_enabled():
            return _GatherRows.apply(x, self.grid_index, self.real_index)
        return x.index_select(0, self.grid_index)

    def from_grid(self, x: Tensor) -> Tensor:
        """(rows * width, C) -> (tokens, C)."""
        return x if self.real_index is None else x.index_select(0, self.real_index)

    def key_bias(self, dtype: torch.dtype) -> Tensor | None:
        """The key mask as an additive mask: 0 where allowed, the dtype's lowest value elsewhere (cached)."""
        if self.key_mask is None:
            return None
        if dtype not in self._bias:
            zeros = torch.zeros(self.key_mask.shape, dtype=dtype, device=self.key_mask.device)
            self._bias[dtype] = zeros.masked_fill_(~self.key_mask, torch.finfo(dtype).min)
        return self._bias[dtype]


class _GatherRows(torch.autograd.Function):
    """``x.index_select(0, index)`` whose backward is ``grad.index_select(0, back)``: exact when row i of x is
    copied to output row ``back[i]`` (among others) and every other output row gets a zero gradient, as the
    grid cells of ``_Group.to_grid`` do. Saves the (cells x C) zero fill and the scatter-add of the default
    backward."""

    @staticmethod
    def forward(ctx, x: Tensor, index: Tensor, back: Tensor) -> Tensor:
        ctx.save_for_backward(back)
        return x.index_select(0, index)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (back,) = ctx.saved_tensors
        return grad.index_select(0, back), None, None


# Attention work of a group ~ rows * width^2; each extra group costs about this many units in per-operation
# overhead (measured on the bundled model, 2 CPU threads: ~0.3 ms of forward+backward per layer and group).
GROUP_OVERHEAD = 4096
MAX_GROUPS = 3


def length_groups(lengths: list[int], overhead: int | None = None, max_groups: int = MAX_GROUPS) -> list[int]:
    """Split points of ascending ``lengths`` into at most ``max_groups`` (1-3) groups minimising
    sum(rows * width^2) + overhead per group, where a group's width is its longest length.

    >>> length_groups([5] * 20 + [60] * 2)
    [20]
    >>> length_groups([5, 5, 6, 6, 30, 31])  # the saving does not pay for the extra operations
    []
    >>> length_groups([10] * 8)
    []
    """
    overhead = GROUP_OVERHEAD if overhead is None else overhead
    widths, counts = np.unique(np.asarray(lengths, dtype=np.int64), return_counts=True)
    below = np.cumsum(counts)  # rows with length <= widths[k]
    n, top = int(below[-1]), int(widths[-1]) ** 2
    square = widths.astype(np.int64) ** 2
    best, cuts = n * top + overhead, []
    if max_groups >= 2 and len(widths) > 1:
        two = below[:-1] * square[:-1] + (n - below[:-1]) * top + 2 * overhead  # cut after width a
        a = int(np.argmin(two))
        if two[a] < best:
            best, cuts = int(two[a]), [int(below[a])]
    if max_groups >= 3 and len(widths) > 2:
        a, b = np.triu_indices(len(widths) - 1, k=1)  # cut after width a and after width b > a
        three = below[a] * square[a] + (below[b] - below[a]) * square[b] + (n - below[b]) * top + 3 * overhead
        k = int(np.argmin(three))
        if three[k] < best:
            cuts = [int(below[a[k]]), int(below[b[k]])]
    return cuts


# Attention of short sequences runs in packed rows: consecutive sequences of at most PACK_MAX tokens share rows
# of PACK_WIDTH token slots, with a block-diagonal mask (a token attends to its own sequence only). The CPU
# attention kernels pay mostly per (row, head) block: 128 texts of ~12 tokens cost 1536 tiny blocks in a grid,
# ~280 in rows of 64 (3-4x faster on the bundled model, although the masked-out scores are computed).
PACK_WIDTH = 64
PACK_MAX = 32


PATTERN_LENGTHS = 16  # at most this many distinct lengths: rows filled by patterns (``_pack_rows``)


def _pack_rows(lengths: list[int], width: int) -> tuple[list[int], list[int], int]:
    """Sequences into rows of ``width`` slots with few empty ones: (row of each sequence, its first slot, rows).

    Lengths are small integers and a batch holds only a few distinct ones, so rows are filled by patterns:
    the multiset of the remaining lengths that fills one row best (a knapsack over at most ``width`` sums),
    used for as many rows as the counts allow, then the next best for what is left. Filling rows in length
    order instead left 9 % of the slots empty on STS-B batches (16 % where lengths 12 and 13 meet: five 12s
    or four 13s per 64 slots, where 13+13+13+13+12 fills a row), and in inference every empty slot runs
    through every token-wise layer. Batches of many distinct lengths (training batches are not length-sorted)
    are filled in order instead: the pattern search would cost ~20 ms there.
    """
    by_length: dict[int, list[int]] = {}
    for i, length in enumerate(lengths):
        by_length.setdefault(length, []).append(i)
    rows_of, offsets = [0] * len(lengths), [0] * len(lengths)
    rows = 0
    if len(by_length) > PATTERN_LENGTHS:
        fill = width
        for i, length in enumerate(lengths):
            if fill + length > width:
                rows, fill = rows + 1, 0
            rows_of[i], offsets[i] = rows - 1, fill
            fill += length
        return rows_of, offsets, rows
    while by_length:
        pattern = _best_row(sorted((length, len(ids)) for length, ids in by_length.items()), width)
        times = min(len(by_length[length]) // count for length, count in pattern)
        for _ in range(times):
            fill = 0
            for length, count in pattern:
                for _ in range(count):
                    i = by_length[length].pop()
                    rows_of[i], offsets[i] = rows, fill
                    fill += length
            rows += 1
        by_length = {length: ids for length, ids in by_length.items() if ids}
    return rows_of, offsets, rows


def _best_row(available: list[tuple[int, int]], width: int) -> list[tuple[int, int]]:
    """The (length, count) multiset of at most ``width`` slots, within the available counts, that fills a row
    best (ties: the first found, longer lengths first)."""
    best: dict[int, tuple[tuple[int, int], ...]] = {0: ()}  # slots used -> a multiset reaching it
    for length, count in reversed(available):  # longest first
        for used, combo in list(best.items()):
            for k in range(1, min(count, (width - used) // length) + 1):
                best.setdefault(used + k * length, (*combo, (length, k)))
    return list(best[max(best)])


def _packed_group(token_start: int, lengths: list[int], width: int, device: torch.device) -> _Group:
    """Consecutive sequences of ``lengths`` (ascending) in rows of ``width`` token slots (``_pack_rows``)."""
    rows_of, offsets, rows = _pack_rows(lengths, width)
    count = sum(lengths)
    lens = torch.tensor(lengths, device=device)
    seq = torch.repeat_interleave(torch.arange(len(lengths), device=device), lens)  # sequence of each token
    first = torch.cumsum(lens, 0) - lens
    slot = torch.tensor(offsets, device=device)[seq] + torch.arange(count, device=device) - first[seq]
    cell = torch.tensor(rows_of, device=device)[seq] * width + slot  # grid cell of each token
    grid_index = torch.zeros(rows * width, dtype=torch.long, device=device).index_copy_(
        0, cell, torch.arange(count, device=device))  # empty slots copy token 0: finite, masked out as keys
    segment = torch.full((rows * width,), -1, dtype=torch.long, device=device).index_copy_(0, cell, seq)
    segment = segment.view(rows, width)
    allowed = (segment[:, :, None] == segment[:, None, :]) & (segment[:, None, :] >= 0)
    allowed |= torch.eye(width, dtype=torch.bool, device=device)  # an empty slot's query sees itself only
    return _Group(token_start, token_start + count, rows, width, grid_index, cell, allowed[:, None], packed=True)


TOKEN_ROWS = 64  # the token matrix's row count is a multiple of this on the oneDNN (bf16) path


def _uses_onednn(x: Tensor) -> bool:
    """Whether this forward's Linear layers run bf16 matmuls on CPU (autocast or bf16 activations)."""
    if x.device.type != "cpu":
        return False
    autocast = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    return autocast or x.dtype == torch.bfloat16


class _Layout:
    """Where the N real tokens sit in the padded (B, T) batch, and the groups attention runs in.

    Token-wise layers see an (N, H) matrix of real tokens, sequence after sequence, in ascending length
    order (so each length group is one contiguous slice); ``take`` and ``pad`` convert from and to (B, T).
    """

    def __init__(self, mask: Tensor, grouped: bool = True, pack: bool = True) -> None:
        self.batch, self.width = mask.shape
        self.spare = 0  # zero rows after the real tokens (set by FastEncoder.forward)
        self.segments: Tensor | None = None  # set when attention runs per sequence in place (sequence_segments)
        self.bf16_rows: tuple[Tensor, Tensor] | None = None  # int8 layers: (output, its bf16 copy) for the next qkv
        mask = mask.bool()
        lengths_t = mask.sum(1)
        lengths = lengths_t.tolist()
        self.dense = all(length == self.width for length in lengths)  # no padding: tokens stay in place
        positions = torch.arange(self.width, device=mask.device)
        if self.dense:
            self.index, sorted_lengths = None, lengths
        else:
            order = sorted(range(self.batch), key=lengths.__getitem__)  # stable: equal lengths keep their order
            sorted_lengths = [lengths[r] for r in order]
            order_t = torch.tensor(order, device=mask.device)
            # flat (B*T) position of every real token, sequence by sequence in ascending length order
            self.index = (order_t[:, None] * self.width + positions[None, :])[mask[order_t]]
        self.lengths = sorted_lengths  # of the sequences in the token matrix, in its order
        packed = bisect.bisect_right(sorted_lengths, PACK_MAX) if pack else 0
        self.groups = []
        token_start = 0
        if packed:
            width = min(PACK_WIDTH, sum(sorted_lengths[:packed]))  # fixed: rows of 55 or 52 (whole sequences) ran 10 % slower
            self.groups.append(_packed_group(0, sorted_lengths[:packed], width, mask.device))
            token_start = self.groups[0].end
        rest = sorted_lengths[packed:]
        cuts = [packed + c for c in length_groups(rest)] if grouped and rest else []
        bounds = [packed, *cuts, self.batch] if rest else [packed]
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
            rows_lengths = sorted_lengths[lo:hi]
            width = rows_lengths[-1]
            count = sum(rows_lengths)
            if all(length == width for length in rows_lengths):
                self.groups.append(_Group(token_start, token_start + count, hi - lo, width, None, None, None))
            else:
                lens = lengths_t.new_tensor(rows_lengths)
                row_start = torch.cumsum(lens, 0) - lens
                grid_pos = positions[:width]
                real = grid_pos[None, :] < lens[:, None]  # (rows, width)
                grid_index = (row_start[:, None] + torch.minimum(grid_pos[None, :], lens[:, None] - 1)).reshape(-1)
                real_index = real.reshape(-1).nonzero().squeeze(1)
                self.groups.append(_Group(token_start, token_start + count, hi - lo, width, grid_index, real_index,
                                          real[:, None, None, :]))
            token_start += count

    def make_resident(self) -> _Group | None:
        """When all tokens sit in one packed group, make the packed rows the token matrix itself: its group
        then reads rows in place (the empty slots at row ends ride along through the token-wise layers: ~10 %
        more rows, but no gathers in every layer), and the returned original group converts in and out once.
        None (and no change) otherwise."""
        if len(self.groups) != 1 or not self.groups[0].packed:
            return None
        group = self.groups[0]
        cells = group.rows * group.width
        self.groups = [_Group(0, cells, group.rows, group.width, None, None, group.key_mask, packed=True)]
        return group

    def sequence_segments(self) -> Tensor:
        """(2, S) int64: the first row and the length of every sequence in the token matrix (each sequence's
        rows are contiguous there), then the spare rows as a negative length (``fused.sequence_attention``)."""
        lengths = torch.tensor(self.lengths, dtype=torch.int64)
        starts = torch.cumsum(lengths, 0) - lengths
        if self.spare:
            starts = torch.cat([starts, starts.new_tensor([int(lengths.sum())])])
            lengths = torch.cat([lengths, lengths.new_tensor([-self.spare])])
        return torch.stack([starts, lengths]).contiguous()

    def take(self, x: Tensor) -> Tensor:
        """(B, T, ...) -> (N, ...): the real tokens, in the layout's order."""
        flat = x.reshape(self.batch * self.width, *x.shape[2:])
        return flat if self.dense else flat.index_select(0, self.index)

    def pad(self, x: Tensor) -> Tensor:
        """(N, C) -> (B*T, C) in the original row order, zeros at padded positions."""
        if self.dense:
            return x
        return x.new_zeros(self.batch * self.width, x.shape[1]).index_copy(0, self.index, x)


class FastEncoder(nn.Module):
    """A BERT-family encoder: ``forward(input_ids, attention_mask, token_type_ids) -> (B, T, H)``.

    The output holds zeros at padded positions (Hugging Face's hold values no pooling reads). Right padding
    is assumed for position ids (what embtune's tokenization produces). ``config`` is the Hugging Face config
    it was built from and is written back on save; ``hf_class`` names the Hugging Face class it replaces.
    """

    supports_gradient_checkpointing = True

    def __init__(self, spec: EncoderSpec, config, hf_class: str, init: bool = True) -> None:
        super().__init__()
        self.spec = spec
        self.config = config
        self.hf_class = hf_class
        self.embeddings = Embeddings(spec, init)
        self.layers = nn.ModuleList(EncoderLayer(spec) for _ in range(spec.num_layers))
        if spec.relative_buckets:
            weight = None if init else torch.empty(spec.relative_buckets, spec.num_heads)
            self.relative_attention_bias = nn.Embedding(spec.relative_buckets, spec.num_heads, _weight=weight)
        self.gradient_checkpointing = False
        self.output_dtype: torch.dtype | None = None  # cast the output to this (None: the compute dtype)
        self.extra_weights: dict[str, str] = {}  # HF weight name -> buffer name, for weights forward never reads

    def get_input_embeddings(self) -> nn.Embedding:
        """The word-embedding table (Hugging Face's method name)."""
        return self.embeddings.word_embeddings

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None) -> None:
        """Recompute each layer in backward instead of keeping its activations (same call as Hugging Face's)."""
        self.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        self.gradient_checkpointing = False

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        """(B, T) ids, mask and optional token types -> (B, T, H) hidden states (zeros at padding)."""
        layout = _Layout(attention_mask, pack=not self.spec.relative_buckets)  # MPNet's bias is per sequence
        types = None
        if token_type_ids is not None and hasattr(self.embeddings, "token_type_embeddings") and bool(token_type_ids.any()):
            types = layout.take(token_type_ids)
        x = self.embeddings(layout.take(input_ids), layout.take(self._positions(attention_mask)), types)
        # With the C kernels, attention runs inside each sequence in place, on the real tokens' rows (training:
        # fused.sequence_attention_train; bf16 inference on an AVX512-BF16 CPU: fused.sequence_attention), so no
        # layer pays for padding, empty slots, masks or gathers. Otherwise, in
        # inference every layer works on the packed rows, no gathers in and out of each attention (~5 % of
        # encode); in training the empty slots' extra dropout and backward work cost more than the gathers
        longest = layout.lengths[-1] if layout.lengths else 0
        if torch.is_grad_enabled():  # training (or gradients in eval): attention with dropout and a backward pass
            in_place = not self.spec.relative_buckets and fused.can_train_sequences(x, self.spec.num_heads, longest)
        else:  # bf16: the AVX512-BF16 inference kernel; float32: the training kernel's forward pass
            in_place = (not self.spec.relative_buckets and (not self.training or self.spec.attention_dropout == 0.0)
                        and (fused.can_attend_sequences(x, self.spec.num_heads, longest)
                             or (x.dtype == torch.float32 and fused.can_train_sequences(x, self.spec.num_heads,
                                                                                        longest))))
        resident = None if in_place or (self.training and torch.is_grad_enabled()) else layout.make_resident()
        if resident is not None:
            x = resident.to_grid(x)
        tokens = x.shape[0]
        if _uses_onednn(x):
            # bf16 matmuls run on oneDNN, which builds (JIT-compiles) and caches a kernel per matrix shape: a
            # new token count every batch meant new kernels every step, and the cache grew by ~20 MB a step.
            # Rounding the rows up to a multiple of TOKEN_ROWS bounds the shapes. The spare rows start as zeros;
            # attention never mixes them with real tokens and the output drops them, so they change no real
            # token's value and add nothing to any gradient.
            layout.spare = -tokens % TOKEN_ROWS
            if layout.spare:
                x = F.pad(x, (0, 0, 0, layout.spare))
        if in_place:
            layout.segments = layout.sequence_segments()
        bias = self._relative_bias(layout.width, x.device) if self.spec.relative_buckets else None
        for layer in self.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, layout, bias, use_reentrant=False)
            else:
                x = layer(x, layout, bias)
        x = x[:tokens] if resident is None else resident.from_grid(x[:tokens])
        if self.output_dtype is not None:
            x = x.to(self.output_dtype)
        return layout.pad(x).view(layout.batch, layout.width, -1)

    def _positions(self, mask: Tensor) -> Tensor:
        b, t = mask.shape
        if self.spec.position_offset is None:
            return torch.arange(t, device=mask.device).expand(b, t)
        return torch.cumsum(mask.long(), dim=1) + self.spec.position_offset  # pads get garbage, never read

    def _relative_bias(self, width: int, device: torch.device) -> Tensor:
        """MPNet's bucketed relative position bias: (1, heads, T, T)."""
        pos = torch.arange(width, device=device)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None], self.spec.relative_buckets,
                                           self.spec.relative_max_distance)
        return self.relative_attention_bias(buckets).permute(2, 0, 1).unsqueeze(0)


def relative_position_bucket(relative: Tensor, num_buckets: int = 32, max_distance: int = 128) -> Tensor:
    """T5/MPNet buckets of (key - query) offsets: half the buckets per direction, exact up to a quarter, then log."""
    half = num_buckets // 2
    n = -relative
    ret = (n < 0).long() * half
    n = n.abs()
    exact = half // 2
    large = exact + (torch.log(n.float() / exact) / math.log(max_distance / exact) * (half - exact)).long()
    large = torch.clamp(large, max=half - 1)
    return ret + torch.where(n < exact, n, large)
