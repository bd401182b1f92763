"""check_finite_model / all_finite: exact answers, including sums that overflow while every element is finite."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from embtune.errors import EmbtuneError
from embtune.training import guards


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_all_finite_finds_one_bad_element(dtype):
    x = torch.randn(3000, 7).to(dtype)
    assert guards.all_finite(x)
    for bad in (float("nan"), float("inf"), float("-inf")):
        y = x.clone()
        y[2999, 6] = bad
        assert not guards.all_finite(y)


def test_all_finite_when_the_sum_overflows(monkeypatch):
    monkeypatch.setattr(guards, "FINITE_CHUNK", 3)  # the exact check runs over several slices
    big = torch.full((10,), 3e38)
    assert not torch.isfinite(big.sum())  # the fast test alone would say "not finite"
    assert guards.all_finite(big)
    big[7] = float("nan")
    assert not guards.all_finite(big)
    half = torch.full((10,), 60000.0, dtype=torch.float16)  # fp16 sums overflow at 65504
    assert guards.all_finite(half)


def test_check_finite_model_names_the_weight(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
    guards.check_finite_model(model, tmp_path)
    with torch.no_grad():
        model[1].weight[2] = float("inf")
    with pytest.raises(EmbtuneError, match=r"weight '1.weight' holds inf or NaN"):
        guards.check_finite_model(model, tmp_path)
