"""Fused CPU kernels, for training and bf16 inference attention: each one C pass where torch runs several ops.

A training step of a small encoder on short texts is dominated by element-wise work, not matmuls: per layer,
eager torch runs ``LayerNorm(dropout(h + b) + x)`` as ~10 operations (bias copy, mask, casts, multiplies,
add, norm), each a dispatch, an allocation and a pass over memory, and the backward as many again; attention
gathers its grid, copies q, k and v to make them contiguous, and runs softmax and dropout separately; gradient
clipping runs a norm and a multiply per parameter tensor. ``fused_kernels.c`` does each of these in one pass
(float32 accumulation, bf16 or float32 in and out), and the autograd Functions here call it:
``residual_norm`` (bias + dropout + residual + layer norm), ``softmax_dropout`` (scale + key mask + softmax +
dropout), ``split_heads`` / ``merge_heads`` (the fused qkv rows to contiguous heads and back), and
``sum_squares`` / ``scale`` (clipping). In one bf16 training step of the bundled model on SNLI pairs they take
23 % off the time of the same math as torch ops. ``sequence_attention_train`` (training: dropout and backward
included) and ``sequence_attention`` (bf16 inference, AVX512-BF16 dot products) run attention inside each
sequence on the unpadded token rows, each sequence's own (len x len) scores in float32, instead of heads split
into padded or packed grids: a bf16 SNLI step 11 % faster, 3,000 STS-B sentences encode 24-33 % faster.

The C file is compiled on first use with the system's C compiler (``$CC``, ``cc`` or ``gcc``; ``-O3
-march=native -fopenmp``, ~2 s) into ``$EMBTUNE_CACHE`` (default ``~/.cache/embtune``)/kernels, keyed by the
source, the compiler, the flags and the CPU; it runs on the OpenMP runtime torch already loaded, with torch's
thread count. Without a compiler, with ``EMBTUNE_FUSED_KERNELS=0``, when the cache cannot be written, off CPU,
or for inputs the kernels do not cover, the fast encoder runs the same math as torch ops (logged once).

What differs from the eager path:

- Dropout: the same drop probability (``round(p * 65536) / 65536``, see ``dropout.py``) and scale, but the
  mask of element (row, column) is a hash of (seed, row, column) with the seed drawn from torch's default
  generator, so it is recomputed in backward instead of stored. ``torch.manual_seed``, saved RNG states and
  gradient checkpointing reproduce it; the masks differ from the eager path's.
- Rounding: the bias add, dropout's scale and the residual add happen in float32 before the norm (eager
  rounds the biased, dropped-out bf16 values first), and the softmax scale ``1/sqrt(d)`` is applied to the
  float32 scores instead of to bf16 queries. In float32 the outputs match eager torch within 1e-6 and
  gradients within 1e-5.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

from .dropout import draw_seed, drop_levels

logger = logging.getLogger(__name__)

_SOURCE = Path(__file__).with_name("fused_kernels.c")
_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False

_I64, _F32, _PTR, _INT, _U64, _U32 = (ctypes.c_int64, ctypes.c_float, ctypes.c_void_p, ctypes.c_int,
                                      ctypes.c_uint64, ctypes.c_uint32)
_SIGNATURES = {
    "residual_ln_fwd": [_PTR, _INT, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _I64, _I64, _F32, _U64,
                        _U32, _F32, _INT],
    "residual_ln_bwd": [_PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _INT, _PTR, _PTR, _PTR, _PTR, _I64, _I64,
                        _U64, _U32, _F32, _INT],
    "softmax_dropout_fwd": [_PTR, _PTR, _INT, _PTR, _PTR, _I64, _I64, _I64, _I64, _I64, _F32, _U64, _U32, _F32,
                            _INT],
    "softmax_dropout_bwd": [_PTR, _PTR, _PTR, _INT, _I64, _I64, _F32, _U64, _U32, _F32, _INT],
    "split_heads": [_PTR, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _I64, _I64, _I64, _I64, _INT],
    "split_heads_bwd": [_PTR, _PTR, _PTR, _I64, _PTR, _PTR, _PTR, _PTR, _I64, _I64, _I64, _I64, _INT],
    "merge_heads": [_PTR, _I64, _PTR, _PTR, _I64, _I64, _I64, _I64, _INT],
    "merge_heads_bwd": [_PTR, _I64, _PTR, _PTR, _PTR, _I64, _I64, _I64, _I64, _INT],
    "grad_chunks": [_PTR, _I64],
    "sum_squares": [_PTR, _PTR, _I64, _PTR, _PTR, _INT],
    "scale_all": [_PTR, _PTR, _I64, _PTR, _F32, _INT],
    "sequence_attention": [_PTR, _PTR, _INT, _PTR, _PTR, _I64, _I64, _I64, _F32, _INT],
    "sequence_attention_native": [],
    "q8_quantize": [_PTR, _INT, _I64, _I64, _PTR, _PTR, _INT, _INT],
    "q8_bias_act_quantize": [_PTR, _PTR, _PTR, _INT, _I64, _I64, _PTR, _PTR, _INT, _INT],
    "q8_residual_ln": [_PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _F32, _PTR, _PTR, _PTR, _PTR, _INT, _I64, _I64, _INT],
    "seq_attention_fwd": [_PTR, _INT, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _I64, _I64, _I64, _F32, _U64, _U32,
                          _F32, _INT],
    "seq_attention_bwd": [_PTR, _INT, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _I64, _I64, _I64, _F32, _U64,
                          _U32, _F32, _INT],
    "column_sums": [_PTR, _INT, _I64, _I64, _PTR, _INT],
}
_RESTYPES = {"grad_chunks": ctypes.c_int64, "sum_squares": ctypes.c_double, "sequence_attention": ctypes.c_int,
             "sequence_attention_native": ctypes.c_int, "seq_attention_fwd": ctypes.c_int,
             "seq_attention_bwd": ctypes.c_int}


def _cache_dir() -> Path:
    return Path(os.environ.get("EMBTUNE_CACHE") or Path.home() / ".cache" / "embtune") / "kernels"


def _compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _build(compiler: str, extra_flags: tuple[str, ...] = ()) -> Path:
    """Compile the kernels once per (source, compiler, flags, CPU) into the cache; written atomically.
    ``extra_flags`` are for tests (``-DEMBTUNE_GENERIC``: the portable C loops instead of AVX-512)."""
    source = _SOURCE.read_bytes()
    # Not -ffast-math: with gcc < 13 a shared library built with it sets flush-to-zero for the whole process.
    # Reassociation (vectorized row sums) and contraction (FMA) are what the kernels need from it.
    flags = ["-O3", "-march=native", "-fopenmp", "-fPIC", "-shared", "-std=gnu11", "-fno-math-errno",
             "-fno-trapping-math", "-fno-signed-zeros", "-fassociative-math", "-ffp-contract=fast"]
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags.append("-mprefer-vector-width=512")  # gcc picks 256-bit vectors by default even with AVX-512
    flags += extra_flags
    cpu = ""
    try:  # -march=native code is only valid on the CPU it was built on: key the cache by its model and flags
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = "".join(line for line in f if line.startswith(("model name", "flags")))[:4096]
    except OSError:
        pass
    key = hashlib.sha256(source + compiler.encode() + " ".join(flags).encode() + cpu.encode()).hexdigest()[:16]
    target = _cache_dir() / f"fused-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / target.name
        subprocess.run([compiler, *flags, str(_SOURCE), "-o", str(out)], check=True, capture_output=True,
                       timeout=120)
        os.replace(out, target)
    return target


def kernels() -> ctypes.CDLL | None:
    """The compiled kernels, or None when they are switched off or cannot be built (logged once)."""
    global _lib, _tried
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        if os.environ.get("EMBTUNE_FUSED_KERNELS", "1") == "0":
            _tried = True
            return None
        compiler = _compiler()
        try:
            if compiler is None:
                raise RuntimeError("no C compiler (cc or gcc) on PATH")
            _lib = load(_build(compiler))
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            logger.info("fused training kernels unavailable (%s%s); using eager torch ops", exc,
                        f": {detail.decode(errors='replace')[:200]}" if detail else "")
        _tried = True
        return _lib


def load(path: Path) -> ctypes.CDLL:
    """A compiled kernel library with its function signatures set."""
    lib = ctypes.CDLL(str(path))
    for name, argtypes in _SIGNATURES.items():
        getattr(lib, name).argtypes = argtypes
        getattr(lib, name).restype = _RESTYPES.get(name)
    return lib


def _drop(p: float, training: bool) -> tuple[int, float, int]:
    """(seed, scale, levels) of a dropout with probability p (``dropout.drop_levels``); levels 0 = no dropout."""
    levels, scale = drop_levels(p) if training else (0, 1.0)
    if levels <= 0:
        return 0, 1.0, 0
    return draw_seed(), scale, levels


def _threads() -> int:
    return max(1, torch.get_num_threads())


def _ptr(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def can_fuse_residual_norm(h: Tensor, x: Tensor, norm: torch.nn.Module, p: float, bias: Tensor | None = None) -> bool:
    """Whether ``residual_norm`` covers these inputs (else use the eager ops)."""
    width = x.shape[-1]
    return (kernels() is not None and h.device.type == "cpu" and x.device.type == "cpu" and p < 1.0
            and x.dtype == torch.float32 and h.dtype in (torch.float32, torch.bfloat16) and h.shape == x.shape
            and h.dim() == 2 and type(norm) is torch.nn.LayerNorm and is_float_vector(norm.weight, width)
            and is_float_vector(norm.bias, width) and (bias is None or is_float_vector(bias, width)))


def is_float_vector(t: Tensor | None, width: int) -> bool:
    """A (width,) float32 CPU tensor: a weight or bias the kernels can read."""
    return t is not None and t.dtype == torch.float32 and t.device.type == "cpu" and tuple(t.shape) == (width,)


class _ResidualNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: Tensor, x: Tensor, weight: Tensor, bias: Tensor, h_bias: Tensor | None, eps: float,
                p: float, training: bool):
        lib = kernels()
        h, x = h.contiguous(), x.contiguous()
        weight, bias = weight.contiguous(), bias.contiguous()
        h_bias = None if h_bias is None else h_bias.contiguous()
        rows, width = x.shape
        seed, scale, levels = _drop(p, training)
        y = torch.empty_like(x)
        s = torch.empty_like(x)
        mean = x.new_empty(rows)
        rstd = x.new_empty(rows)
        lib.residual_ln_fwd(h.data_ptr(), int(h.dtype == torch.bfloat16), _ptr(h_bias), x.data_ptr(),
                            weight.data_ptr(), bias.data_ptr(), y.data_ptr(), s.data_ptr(), mean.data_ptr(),
                            rstd.data_ptr(), rows, width, eps, seed, levels, scale, _threads())
        ctx.save_for_backward(s, mean, rstd, weight)
        ctx.drop = (seed, levels, scale)
        ctx.h_dtype = h.dtype
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        lib = kernels()
        s, mean, rstd, weight = ctx.saved_tensors
        seed, levels, scale = ctx.drop
        dy = dy.float().contiguous()
        rows, width = s.shape
        threads = _threads()
        wants = ctx.needs_input_grad
        dx = torch.empty_like(s) if wants[1] else None
        dh = torch.empty(s.shape, dtype=ctx.h_dtype)
        dweight = torch.empty_like(weight) if wants[2] else None
        dbias = torch.empty_like(weight) if wants[3] else None
        dh_bias = torch.empty_like(weight) if wants[4] else None
        work = s.new_empty(3 * threads * width)
        lib.residual_ln_bwd(dy.data_ptr(), s.data_ptr(), mean.data_ptr(), rstd.data_ptr(), weight.data_ptr(),
                            _ptr(dx), dh.data_ptr(), int(ctx.h_dtype == torch.bfloat16), _ptr(dweight), _ptr(dbias),
                            _ptr(dh_bias), work.data_ptr(), rows, width, seed, levels, scale, threads)
        return dh, dx, dweight, dbias, dh_bias, None, None, None


def residual_norm(h: Tensor, x: Tensor, norm: torch.nn.LayerNorm, p: float, training: bool,
                  bias: Tensor | None = None) -> Tensor:
    """``norm(dropout(h + bias, p) + x)`` in one fused pass (float32 out); ``bias`` (h's, e.g. of the matmul
    that made h without one) may be None. Check ``can_fuse_residual_norm`` first."""
    return _ResidualNorm.apply(h, x, norm.weight, norm.bias, bias, float(norm.eps), float(p), bool(training))


class _SoftmaxDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores: Tensor, bias: Tensor | None, scale: float, p: float, training: bool):
        lib = kernels()
        scores = scores.contiguous()
        groups, heads, q, t = scores.shape
        if bias is not None:
            bias = bias.contiguous()
        seed, dscale, levels = _drop(p, training)
        probs = torch.empty_like(scores)
        out = torch.empty_like(scores) if levels else probs
        lib.softmax_dropout_fwd(scores.data_ptr(), _ptr(bias),
                                int(scores.dtype == torch.bfloat16), probs.data_ptr(), out.data_ptr(), groups,
                                heads, q, t, bias.shape[2] if bias is not None else 1, scale, seed, levels, dscale,
                                _threads())
        ctx.save_for_backward(probs)
        ctx.drop = (seed, levels, dscale, scale)
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):
        lib = kernels()
        (probs,) = ctx.saved_tensors
        seed, levels, dscale, scale = ctx.drop
        dout = dout.to(probs.dtype).contiguous()
        ds = torch.empty_like(probs)
        t = probs.shape[-1]
        lib.softmax_dropout_bwd(dout.data_ptr(), probs.data_ptr(), ds.data_ptr(), int(probs.dtype == torch.bfloat16),
                                probs.numel() // t, t, scale, seed, levels, dscale, _threads())
        return ds, None, None, None, None


def softmax_dropout(scores: Tensor, bias: Tensor | None, scale: float, p: float, training: bool) -> Tensor:
    """``dropout(softmax(scale * scores + bias, -1), p)`` in one fused pass, in the scores' dtype: (groups,
    heads, q, T) float32 or bf16 scores on CPU; ``bias`` an additive key mask without gradient, (groups, 1, 1 or
    q, T) in the scores' dtype, or None."""
    return _SoftmaxDropout.apply(scores, bias, float(scale), float(p), bool(training))


SEQUENCE_ATTENTION_MAX = 256  # longest sequence and largest head size that ``sequence_attention`` and
SEQUENCE_ATTENTION_DIM = 128  # ``sequence_attention_train`` cover (fused_kernels.c: ATT_/SA_ LMAX, DMAX)


def can_attend_sequences(x: Tensor, heads: int, longest: int) -> bool:
    """Whether ``sequence_attention`` covers an inference forward over these (tokens, H) bf16 CPU rows: heads
    of a multiple of 32 up to 128 values, sequences of up to 256 tokens, and kernels built with AVX512-BF16 (their
    portable loops are slower than torch's fused attention, so they are not used for this)."""
    lib = kernels()
    d = x.shape[-1] // heads
    return (lib is not None and bool(lib.sequence_attention_native()) and not torch.is_grad_enabled()
            and x.device.type == "cpu" and x.dtype == torch.bfloat16 and x.dim() == 2
            and d * heads == x.shape[-1] and d % 32 == 0 and d <= SEQUENCE_ATTENTION_DIM
            and 0 < longest <= SEQUENCE_ATTENTION_MAX)


def sequence_attention(qkv: Tensor, segments: Tensor, heads: int, scale: float,
                       out_dtype: torch.dtype = torch.bfloat16) -> Tensor:
    """Inference attention inside each sequence: (rows, 3H) bf16 fused q/k/v rows -> (rows, H) bf16 (or float32:
    ``out_dtype``). ``segments``: (2, S) int64, the first row and the length of each sequence; a length <= 0
    marks that many rows (from that first row) as not a sequence: their output is zeros. The segments must
    cover every row. Each sequence's scores and probabilities are (len x len), float32, with no padding and no
    mask (``fused_kernels.c``)."""
    qkv = qkv.contiguous()
    out = qkv.new_empty(qkv.shape[0], qkv.shape[1] // 3, dtype=out_dtype)
    _check_scratch(kernels().sequence_attention(qkv.data_ptr(), out.data_ptr(), int(out_dtype == torch.float32),
                                                segments[0].data_ptr(),
                                                segments[1].data_ptr(), segments.shape[1], out.shape[1], heads,
                                                float(scale), _threads()), "sequence_attention")
    return out


Q8_MAX_COLS = 4096  # fused_kernels.c: the widest bf16 rows q8_quantize converts


def can_quantize_rows(x: Tensor) -> bool:
    """Whether the int8 kernels below cover these (rows, cols) activations."""
    return (kernels() is not None and x.device.type == "cpu" and x.dim() == 2
            and (x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and x.shape[1] <= Q8_MAX_COLS)))


def _int8(q: Tensor, zero_point: int) -> Tensor:
    return q if zero_point else q.view(torch.int8)


def quantize_rows(x: Tensor, zero_point: int) -> tuple[Tensor, Tensor]:
    """(rows, cols) float32 or bf16 -> (q, scale): q = round(x * 127 / amax) per row (+ ``zero_point`` as uint8,
    else int8), scale = amax / 127 (rows,), amax = the row's largest magnitude (at least 1e-12)."""
    x = x.contiguous()
    rows, cols = x.shape
    q, scale = torch.empty(rows, cols, dtype=torch.uint8), torch.empty(rows)
    kernels().q8_quantize(x.data_ptr(), int(x.dtype == torch.bfloat16), rows, cols, q.data_ptr(), scale.data_ptr(),
                          zero_point, _threads())
    return _int8(q, zero_point), scale


# activation codes of q8_bias_act_quantize, by fast_encoder.ONEDNN_ACTIVATIONS' (attr, algorithm)
INT8_ACTIVATIONS = {("gelu", "none"): 0, ("gelu", "tanh"): 1, ("relu", ""): 2}


def bias_act_quantize(y: Tensor, row_scale: Tensor, bias: Tensor, act: int, zero_point: int) -> tuple[Tensor, Tensor]:
    """(rows, cols) float32 int8-matmul sums ``y`` -> the quantization (``quantize_rows``) of
    act(y * row_scale + bias); ``y`` may be overwritten (rows wider than ``Q8_MAX_COLS``)."""
    rows, cols = y.shape
    q, scale = torch.empty(rows, cols, dtype=torch.uint8), torch.empty(rows)
    kernels().q8_bias_act_quantize(y.data_ptr(), row_scale.data_ptr(), bias.data_ptr(), act, rows, cols,
                                   q.data_ptr(), scale.data_ptr(), zero_point, _threads())
    return _int8(q, zero_point), scale


def residual_norm_quantize(y: Tensor, row_scale: Tensor, bias: Tensor, x: Tensor, norm: torch.nn.LayerNorm,
                           zero_point: int, quantize: bool = True, bf16_copy: bool = False):
    """LayerNorm(y * row_scale + bias + x) for (rows, H) float32 int8-matmul sums ``y`` and residual ``x``:
    (out, out's bf16 copy or None, its quantization q or None, q's row scales or None)."""
    rows, h = y.shape
    out = torch.empty_like(x)
    out16 = torch.empty(rows, h, dtype=torch.bfloat16) if bf16_copy else None
    q, scale = (torch.empty(rows, h, dtype=torch.uint8), torch.empty(rows)) if quantize else (None, None)
    kernels().q8_residual_ln(y.data_ptr(), row_scale.data_ptr(), bias.data_ptr(), x.data_ptr(), norm.weight.data_ptr(),
                             norm.bias.data_ptr(), float(norm.eps), out.data_ptr(), _ptr(out16), _ptr(q), _ptr(scale),
                             zero_point, rows, h, _threads())
    return out, out16, None if q is None else _int8(q, zero_point), scale


def can_split_heads(x: Tensor, *indexes: Tensor | None) -> bool:
    """Whether ``split_heads`` / ``merge_heads`` cover this (tokens, C) matrix and these cell/token maps."""
    return (kernels() is not None and x.device.type == "cpu" and x.dim() == 2
            and x.dtype in (torch.float32, torch.bfloat16)
            and all(i is None or (i.dtype == torch.int64 and i.device.type == "cpu" and i.is_contiguous())
                    for i in indexes))


class _SplitHeads(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, bias: Tensor | None, grid_index: Tensor | None, real_index: Tensor | None,
                rows: int, width: int, heads: int):
        lib = kernels()
        x = x.contiguous()
        bias = None if bias is None else bias.contiguous()
        d = x.shape[1] // (3 * heads)
        q, k, v = (x.new_empty(rows * heads, width, d) for _ in range(3))
        lib.split_heads(x.data_ptr(), x.element_size(), _ptr(bias), _ptr(grid_index), q.data_ptr(), k.data_ptr(),
                        v.data_ptr(), rows * width, width, heads, d, _threads())
        ctx.save_for_backward(real_index)
        ctx.layout = (x.shape[0], width, heads, d)
        return q, k, v

    @staticmethod
    def backward(ctx, dq: Tensor, dk: Tensor, dv: Tensor):
        lib = kernels()
        (real_index,) = ctx.saved_tensors
        tokens, width, heads, d = ctx.layout
        like = next(g for g in (dq, dk, dv) if g is not None)
        dq, dk, dv = (torch.zeros_like(like) if g is None else g.to(like.dtype).contiguous() for g in (dq, dk, dv))
        dx = like.new_empty(tokens, 3 * heads * d)
        threads = _threads()
        dbias = torch.empty(3 * heads * d) if ctx.needs_input_grad[1] else None
        work = torch.empty(threads * 3 * heads * d) if dbias is not None else None
        lib.split_heads_bwd(dq.data_ptr(), dk.data_ptr(), dv.data_ptr(), dx.element_size(), _ptr(real_index),
                            dx.data_ptr(), _ptr(dbias), _ptr(work), tokens, width, heads, d, threads)
        return dx, dbias, None, None, None, None, None


def split_heads(x: Tensor, grid_index: Tensor | None, real_index: Tensor | None, rows: int, width: int,
                heads: int, bias: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(tokens, 3H) fused query/key/value rows (+ ``bias``, float32 (3H,): the qkv matmul's, which then runs
    without one) -> q, k, v, each (rows * heads, width, d) and contiguous, for a group of ``rows`` x ``width``
    grid cells (cell c holds token ``grid_index[c]``, pad cells repeat a real token; token i sits in cell
    ``real_index[i]``; None: the identity). One pass forward, one back (pad cells get no gradient, as with
    ``_GatherRows``; the bias gradient is summed in the same pass). Check ``can_split_heads`` first."""
    return _SplitHeads.apply(x, bias, grid_index, real_index, int(rows), int(width), int(heads))


class _MergeHeads(torch.autograd.Function):
    @staticmethod
    def forward(ctx, out: Tensor, grid_index: Tensor | None, real_index: Tensor | None, tokens: int, width: int,
                heads: int):
        lib = kernels()
        out = out.contiguous()
        d = out.shape[2]
        y = out.new_empty(tokens, heads * d)
        lib.merge_heads(out.data_ptr(), out.element_size(), _ptr(real_index), y.data_ptr(), tokens, width, heads, d,
                        _threads())
        ctx.save_for_backward(grid_index, real_index)
        ctx.layout = (out.shape, width, heads, d, out.dtype)
        return y

    @staticmethod
    def backward(ctx, dy: Tensor):
        lib = kernels()
        grid_index, real_index = ctx.saved_tensors
        shape, width, heads, d, dtype = ctx.layout
        dy = dy.to(dtype).contiguous()
        dout = dy.new_empty(shape)
        cells = shape[0] // heads * width
        lib.merge_heads_bwd(dy.data_ptr(), dy.element_size(), _ptr(grid_index), _ptr(real_index), dout.data_ptr(),
                            cells, width, heads, d, _threads())
        return dout, None, None, None, None, None


def merge_heads(out: Tensor, grid_index: Tensor | None, real_index: Tensor | None, tokens: int, width: int,
                heads: int) -> Tensor:
    """Attention output (rows * heads, width, d) -> (tokens, heads * d), each token from its real cell (the
    inverse of ``split_heads``); in backward pad cells get zero gradient. Check ``can_split_heads`` first."""
    return _MergeHeads.apply(out, grid_index, real_index, int(tokens), int(width), int(heads))


def can_clip(grads: list[Tensor]) -> bool:
    """Whether ``sum_squares`` / ``scale`` cover these gradients: dense, contiguous float32 on CPU."""
    return kernels() is not None and all(
        g.device.type == "cpu" and g.dtype == torch.float32 and g.layout == torch.strided and g.is_contiguous()
        for g in grads)


def _tables(grads: list[Tensor]):
    n = len(grads)
    ptrs = (ctypes.c_void_p * n)(*[g.data_ptr() for g in grads])
    lens = (ctypes.c_int64 * n)(*[g.numel() for g in grads])
    chunks = kernels().grad_chunks(lens, n)
    return ptrs, lens, n, (ctypes.c_int64 * (2 * chunks))(), chunks


def sum_squares(grads: list[Tensor]) -> float:
    """The sum of squares of all values of ``grads`` in one pass over all of them on torch's threads (float32
    within chunks of 16,384 values, float64 across them, in a fixed order); check ``can_clip`` first.
    Gradient clipping's ``get_total_norm`` runs one norm kernel per tensor (~100 dispatches per step)."""
    ptrs, lens, n, where, chunks = _tables(grads)
    return kernels().sum_squares(ptrs, lens, n, where, (ctypes.c_double * max(chunks, 1))(), _threads())


def scale(grads: list[Tensor], coef: float) -> None:
    """Multiply all ``grads`` by ``coef`` in place, in one pass; check ``can_clip`` first."""
    ptrs, lens, n, where, _ = _tables(grads)
    kernels().scale_all(ptrs, lens, n, where, coef, _threads())



def can_train_sequences(x: Tensor, heads: int, longest: int) -> bool:
    """Whether ``sequence_attention_train`` covers a forward over these (tokens, H) CPU rows: sequences of up to
    256 tokens, heads of up to 128 values."""
    d = x.shape[-1] // heads
    return (kernels() is not None and x.device.type == "cpu" and x.dim() == 2 and d * heads == x.shape[-1]
            and d <= SEQUENCE_ATTENTION_DIM and 0 < longest <= SEQUENCE_ATTENTION_MAX)


def _check_scratch(status: int, name: str) -> None:
    if status:
        raise MemoryError(f"{name}: could not allocate its scratch memory")


class _SequenceAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv: Tensor, bias: Tensor | None, segments: Tensor, prob_off: Tensor | None, probs_size: int,
                heads: int, scale: float, p: float, training: bool):
        lib = kernels()
        qkv = qkv.contiguous()
        bias = None if bias is None else bias.contiguous()
        seed, dscale, levels = _drop(p, training)
        hidden = qkv.shape[1] // 3
        out = qkv.new_empty(qkv.shape[0], hidden)
        lse = torch.empty(qkv.shape[0], heads)
        probs = torch.empty(probs_size) if prob_off is not None else None
        is_bf16 = int(qkv.dtype == torch.bfloat16)
        status = lib.seq_attention_fwd(qkv.data_ptr(), is_bf16, _ptr(bias), out.data_ptr(), lse.data_ptr(),
                                       _ptr(probs), _ptr(prob_off), segments[0].data_ptr(), segments[1].data_ptr(),
                                       segments.shape[1], hidden, heads, scale, seed, levels, dscale, _threads())
        _check_scratch(status, "sequence_attention_train")
        ctx.save_for_backward(qkv, bias, lse, probs, prob_off, segments)
        ctx.meta = (heads, scale, seed, levels, dscale)
        return out

    @staticmethod
    def backward(ctx, dout: Tensor):
        lib = kernels()
        qkv, bias, lse, probs, prob_off, segments = ctx.saved_tensors
        heads, scale, seed, levels, dscale = ctx.meta
        dout = dout.to(qkv.dtype).contiguous()
        dqkv = torch.empty_like(qkv)
        status = lib.seq_attention_bwd(qkv.data_ptr(), int(qkv.dtype == torch.bfloat16), _ptr(bias),
                                       dout.data_ptr(), lse.data_ptr(), _ptr(probs), _ptr(prob_off), dqkv.data_ptr(),
                                       segments[0].data_ptr(), segments[1].data_ptr(), segments.shape[1],
                                       dout.shape[1], heads, scale, seed, levels, dscale, _threads())
        _check_scratch(status, "sequence_attention_train backward")
        dbias = None
        if bias is not None and ctx.needs_input_grad[1]:  # torch's sum over rows of bf16 cost 0.3 ms per layer
            dbias = torch.empty(dqkv.shape[1])
            lib.column_sums(dqkv.data_ptr(), int(dqkv.dtype == torch.bfloat16), dqkv.shape[0], dqkv.shape[1],
                            dbias.data_ptr(), _threads())
        return dqkv, dbias, None, None, None, None, None, None, None


def sequence_attention_train(qkv: Tensor, segments: Tensor, heads: int, scale: float, p: float, training: bool,
                             bias: Tensor | None = None, keep_probs: bool | None = None) -> Tensor:
    """Attention inside each sequence with dropout, differentiable: (rows, 3H) float32 or bf16 fused q/k/v rows
    (plus ``bias``, float32 (3H,), when their matmul ran without it) -> (rows, H) in their dtype. ``segments`` as
    for ``sequence_attention``. The probabilities are kept for backward (float32, heads x len x len per sequence)
    while they take no more bytes than the qkv rows themselves, i.e. for short sequences (with 12 heads of 32:
    up to ~96 tokens in float32, ~48 in bf16); past that only each softmax row's log normaliser is kept and
    backward recomputes them (one more small matmul: 0.4 ms of a 2.6 ms layer on SNLI-length texts). The dropout mask of (token row, head, key) is a
    hash of the seed (one draw of torch's generator per call), recomputed in backward."""
    lengths = segments[1].clamp(min=0)
    sizes = heads * lengths * lengths
    size = int(sizes.sum())
    save = 4 * size <= qkv.numel() * qkv.element_size() if keep_probs is None else keep_probs  # forced in tests
    prob_off = (torch.cumsum(sizes, 0) - sizes).contiguous() if save else None
    return _SequenceAttention.apply(qkv, bias, segments, prob_off, size if save else 0, heads, float(scale), float(p),
                                    bool(training))
