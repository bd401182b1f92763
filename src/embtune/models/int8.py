"""int8 inference: every ``nn.Linear`` of a module tree replaced by an int8 matmul (AMX-int8 / VNNI on x86).

Weights are quantized once, symmetrically per output channel (int8 in [-127, 127]); activations are quantized
per row (per token) at run time from their own absolute maximum, so no calibration data is needed. The
int8 x int8 -> int32 product runs in ``torch._int_mm`` (oneDNN: AMX-int8 tiles or VNNI), then is rescaled to
float with the two scales and the bias added in float. Attention's query/key/value projections and
everything that is not a Linear (embeddings, layer norms, softmax, attention products, pooling,
normalization) stay in fp32 (in bf16 the worst cosine to fp32 on STS-B test drops from 0.991 to 0.989).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Int8Linear(nn.Module):
    """``y = x @ W.T + b`` with W int8 per output channel and x int8 per row; (..., in) -> (..., out) float32.

    Args:
        linear: the float Linear to quantize (its weights are copied, not shared).
    """

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (out,)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("weight_t", torch.round(weight / scale[:, None]).to(torch.int8).t(), persistent=False)
        self.register_buffer("weight_scale", scale, persistent=False)
        bias = None if linear.bias is None else linear.bias.detach().float().clone()
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        rows = x2.shape[0]
        # _int_mm needs more than 16 rows; tiny batches pad with zero rows (dropped again below)
        padded = max(17, rows)
        if padded != rows:
            x2 = torch.cat([x2, x2.new_zeros(padded - rows, x2.shape[1])])
        x_scale = x2.abs().amax(dim=1, keepdim=True).clamp_(min=1e-12).div_(127.0)  # (rows, 1)
        q = torch.round(x2 / x_scale).to(torch.int8)
        acc = torch._int_mm(q, self.weight_t)  # (rows, out) int32
        y = acc.float().mul_(x_scale).mul_(self.weight_scale)
        if self.bias is not None:
            y.add_(self.bias)
        return y[:rows].reshape(*shape[:-1], self.out_features)


def int8_supported(linear: nn.Linear) -> bool:
    """oneDNN's int8 matmul needs both dimensions to be multiples of 8."""
    return linear.in_features % 8 == 0 and linear.out_features % 8 == 0


# Attention's query/key/value projections stay in float: their rounding errors are amplified by the softmax.
# On all-MiniLM-L6-v2 (STS-B test sentences) quantizing every Linear gives min cosine 0.982 to fp32, keeping
# these float gives 0.991 (bench/int8_quality.py). Names of BERT/XLM-R, MPNet, DistilBERT and fused variants.
FLOAT_LINEARS = frozenset({"query", "key", "value", "q", "k", "v", "q_lin", "k_lin", "v_lin", "qkv", "Wqkv", "in_proj"})


def quantize_linears(module: nn.Module, keep_float: frozenset[str] = FLOAT_LINEARS) -> int:
    """Replace, in place, every supported ``nn.Linear`` below ``module`` by an ``Int8Linear``, except those
    whose attribute name is in ``keep_float``; return how many were replaced."""
    count = 0
    for name, child in list(module.named_children()):
        if isinstance(child, nn.Linear):
            if int8_supported(child) and name not in keep_float:
                setattr(module, name, Int8Linear(child))
                count += 1
        else:
            count += quantize_linears(child, keep_float)
    return count
