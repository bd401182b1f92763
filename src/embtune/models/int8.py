"""int8 inference: every ``nn.Linear`` of a module tree replaced by an int8 matmul (AMX-int8 / VNNI on x86).

Weights are quantized once, symmetrically per output channel (int8 in [-127, 127]); activations are quantized
per row (per token) at run time from their own absolute maximum, so no calibration data is needed. The
int8 x int8 product runs in oneDNN (``torch.ops.onednn.qlinear_pointwise``: AMX-int8 tiles or VNNI), which
applies the weight scales in its epilogue and writes float32; the row scales and the bias are then applied in
place. Attention's query/key/value projections run as bf16 matmuls where the CPU has native bf16 (float32
elsewhere), and everything that is not a Linear (embeddings, layer norms, softmax, attention products,
pooling, normalization) stays in float32. Per-tensor activation scales (what oneDNN could fuse) were tried:
the worst cosine to fp32 on STS-B test sentences fell to 0.91-0.94, so the per-row scales stay.

In embtune's own encoder, ``layer_forward`` runs each layer of the int8 model with the work between its int8
matmuls (row scales, biases, activation, residual + layer norm, quantizing for the next matmul) as one C pass
each (``fused.py``) instead of ~8 torch ops: on a Zen 4 EPYC (VNNI, AVX512-BF16) 3,000 STS-B sentences went
from 1,098 to 1,750-1,950 texts/s (bf16 1,280-1,500 in the same runs; bench/encode.py: int8 1,389, bf16 1,155),
the matmuls now ~70 % of the time.
"""

from __future__ import annotations

import math
import platform

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils.device import _cpu_flags
from . import fast_encoder, fused

_HAS_QLINEAR = torch.backends.mkldnn.is_available() and hasattr(torch.ops.onednn, "qlinear_pointwise")
# int8 dot-product instructions (VNNI or AMX). Without them (x86 AVX2 CPUs) oneDNN multiplies through 16-bit
# pair sums that saturate: a 64-wide product of full-range int8 values came out wrong by up to 9x. There the
# weights are quantized to [-63, 63] (PyTorch's own "reduce range" on such CPUs), which keeps every pair sum
# in range (255 x 63 x 2 < 32,768), so the products are exact again; int8 then runs at about fp32's speed
# (67 vs 65 GOP/s on an AVX2 EPYC; torch._int_mm, the other exact route, ran at 3.5).
_X86 = platform.machine().lower() in ("x86_64", "amd64", "i686", "x86")
HAS_INT8_DOT = not _X86 or bool({"avx512_vnni", "avx_vnni", "amx_int8"} & _cpu_flags())
# VNNI's int8 product is unsigned x signed (AMX also has signed x signed). On a VNNI CPU without AMX (a Zen 4
# EPYC) oneDNN ran signed int8 activations through a reference kernel at 0.2 GOP/s, against 590-750 GOP/s for
# unsigned ones (bf16: 375-405 GFLOP/s) at MiniLM's shapes: there the activations are stored as uint8 = q + 128
# with zero point 128, which oneDNN takes off exactly (128 x each weight row's sum, in int32).
UNSIGNED_ACTIVATIONS = _X86 and HAS_INT8_DOT and "amx_int8" not in _cpu_flags()


class Int8Linear(nn.Module):
    """``y = x @ W.T + b`` with W int8 per output channel and x int8 per row; (..., in) -> (..., out) float32.
    The weights use [-127, 127], or [-63, 63] on oneDNN without int8 dot products (``weight_levels``).

    Args:
        linear: the float Linear to quantize (its weights are copied, not shared).
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.onednn = _HAS_QLINEAR
        self.weight_levels = 127 if HAS_INT8_DOT or not self.onednn else 63  # see HAS_INT8_DOT
        self.zero_point = 128 if self.onednn and UNSIGNED_ACTIVATIONS else 0  # see UNSIGNED_ACTIVATIONS
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / self.weight_levels  # (out,)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        q = torch.round(weight / scale[:, None]).to(torch.int8)
        self.register_buffer("weight_scale", scale, persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias, persistent=False)
        if self.onednn:  # oneDNN's packed layout; the zero points are all 0 (symmetric)
            self.register_buffer("weight_packed", torch.ops.onednn.qlinear_prepack(q, None), persistent=False)
            self.register_buffer("weight_zero", torch.zeros(len(scale), dtype=torch.int64), persistent=False)
        else:
            self.register_buffer("weight_t", q.t(), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        rows = x2.shape[0]
        # per-row scale from max(max, -min): two cheap reductions (abs() would write a copy of x first);
        # multiplying by the reciprocal is ~8x faster than dividing by a broadcast column here
        amax = torch.maximum(x2.amax(1), x2.amin(1).neg_()).clamp_(min=1e-12)
        q = x2.mul(127.0 / amax[:, None]).round_()
        q = q.add_(128.0).to(torch.uint8) if self.zero_point else q.to(torch.int8)
        row_scale = amax.div_(127.0)[:, None]
        if self.onednn:
            y = self.product(q)
        else:
            padded = max(17, rows)  # torch._int_mm needs more than 16 rows: pad with zero rows, dropped below
            if padded != rows:
                q = torch.cat([q, q.new_zeros(padded - rows, q.shape[1])])
            y = torch._int_mm(q, self.weight_t)[:rows].float().mul_(self.weight_scale)  # (rows, out) int32 sums
        y.mul_(row_scale)  # in place: a fresh output buffer (addcmul) costs page faults, ~50 % more here
        if self.bias is not None:
            y.add_(self.bias)
        return y.reshape(*shape[:-1], self.out_features)

    def product(self, q: Tensor) -> Tensor:
        """(rows, in) quantized activations (uint8 with ``zero_point`` 128, or int8) -> (rows, out) float32:
        the int32 sums times the weight scales (oneDNN only); the caller applies the row scales and the bias."""
        return torch.ops.onednn.qlinear_pointwise(q, 1.0, self.zero_point, self.weight_packed, self.weight_scale,
                                                  self.weight_zero, None, 1.0, 0, torch.float32, "none", [], "")


class Bf16Linear(nn.Module):
    """``y = x @ W.T + b`` as a bf16 matmul (float32 accumulation), float32 in and out: the int8 model's
    attention projections on CPUs with native bf16 (AMX / AVX-512-bf16), where a float32 matmul is ~5x slower.

    Args:
        linear: the float Linear to copy (weights rounded to bf16 once).
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight", linear.weight.detach().to(torch.bfloat16).clone(), persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16).clone()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.bf16_product(x).float()

    def bf16_product(self, x: Tensor) -> Tensor:
        """The same product with a bf16 result."""
        x = x.to(torch.bfloat16)
        if fast_encoder._HAS_ONEDNN and x.device.type == "cpu":  # bias in the matmul's epilogue (F.linear copies it first)
            shape = x.shape
            y = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]), self.weight, self.bias, "none", [], "")
            return y.reshape(*shape[:-1], self.out_features)
        return F.linear(x, self.weight, self.bias)


def int8_supported(linear: nn.Linear) -> bool:
    """oneDNN's int8 matmul needs both dimensions to be multiples of 8."""
    return linear.in_features % 8 == 0 and linear.out_features % 8 == 0


# Attention's query/key/value projections stay in float: their rounding errors are amplified by the softmax.
# On all-MiniLM-L6-v2 (STS-B test sentences) quantizing every Linear gives min cosine 0.982 to fp32, keeping
# these float gives 0.991 (0.990 with them in bf16; bench/int8_quality.py). Names of BERT/XLM-R, MPNet,
# DistilBERT and fused variants.
FLOAT_LINEARS = frozenset({"query", "key", "value", "q", "k", "v", "q_lin", "k_lin", "v_lin", "qkv", "Wqkv", "in_proj"})


# On CPUs without int8 dot products int8 is no faster than fp32 and its weights have 7 bits; there the FFN output
# projections (input: the GELU output, the hardest to quantize) stay float too, at no cost in speed: on
# all-MiniLM-L6-v2 (STS-B test sentences) the worst cosine to fp32 goes 0.982 -> 0.994 (ffn_in instead: 0.991).
FFN_OUTPUT_LINEARS = frozenset({"ffn_out", "lin2"})


def float_linears() -> frozenset[str]:
    """The Linear names ``encode``'s int8 copy keeps float on this CPU."""
    return FLOAT_LINEARS if HAS_INT8_DOT else FLOAT_LINEARS | FFN_OUTPUT_LINEARS


def quantize_linears(module: nn.Module, keep_float: frozenset[str] = FLOAT_LINEARS, bf16: bool = False) -> int:
    """Replace, in place, every supported ``nn.Linear`` below ``module`` by an ``Int8Linear``, except those
    whose attribute name is in ``keep_float`` (with ``bf16``, those become ``Bf16Linear``); return how many
    were made int8."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            if name in keep_float:
                if bf16:
                    setattr(module, name, Bf16Linear(child))
            elif int8_supported(child):
                setattr(module, name, Int8Linear(child))
                count += 1
        else:
            count += quantize_linears(child, keep_float, bf16)
    return count


def fuses_layer(layer: nn.Module, x: Tensor) -> bool:
    """Whether ``layer_forward`` covers this ``fast_encoder.EncoderLayer`` forward: inference on CPU with the C
    kernels, a float32 residual stream, oneDNN int8 attention-output and FFN projections, float (or bf16) qkv,
    layer norms and an activation the kernels have."""
    linears = (layer.attn_out, layer.ffn_in, layer.ffn_out)
    return (not torch.is_grad_enabled() and x.dtype == torch.float32 and x.is_contiguous()
            and fused.can_quantize_rows(x) and type(layer.qkv) in (nn.Linear, Bf16Linear)
            and all(type(m) is Int8Linear and m.onednn for m in linears)
            and layer.fused_act in fused.INT8_ACTIVATIONS and x.shape[1] <= fused.Q8_MAX_COLS
            and all(type(n) is nn.LayerNorm and fused.is_float_vector(n.weight, x.shape[1])
                    and fused.is_float_vector(n.bias, x.shape[1]) for n in (layer.attn_norm, layer.ffn_norm)))


def _bias(linear: Int8Linear) -> Tensor:
    return linear.bias if linear.bias is not None else torch.zeros(linear.out_features)


def layer_forward(layer: nn.Module, x: Tensor, layout, bias: Tensor | None) -> Tensor:
    """One encoder layer of the int8 model, (N, H) float32 -> (N, H) float32: the same math as the layer's
    modules (``Int8Linear``: per-row int8 activations), with everything between the int8 matmuls done by
    ``fused.py``'s kernels, one pass each: quantize the attention context; row scale + bias + residual + layer
    norm + quantize; row scale + bias + activation + quantize; row scale + bias + residual + layer norm (+ the
    bf16 copy the next layer's bf16 qkv reads). Where bf16 is native, qkv stays bf16 and attention runs on the
    AVX512-BF16 kernel (float32 scores, probabilities and context)."""
    zp = layer.attn_out.zero_point
    context = None
    if type(layer.qkv) is Bf16Linear:
        cached = layout.bf16_rows
        x16 = cached[1] if cached is not None and cached[0] is x else x.to(torch.bfloat16)
        qkv = layer.qkv.bf16_product(x16)
        longest = layout.lengths[-1] if layout.lengths else 0
        if layout.segments is not None and bias is None and fused.can_attend_sequences(x16, layer.num_heads, longest):
            # float32 context: rounding it to bf16 before its int8 quantization took the worst cosine to fp32
            # on STS-B test sentences from 0.9913 to 0.9892 (mean unchanged)
            context = fused.sequence_attention(qkv, layout.segments, layer.num_heads, 1.0 / math.sqrt(layer.head_dim),
                                               out_dtype=torch.float32)
        else:
            qkv = qkv.float()
    else:
        qkv = layer.qkv(x)
    if context is None:
        context = layer._attention(qkv, layout, bias)
    q, scale = fused.quantize_rows(context, zp)
    y = layer.attn_out.product(q)
    x, _, q, scale = fused.residual_norm_quantize(y, scale, _bias(layer.attn_out), x, layer.attn_norm, zp)
    h = layer.ffn_in.product(q)
    q, scale = fused.bias_act_quantize(h, scale, _bias(layer.ffn_in), fused.INT8_ACTIVATIONS[layer.fused_act], zp)
    y = layer.ffn_out.product(q)
    want16 = type(layer.qkv) is Bf16Linear
    out, out16, _, _ = fused.residual_norm_quantize(y, scale, _bias(layer.ffn_out), x, layer.ffn_norm, zp,
                                                    quantize=False, bf16_copy=want16)
    layout.bf16_rows = (out, out16) if want16 else None  # the next layer's qkv input, if it is bf16 too
    return out
