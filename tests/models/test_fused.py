"""The fused training kernels (models/fused.py) against eager torch, with and without dropout."""

from __future__ import annotations

import logging

import pytest
import torch

from embtune.models import fused

pytestmark = pytest.mark.skipif(fused.kernels() is None, reason="no C compiler: the kernels cannot be built")

LEVELS = 1 << 16


@pytest.fixture(params=["native", "generic"])
def kernels(request, monkeypatch):
    """Each kernel test runs on the library built for this CPU and on the portable C loops (what CPUs without
    AVX-512 run)."""
    if request.param == "generic":
        monkeypatch.setattr(fused, "_lib", fused.load(fused._build(fused._compiler(), ("-DEMBTUNE_GENERIC",))))
    return request.param


def _norm(width: int) -> torch.nn.LayerNorm:
    norm = torch.nn.LayerNorm(width, eps=1e-12)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.3, 0.3)
    return norm


def _grads(out, inputs, grad):
    return torch.autograd.grad(out, inputs, grad)


@pytest.mark.parametrize("width", [40, 384])  # 40: vector tails
def test_residual_norm_equals_eager_without_dropout(width, kernels):
    torch.manual_seed(0)
    norm = _norm(width)
    h = torch.randn(37, width, requires_grad=True)
    x = torch.randn(37, width, requires_grad=True)
    h_bias = torch.randn(width, requires_grad=True)
    grad = torch.randn(37, width)
    params = [h, x, norm.weight, norm.bias, h_bias]
    eager = norm(h + h_bias + x)
    ours = fused.residual_norm(h, x, norm, 0.1, training=False, bias=h_bias)  # not training: no dropout
    torch.testing.assert_close(ours, eager, rtol=0, atol=2e-6)
    for a, b in zip(_grads(ours, params, grad), _grads(eager, params, grad), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_residual_norm_dropout_is_the_eager_math_on_its_mask(kernels):
    torch.manual_seed(1)
    rows, width, p = 300, 384, 0.1
    norm = _norm(width)
    scale = LEVELS / (LEVELS - round(p * LEVELS))
    # h = 1, x = 0: a kept element of a row becomes its row's maximum, a dropped one its minimum
    probe = fused.residual_norm(torch.ones(rows, width), torch.zeros(rows, width), torch.nn.LayerNorm(width), p, True)
    torch.manual_seed(2)
    h = torch.randn(rows, width, requires_grad=True)
    x = torch.randn(rows, width, requires_grad=True)
    grad = torch.randn(rows, width)
    torch.manual_seed(7)
    kept = fused.residual_norm(torch.ones(rows, width), torch.zeros(rows, width), torch.nn.LayerNorm(width), p, True) > 0
    h_bias = torch.randn(width, requires_grad=True)
    torch.manual_seed(7)
    ours = fused.residual_norm(h, x, norm, p, True, bias=h_bias)
    eager = norm((h + h_bias) * kept * scale + x)
    torch.testing.assert_close(ours, eager, rtol=0, atol=1e-5)
    params = [h, x, norm.weight, norm.bias, h_bias]
    for a, b in zip(_grads(ours, params, grad), _grads(eager, params, grad), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    dropped = 1 - kept.float().mean().item()
    assert abs(dropped - p) < 0.005  # 115,200 draws: the standard error is 0.0009
    assert not torch.equal(probe > 0, kept)  # another seed, another mask


def test_residual_norm_bf16_input_gives_bf16_gradient(kernels):
    torch.manual_seed(3)
    norm = _norm(64)
    h = torch.randn(20, 64).bfloat16().requires_grad_()
    x = torch.randn(20, 64, requires_grad=True)
    ours = fused.residual_norm(h, x, norm, 0.0, True)
    eager = norm(h.float() + x)
    torch.testing.assert_close(ours, eager, rtol=0, atol=2e-6)
    weights = torch.linspace(-1, 1, 64)
    dh, dx = torch.autograd.grad((ours * weights).sum(), [h, x])
    (rx,) = torch.autograd.grad((eager * weights).sum(), [x])
    assert dh.dtype == torch.bfloat16 and dx.dtype == torch.float32
    torch.testing.assert_close(dx, rx, rtol=1e-5, atol=1e-5)
    assert torch.equal(dh, dx.bfloat16())  # without dropout, dh is dx rounded once


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("width", [64, 23])
def test_softmax_dropout_equals_eager_without_dropout(packed, width, kernels):
    torch.manual_seed(4)
    groups, heads = 3, 4
    scores = torch.randn(groups, heads, width, width, requires_grad=True)
    allowed = torch.rand(groups, 1, width if packed else 1, width) > 0.3
    allowed[..., 0] = True
    bias = torch.zeros(allowed.shape).masked_fill_(~allowed, torch.finfo(torch.float32).min)
    grad = torch.randn(groups, heads, width, width)
    eager = torch.softmax(scores * 0.125 + bias, -1)
    ours = fused.softmax_dropout(scores, bias, 0.125, 0.1, training=False)
    torch.testing.assert_close(ours, eager, rtol=0, atol=1e-6)
    assert torch.equal(ours == 0, ~allowed.expand_as(ours))  # masked keys get exactly 0
    (ours_grad,) = _grads(ours, [scores], grad)
    (eager_grad,) = _grads(eager, [scores], grad)
    torch.testing.assert_close(ours_grad, eager_grad, rtol=1e-5, atol=1e-6)


def test_softmax_dropout_is_the_eager_math_on_its_mask(kernels):
    torch.manual_seed(5)
    p = 0.25
    scale = LEVELS / (LEVELS - round(p * LEVELS))
    scores = torch.randn(4, 6, 32, 32, requires_grad=True)
    grad = torch.randn(4, 6, 32, 32)
    torch.manual_seed(9)
    ours = fused.softmax_dropout(scores, None, 0.2, p, True)
    kept = ours != 0  # every probability is > 0 without a key mask
    eager = torch.softmax(scores * 0.2, -1) * kept * scale
    torch.testing.assert_close(ours, eager, rtol=1e-6, atol=1e-7)
    (ours_grad,) = _grads(ours, [scores], grad)
    (eager_grad,) = _grads(eager, [scores], grad)
    torch.testing.assert_close(ours_grad, eager_grad, rtol=1e-5, atol=1e-6)
    assert abs((1 - kept.float().mean().item()) - p) < 0.01
    torch.manual_seed(9)
    assert torch.equal(fused.softmax_dropout(scores, None, 0.2, p, True), ours)  # the seed decides the mask


def test_softmax_dropout_bf16_is_close_to_float32(kernels):
    torch.manual_seed(6)
    scores = torch.randn(2, 3, 16, 16)
    ours = fused.softmax_dropout(scores.bfloat16(), None, 0.5, 0.0, True)
    assert ours.dtype == torch.bfloat16
    torch.testing.assert_close(ours.float(), torch.softmax(scores.bfloat16().float() * 0.5, -1), rtol=8e-3, atol=1e-3)


def test_fast_encoder_training_step_uses_the_kernels_and_matches_eager(monkeypatch):
    from test_fast_encoder import _batch, _tiny

    from embtune.models.fast_weights import from_hf

    fast = from_hf(_tiny("bert"))
    features = _batch([7, 3, 12, 1, 40], 0)
    ids, mask = features["input_ids"], features["attention_mask"]
    fast.eval()  # dropout off: the fused and the eager step compute the same function
    calls = []
    original = fused.residual_norm
    monkeypatch.setattr(fused, "residual_norm", lambda *a, **k: calls.append(1) or original(*a, **k))

    def step():
        fast.zero_grad()
        out = fast(ids, mask)
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        return out.detach(), [p.grad.clone() for p in fast.parameters() if p.grad is not None]

    out, grads = step()
    assert calls  # the training forward went through the fused add + norm
    monkeypatch.setattr(fused, "_lib", None)  # as without a compiler: eager ops
    calls.clear()
    eager_out, eager_grads = step()
    assert not calls
    torch.testing.assert_close(out, eager_out, rtol=0, atol=1e-5)
    for a, b in zip(grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_without_a_compiler_the_kernels_are_off_and_say_so(monkeypatch, caplog):
    monkeypatch.setattr(fused, "_lib", None)
    monkeypatch.setattr(fused, "_tried", False)
    monkeypatch.setattr(fused, "_compiler", lambda: None)
    with caplog.at_level(logging.INFO, logger="embtune.models.fused"):
        assert fused.kernels() is None
    assert "no C compiler" in caplog.text
    assert not fused.can_fuse_residual_norm(torch.zeros(2, 4), torch.zeros(2, 4), torch.nn.LayerNorm(4), 0.1)


def test_switched_off_by_environment(monkeypatch):
    monkeypatch.setattr(fused, "_lib", None)
    monkeypatch.setattr(fused, "_tried", False)
    monkeypatch.setenv("EMBTUNE_FUSED_KERNELS", "0")
    assert fused.kernels() is None


def test_build_is_cached_per_source_and_written_atomically(monkeypatch, tmp_path):
    monkeypatch.setenv("EMBTUNE_CACHE", str(tmp_path))
    compiler = fused._compiler()
    first = fused._build(compiler)
    assert first.parent == tmp_path / "kernels" and first.exists()
    assert [p.name for p in first.parent.iterdir()] == [first.name]  # no temporary files left behind
    mtime = first.stat().st_mtime_ns
    assert fused._build(compiler) == first and first.stat().st_mtime_ns == mtime  # not rebuilt


def test_sum_squares_and_scale_over_many_tensors(kernels):
    torch.manual_seed(8)
    grads = [torch.randn(n) * s for n, s in ((384, 1.0), (40_000, 0.01), (0, 1.0), (16_384, 3.0), (1, 0.5))]
    grads.append(torch.randn(300, 70))
    expected = sum(float(g.double().pow(2).sum()) for g in grads)
    assert fused.can_clip(grads)
    assert fused.sum_squares(grads) == pytest.approx(expected, rel=1e-6)
    threads = torch.get_num_threads()
    try:
        results = set()
        for n in (1, 2):
            torch.set_num_threads(n)
            results.add(fused.sum_squares(grads))
    finally:
        torch.set_num_threads(threads)
    assert len(results) == 1  # partial sums are added in a fixed order
    twins = [g.clone() for g in grads]
    fused.scale(grads, 0.37)
    for g, t in zip(grads, twins, strict=True):
        assert torch.equal(g, t.mul_(0.37))
    assert not fused.can_clip([torch.zeros(4, 4).t()])  # not contiguous
    assert not fused.can_clip([torch.zeros(4, dtype=torch.bfloat16)])


@pytest.mark.parametrize("lengths", [[7, 3, 12, 1, 40], [9, 9, 9], [40, 35, 50, 33], [36, 36]],
                         ids=["packed+dense", "packed-full", "padded", "dense"])
@pytest.mark.parametrize("with_bias", [False, True])
def test_split_and_merge_heads_equal_the_grid_gather_and_its_gradient(lengths, with_bias, kernels):
    from embtune.models.fast_encoder import _Layout

    torch.manual_seed(10)
    heads, d = 2, 4
    mask = (torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]).long()
    layout = _Layout(mask)
    for group in layout.groups:
        n, t, tokens = group.rows, group.width, group.end - group.start
        rows = torch.randn(tokens, 3 * heads * d, requires_grad=True)
        qkv_bias = torch.randn(3 * heads * d, requires_grad=True) if with_bias else None
        inputs = [rows] if qkv_bias is None else [rows, qkv_bias]
        grads = [torch.randn(n * heads, t, d) for _ in range(3)]
        ours = fused.split_heads(rows, group.grid_index, group.real_index, n, t, heads, bias=qkv_bias)
        biased = rows if qkv_bias is None else rows + qkv_bias
        grid = group.to_grid(biased).view(n, t, 3, heads, d).permute(2, 0, 3, 1, 4)
        eager = [g.reshape(n * heads, t, d) for g in grid.unbind(0)]
        for a, b in zip(ours, eager, strict=True):
            assert torch.equal(a, b)
        d_ours = torch.autograd.grad(ours, inputs, grads)
        if group.real_index is not None:  # pad cells repeat a real token; only the real cells' gradient counts
            real = torch.zeros(n * t, dtype=torch.bool)
            real[group.real_index] = True
            grads = [(g.view(n, heads, t, d) * real.view(n, 1, t, 1)).reshape(n * heads, t, d) for g in grads]
        d_eager = torch.autograd.grad(eager, inputs, grads)
        assert torch.equal(d_ours[0], d_eager[0])
        if qkv_bias is not None:  # summed in another order
            torch.testing.assert_close(d_ours[1], d_eager[1], rtol=1e-5, atol=1e-5)

        out = torch.randn(n * heads, t, d, requires_grad=True)
        dy = torch.randn(tokens, heads * d)
        merged = fused.merge_heads(out, group.grid_index, group.real_index, tokens, t, heads)
        expected = group.from_grid(out.view(n, heads, t, d).transpose(1, 2).reshape(n * t, heads * d))
        assert torch.equal(merged, expected)
        (d_merged,) = torch.autograd.grad(merged, [out], dy)
        (d_expected,) = torch.autograd.grad(expected, [out], dy)
        assert torch.equal(d_merged, d_expected)  # pad cells: exactly zero


def test_split_heads_bf16_keeps_the_dtype(kernels):
    rows = torch.randn(6, 3 * 2 * 4).bfloat16()
    q, k, v = fused.split_heads(rows, None, None, 2, 3, 2)
    assert q.dtype == torch.bfloat16 and q.shape == (4, 3, 4)
    assert torch.equal(v[1 * 2 + 1, 2], rows[5, 2 * 8 + 4:2 * 8 + 8])  # row 1, head 1, slot 2: token 5's v head 1


def test_an_unwritable_cache_turns_the_kernels_off_with_one_message(monkeypatch, tmp_path, caplog):
    cache = tmp_path / "cache"
    cache.write_text("a file where the cache folder should be")
    monkeypatch.setenv("EMBTUNE_CACHE", str(cache))
    monkeypatch.setattr(fused, "_lib", None)
    monkeypatch.setattr(fused, "_tried", False)
    with caplog.at_level(logging.INFO, logger="embtune.models.fused"):
        assert fused.kernels() is None
        assert fused.kernels() is None  # decided once
    assert caplog.text.count("fused training kernels unavailable") == 1


def test_attention_dropout_of_one_drops_everything_as_nn_dropout():
    from test_fast_encoder import _batch, _tiny

    from embtune.models.fast_weights import from_hf

    fast = from_hf(_tiny("bert")).train()
    for layer in fast.layers:
        layer.attention_dropout = 1.0  # every attention weight dropped: the kernels' levels cannot express it
    features = _batch([7, 3, 12], 0)
    out = fast(features["input_ids"], features["attention_mask"])
    out.sum().backward()
    assert torch.isfinite(out).all()


def _segments(lengths: list[int], gaps: list[int]) -> tuple[torch.Tensor, int]:
    """(2, S) segment table: each sequence, then a run of rows that hold none (negative length) when gap > 0."""
    starts, lens, row = [], [], 0
    for length, gap in zip(lengths, gaps, strict=True):
        starts.append(row), lens.append(length)
        row += length
        if gap:
            starts.append(row), lens.append(-gap)
            row += gap
    return torch.tensor([starts, lens], dtype=torch.int64), row


@pytest.mark.parametrize("d", [32, 64, 128])
def test_sequence_attention_equals_float32_attention_inside_each_sequence(d, kernels):
    heads = 2
    hidden = heads * d
    lengths = [1, 2, 15, 16, 17, 31, 33, 64, 100, 256]
    gaps = [0, 3, 0, 0, 1, 0, 0, 2, 0, 5]  # rows that hold no sequence (e.g. spare rows) come out as zeros
    segments, rows = _segments(lengths, gaps)
    torch.manual_seed(0)
    qkv = (torch.randn(rows, 3 * hidden) * 2).bfloat16()
    with torch.inference_mode():
        out = fused.sequence_attention(qkv, segments, heads, d ** -0.5)
    assert out.dtype == torch.bfloat16 and out.shape == (rows, hidden)
    q, k, v = qkv.float().view(rows, 3, heads, d).unbind(1)
    ref = torch.zeros(rows, hidden)
    for start, length in segments.t().tolist():
        if length > 0:
            qs, ks, vs = (t[start:start + length].transpose(0, 1) for t in (q, k, v))
            ref[start:start + length] = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs).transpose(
                0, 1).reshape(length, hidden)
        else:
            assert torch.equal(out[start:start - length], torch.zeros(-length, hidden, dtype=torch.bfloat16))
    # float32 scores, softmax and value sums: only the output's bf16 rounding (2^-9 relative) remains
    assert float((out.float() - ref).abs().max()) <= 2 ** -8 * float(ref.abs().max())
    torch.testing.assert_close(out.float(), ref, rtol=2 ** -7, atol=1e-3)
    with torch.inference_mode():  # float32 output (the int8 model's): the same sums, not rounded
        out32 = fused.sequence_attention(qkv, segments, heads, d ** -0.5, out_dtype=torch.float32)
    assert out32.dtype == torch.float32 and torch.equal(out32.bfloat16(), out)
    torch.testing.assert_close(out32, ref, rtol=1e-5, atol=3e-5)  # the kernel's exp (2e-7), 256-term sums


def test_sequence_attention_is_used_only_where_it_is_faster_and_exact(kernels):
    x = torch.zeros(10, 64, dtype=torch.bfloat16)
    with torch.inference_mode():
        native = kernels == "native" and bool(fused.kernels().sequence_attention_native())
        assert fused.can_attend_sequences(x, 2, 256) is native  # the portable loops are slower than torch's
        assert not fused.can_attend_sequences(x, 2, 257)  # longer sequences: torch's fused attention
        assert not fused.can_attend_sequences(x, 4, 10)  # heads of 16 values
        assert not fused.can_attend_sequences(x.float(), 2, 10)
    assert not fused.can_attend_sequences(x, 2, 10)  # autograd on: the kernel has no backward


def _eager_sequence_attention(qkv, bias, segments, heads, scale, masks=None):
    """Attention per sequence as eager torch ops (float32); ``masks``: per segment (heads, L, L) dropout factors."""
    rows, width = qkv.shape
    hidden = width // 3
    d = hidden // heads
    x = qkv.float() + (0 if bias is None else bias)
    parts = []
    for index, (start, length) in enumerate(segments.t().tolist()):
        if length <= 0:
            parts.append(x.new_zeros(-length, hidden))
            continue
        q, k, v = x[start:start + length].view(length, 3, heads, d).permute(1, 2, 0, 3)  # (heads, L, d) each
        probs = torch.softmax(scale * q @ k.transpose(1, 2), -1)
        if masks is not None:
            probs = probs * masks[index]
        parts.append((probs @ v).transpose(0, 1).reshape(length, hidden))
    return torch.cat(parts)


@pytest.mark.parametrize("d", [24, 32, 64])  # 24: not a multiple of 16, the plain loops on every build
@pytest.mark.parametrize("keep_probs", [True, False], ids=["saved", "recomputed"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_sequence_attention_train_equals_eager_attention_and_its_gradients(dtype, keep_probs, d, kernels):
    heads = 3
    lengths, gaps = [1, 5, 16, 17, 40, 3], [0, 2, 0, 0, 0, 4]
    segments, rows = _segments(lengths, gaps)
    torch.manual_seed(0)
    qkv = (torch.randn(rows, 3 * heads * d) * 1.5).to(dtype).requires_grad_()
    bias = (torch.randn(3 * heads * d) * 0.2).requires_grad_()
    grad = torch.randn(rows, heads * d)
    out = fused.sequence_attention_train(qkv, segments, heads, d ** -0.5, 0.0, True, bias=bias, keep_probs=keep_probs)
    assert out.dtype == dtype
    dq, db = torch.autograd.grad(out, (qkv, bias), grad.to(dtype))
    ref = _eager_sequence_attention(qkv, bias, segments, heads, d ** -0.5)
    rq, rb = torch.autograd.grad(ref, (qkv, bias), grad)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 2e-2, "atol": 2e-2}
    torch.testing.assert_close(out.float(), ref, **tol)
    torch.testing.assert_close(dq.float(), rq.float(), **tol)
    if dtype == torch.float32:
        torch.testing.assert_close(db, rb, rtol=1e-4, atol=1e-4)
    else:  # summed from bf16-rounded row gradients (the key bias's true gradient is 0: softmax ignores it)
        assert float((db - rb).abs().max()) <= 1e-2 * float(rb.abs().max())
    spare = [s for s, n in segments.t().tolist() if n < 0]
    assert all(float(out.detach()[s].abs().sum()) == 0 and float(dq[s].abs().sum()) == 0 for s in spare)


@pytest.mark.parametrize("keep_probs", [True, False], ids=["saved", "recomputed"])
def test_sequence_attention_train_dropout_is_the_eager_math_on_its_mask(keep_probs, kernels):
    """Recover the kernel's dropout mask (zero q and k: uniform probabilities; one-hot values), then check
    forward and backward against eager ops with that mask and the same seed."""
    heads, d, p = 2, 32, 0.25
    lengths = [5, 9, 20]
    segments, rows = _segments(lengths, [0] * 3)
    hidden = heads * d
    probe = torch.zeros(rows, 3 * hidden)
    for start, length in segments.t().tolist():
        for j in range(length):
            for h in range(heads):
                probe[start + j, 2 * hidden + h * d + j] = 1.0  # v_j = e_j in every head
    torch.manual_seed(5)
    seen = fused.sequence_attention_train(probe, segments, heads, d ** -0.5, p, True)
    masks = []
    for start, length in segments.t().tolist():
        block = seen[start:start + length].view(length, heads, d).permute(1, 0, 2)[:, :, :length]
        masks.append(block * length)  # (heads, L, L): 0 or 1 / (1 - p)
        kept_or_not = torch.isclose(masks[-1], torch.tensor(1 / (1 - p)), rtol=1e-5) | (masks[-1] == 0)
        assert bool(kept_or_not.all())
    kept = torch.cat([m.flatten() for m in masks]).ne(0).float().mean()
    assert 0.6 < float(kept) < 0.9
    torch.manual_seed(1)
    qkv = torch.randn(rows, 3 * hidden).requires_grad_()
    grad = torch.randn(rows, hidden)
    torch.manual_seed(5)  # the same seed draw: the same masks
    out = fused.sequence_attention_train(qkv, segments, heads, d ** -0.5, p, True, keep_probs=keep_probs)
    (dq,) = torch.autograd.grad(out, qkv, grad)
    ref = _eager_sequence_attention(qkv, None, segments, heads, d ** -0.5, masks)
    (rq,) = torch.autograd.grad(ref, qkv, grad)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(dq, rq, rtol=1e-5, atol=1e-5)


# ---- int8 inference kernels (models/int8.py: layer_forward) ----

def _quantized(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The per-row int8 quantization as torch ops: round(v * 127 / amax) and amax / 127."""
    amax = v.abs().amax(1).clamp(min=1e-12)
    return torch.round(v * (127.0 / amax)[:, None]), amax / 127.0


@pytest.mark.parametrize("zero_point", [0, 128])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_quantize_rows_is_round_to_127_levels_per_row(dtype, zero_point, kernels):
    torch.manual_seed(0)
    x = (torch.randn(37, 40) * torch.rand(37, 1) * 5).to(dtype)  # 40: vector tails
    x[3] = 0  # an all-zero row quantizes to zeros
    q, scale = fused.quantize_rows(x, zero_point)
    ref_q, ref_scale = _quantized(x.float())
    assert q.dtype == (torch.uint8 if zero_point else torch.int8) and q.shape == x.shape
    assert torch.equal(q.to(torch.int32) - zero_point, ref_q.to(torch.int32))
    assert int(ref_q.abs().max()) == 127 and not bool(q[3].to(torch.int32).sub(zero_point).any())
    torch.testing.assert_close(scale, ref_scale, rtol=1e-6, atol=0)


@pytest.mark.parametrize("act,cols", [("gelu", 72), ("gelu_tanh", 72), ("relu", 72), ("relu", 4104)])
def test_bias_act_quantize_is_the_quantized_activation(act, cols, kernels):
    # 4104: rows wider than the kernel's row buffer are worked on in place
    torch.manual_seed(0)
    y, row_scale, bias = torch.randn(33, cols) * 3, torch.rand(33) + 0.5, torch.randn(cols)
    code = fused.INT8_ACTIVATIONS[{"gelu": ("gelu", "none"), "gelu_tanh": ("gelu", "tanh"), "relu": ("relu", "")}[act]]
    q, scale = fused.bias_act_quantize(y.clone(), row_scale, bias, code, 128)
    v = y * row_scale[:, None] + bias
    a = {"gelu": torch.nn.functional.gelu(v), "gelu_tanh": torch.nn.functional.gelu(v, approximate="tanh"),
         "relu": torch.relu(v)}[act]
    ref_q, ref_scale = _quantized(a)
    torch.testing.assert_close(scale, ref_scale, rtol=1e-5, atol=0)
    levels = q.to(torch.int32) - 128
    if act == "relu":  # exact arithmetic: the same levels
        assert torch.equal(levels, ref_q.to(torch.int32))
    else:  # erf / tanh approximations (~1e-7): a value on a rounding boundary may land one level off
        assert int((levels - ref_q.to(torch.int32)).abs().max()) <= 1
        assert float((levels.float() * scale[:, None] - a).abs().max()) <= 0.5 * float(scale.max()) + 1e-5


def test_residual_norm_quantize_is_layer_norm_of_the_scaled_sums(kernels):
    torch.manual_seed(0)
    rows, width = 29, 40
    y, row_scale, bias, x = torch.randn(rows, width), torch.rand(rows) + 0.5, torch.randn(width), torch.randn(rows, width)
    norm = _norm(width)
    with torch.no_grad():
        ref = norm(y * row_scale[:, None] + bias + x)
    out, out16, q, scale = fused.residual_norm_quantize(y, row_scale, bias, x, norm, 128, bf16_copy=True)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(out16, out.bfloat16())
    ref_q, ref_scale = _quantized(out)
    assert torch.equal(q.to(torch.int32) - 128, ref_q.to(torch.int32)) and torch.equal(scale, ref_scale)
    plain = fused.residual_norm_quantize(y, row_scale, bias, x, norm, 0, quantize=False)
    assert torch.equal(plain[0], out) and plain[1:] == (None, None, None)
