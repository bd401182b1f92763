"""FastEncoder: embtune's own encoder for BERT, RoBERTa / XLM-RoBERTa, MPNet and DistilBERT.

The same math as the Hugging Face modules (post-layer-norm Transformer encoders), computed differently:

- every token-wise layer (projections, FFN, layer norms, residuals) runs on the unpadded matrix of real tokens
  (N, H) instead of (B, T, H), so padding costs nothing there;
- attention runs per sequence: the fused q/k/v rows are scattered into a (B, heads, T, d) layout once per
  layer and ``scaled_dot_product_attention`` masks the padded keys (MPNet adds its relative position bias);
- q, k and v come from one fused Linear (``qkv``), so each layer runs 4 matmuls instead of 6;
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

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .dropout import Dropout, dropout

ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


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

    def __init__(self, spec: EncoderSpec) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(spec.vocab_size, spec.hidden_size, padding_idx=spec.padding_idx)
        self.position_embeddings = nn.Embedding(spec.max_positions, spec.hidden_size)
        if spec.type_vocab_size > 0:
            self.token_type_embeddings = nn.Embedding(spec.type_vocab_size, spec.hidden_size)
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

    def forward(self, x: Tensor, layout: _Layout, bias: Tensor | None) -> Tensor:
        """(N, H) real tokens -> (N, H)."""
        context = self._attention(self.qkv(x), layout, bias)
        x = self.attn_norm(self.attn_dropout(self.attn_out(context)) + x)
        return self.ffn_norm(self.ffn_dropout(self.ffn_out(self.act(self.ffn_in(x)))) + x)

    def _attention(self, qkv: Tensor, layout: _Layout, bias: Tensor | None) -> Tensor:
        """(N, 3H) -> (N, H): scaled dot-product attention inside each sequence, padded keys masked.

        Without dropout or a position bias, ``scaled_dot_product_attention`` (a fused kernel on CPU). In
        training, explicit scores -> softmax -> dropout (embtune's cheap masks) -> values: torch's fused CPU
        kernel has no dropout, and its unfused fallback draws ``bernoulli_`` masks and rebuilds the key mask
        in every layer; here the additive key mask is built once per forward, in the scores' dtype.
        """
        b, t = layout.batch, layout.width
        padded = layout.pad(qkv).view(b, t, 3, self.num_heads, self.head_dim)
        q, k, v = padded.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, d)
        p = self.attention_dropout if self.training else 0.0
        if bias is None and p == 0.0:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=layout.key_mask)
        else:  # MPNet's relative position bias gets its gradient through the explicit sum
            scores = torch.matmul(q * (1.0 / math.sqrt(self.head_dim)), k.transpose(-1, -2))
            add = layout.key_bias(scores.dtype)
            if bias is not None:
                add = bias.to(scores.dtype) if add is None else bias.to(scores.dtype) + add
            if add is not None:
                scores = scores + add
            probs = dropout(torch.softmax(scores, -1), p, self.training)
            out = torch.matmul(probs.to(v.dtype), v)
        return layout.unpad(out.transpose(1, 2).reshape(b * t, -1))


class _Layout:
    """Where the N real tokens sit in the padded (B, T) batch, and the scatter / gather between the two."""

    def __init__(self, mask: Tensor) -> None:
        self.batch, self.width = mask.shape
        flat = mask.reshape(-1).bool()
        self.dense = bool(flat.all())  # no padding at all: scatter and gather are identities
        self.index = None if self.dense else flat.nonzero().squeeze(1)  # (N,) row-major positions
        self.key_mask = None if self.dense else mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        self._key_bias: dict[torch.dtype, Tensor] = {}

    def key_bias(self, dtype: torch.dtype) -> Tensor | None:
        """(B, 1, 1, T) additive mask: 0 for real keys, the dtype's lowest value for padded ones (cached)."""
        if self.dense:
            return None
        if dtype not in self._key_bias:
            zeros = torch.zeros(self.key_mask.shape, dtype=dtype, device=self.key_mask.device)
            self._key_bias[dtype] = zeros.masked_fill_(~self.key_mask, torch.finfo(dtype).min)
        return self._key_bias[dtype]

    def take(self, x: Tensor) -> Tensor:
        """(B, T, ...) -> (N, ...): the real tokens, row-major."""
        flat = x.reshape(self.batch * self.width, *x.shape[2:])
        return flat if self.dense else flat.index_select(0, self.index)

    def pad(self, x: Tensor) -> Tensor:
        """(N, C) -> (B*T, C) with zeros at padded positions."""
        if self.dense:
            return x
        return x.new_zeros(self.batch * self.width, x.shape[1]).index_copy(0, self.index, x)

    def unpad(self, x: Tensor) -> Tensor:
        """(B*T, C) -> (N, C)."""
        return x if self.dense else x.index_select(0, self.index)


class FastEncoder(nn.Module):
    """A BERT-family encoder: ``forward(input_ids, attention_mask, token_type_ids) -> (B, T, H)``.

    The output holds zeros at padded positions (Hugging Face's hold values no pooling reads). Right padding
    is assumed for position ids (what embtune's tokenization produces). ``config`` is the Hugging Face config
    it was built from and is written back on save; ``hf_class`` names the Hugging Face class it replaces.
    """

    supports_gradient_checkpointing = True

    def __init__(self, spec: EncoderSpec, config, hf_class: str) -> None:
        super().__init__()
        self.spec = spec
        self.config = config
        self.hf_class = hf_class
        self.embeddings = Embeddings(spec)
        self.layers = nn.ModuleList(EncoderLayer(spec) for _ in range(spec.num_layers))
        if spec.relative_buckets:
            self.relative_attention_bias = nn.Embedding(spec.relative_buckets, spec.num_heads)
        self.gradient_checkpointing = False
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
        layout = _Layout(attention_mask)
        types = None
        if token_type_ids is not None and hasattr(self.embeddings, "token_type_embeddings") and bool(token_type_ids.any()):
            types = layout.take(token_type_ids)
        x = self.embeddings(layout.take(input_ids), layout.take(self._positions(attention_mask)), types)
        bias = self._relative_bias(layout.width, x.device) if self.spec.relative_buckets else None
        for layer in self.layers:
            if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(layer, x, layout, bias, use_reentrant=False)
            else:
                x = layer(x, layout, bias)
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
