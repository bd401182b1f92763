"""embtune's cheap-mask dropout behaves like nn.Dropout: keep rate, scale, gradient, seeding, eval."""

import pytest
import torch

from embtune.models.dropout import Dropout, dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.3, 0.5])
def test_keep_rate_and_scale_preserve_the_expectation(p):
    torch.manual_seed(0)
    keep, scale = keep_mask((1000, 1000), p)
    rate = keep.float().mean().item()
    assert abs(rate - (1 - p)) < 0.002  # 1e6 draws: 4 standard deviations is < 0.002
    assert abs(scale - 1 / (1 - p)) < 1e-4
    y = dropout(torch.ones(1000, 1000), p)
    assert abs(y.mean().item() - 1.0) < 0.005
    values = torch.unique(y)
    assert len(values) == 2 and values[0] == 0.0 and values[1].item() == pytest.approx(scale)


def test_every_16_bit_slice_of_the_random_words_is_used():
    torch.manual_seed(1)
    keep, _ = keep_mask((4, 100_000), 0.5)  # rows 0..3 come from the 4 int16 lanes of the same words
    lanes = keep.view(-1)[: 4 * (keep.numel() // 4)].view(-1, 4).float().mean(0)
    assert torch.all((lanes - 0.5).abs() < 0.01), lanes


def test_odd_sizes_and_dtypes_keep_shape_and_dtype():
    x = torch.randn(3, 5, 7, dtype=torch.bfloat16, requires_grad=True)
    y = dropout(x, 0.2)
    assert y.shape == x.shape and y.dtype == torch.bfloat16


def test_gradient_uses_the_forward_mask_and_scale():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    y = dropout(x, 0.25)
    y.sum().backward()
    kept = y != 0
    expected = kept.float() * (y[kept] / x[kept]).mean()
    assert torch.allclose(x.grad, expected, atol=1e-6)
    assert torch.allclose(y[kept] / x[kept], torch.full_like(y[kept], 1 / 0.75), atol=1e-4)


def test_seeded_masks_repeat_and_differ_between_seeds():
    torch.manual_seed(3)
    a, _ = keep_mask((256,), 0.5)
    torch.manual_seed(3)
    b, _ = keep_mask((256,), 0.5)
    torch.manual_seed(4)
    c, _ = keep_mask((256,), 0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_module_is_identity_in_eval_and_for_p0_and_zero_for_p1():
    x = torch.randn(10, 10)
    module = Dropout(0.5).eval()
    assert torch.equal(module(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    assert torch.count_nonzero(Dropout(1.0).train()(x)) == 0
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


def test_masks_follow_torchs_generator_state_and_advance_it():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    a, _ = keep_mask((1000,), 0.5)
    b, _ = keep_mask((1000,), 0.5)
    assert not torch.equal(a, b)  # each mask draws from the generator
    torch.set_rng_state(state)  # what exact resume and gradient checkpointing do
    assert torch.equal(keep_mask((1000,), 0.5)[0], a)
    assert torch.equal(keep_mask((1000,), 0.5)[0], b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_applied_mask_equals_a_boolean_multiply(dtype):
    torch.manual_seed(6)
    x = torch.randn(300, 7).to(dtype).requires_grad_()
    state = torch.get_rng_state()
    y = dropout(x, 0.1)
    torch.set_rng_state(state)
    keep, scale = keep_mask(x.shape, 0.1)
    assert torch.equal(y, torch.where(keep, x * scale, torch.zeros((), dtype=dtype)))
    y.backward(torch.ones_like(y))
    assert torch.equal(x.grad, torch.where(keep, torch.full_like(x, scale), torch.zeros((), dtype=dtype)))
