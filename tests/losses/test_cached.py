"""CachedMultipleNegativesRankingLoss gives MNRL's loss and parameter gradients, with dropout on."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from embtune.losses import CachedMultipleNegativesRankingLoss, ModelLoss, MultipleNegativesRankingLoss

VOCAB, DIM = 50, 12


class TinyEncoder(nn.Module):
    """Token embeddings -> dropout -> masked mean -> linear: enough to exercise GradCache."""

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, DIM)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(DIM, DIM)

    def forward(self, features: dict[str, Tensor]) -> Tensor:  # (b, T) ids -> (b, DIM)
        hidden = self.dropout(self.tokens(features["input_ids"]))
        mask = features["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return self.proj((hidden * mask).sum(1) / mask.sum(1))


def make_features(roles: list[str], batch: int, seed: int = 0) -> dict[str, dict[str, Tensor]]:
    g = torch.Generator().manual_seed(seed)
    features = {}
    for role in roles:
        ids = torch.randint(0, VOCAB, (batch, 7), generator=g)
        mask = torch.ones(batch, 7, dtype=torch.long)
        mask[:, 5:] = torch.randint(0, 2, (batch, 2), generator=g)
        features[role] = {"input_ids": ids, "attention_mask": mask}
    return features


def reference(model: TinyEncoder, features: dict, mini_batch_size: int, loss_scale: float = 1.0) -> Tensor:
    """Plain MNRL with the encoder run mini-batch by mini-batch in the same order (same dropout draws)."""
    embeddings = {}
    for role, f in features.items():
        batch = f["input_ids"].shape[0]
        chunks = [
            model({k: v[b : b + mini_batch_size] for k, v in f.items()})
            for b in range(0, batch, mini_batch_size)
        ]
        embeddings[role] = torch.cat(chunks)
    loss = MultipleNegativesRankingLoss()(embeddings)
    (loss * loss_scale).backward()
    return loss.detach()


def grads(model: nn.Module) -> dict[str, Tensor]:
    return {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize(
    ("batch", "mini_batch_size", "n_negatives"), [(10, 3, 0), (8, 4, 1), (9, 2, 3), (6, 32, 1)]
)
def test_cached_equals_mnrl_in_loss_and_parameter_grads(
    batch: int, mini_batch_size: int, n_negatives: int
) -> None:
    roles = ["anchor", "positive"] + [f"negative_{i}" for i in range(1, n_negatives + 1)]
    features = make_features(roles, batch)
    torch.manual_seed(0)
    model = TinyEncoder().train()

    torch.manual_seed(123)
    expected = reference(model, features, mini_batch_size)
    expected_grads = grads(model)
    model.zero_grad()

    torch.manual_seed(123)
    loss = CachedMultipleNegativesRankingLoss(mini_batch_size=mini_batch_size)
    value = loss.forward_backward(model, features, None)

    assert not value.requires_grad
    torch.testing.assert_close(value, expected, atol=1e-5, rtol=1e-5)
    for name, g in grads(model).items():
        torch.testing.assert_close(g, expected_grads[name], atol=1e-5, rtol=1e-5, msg=name)


def test_dropout_really_changes_embeddings() -> None:
    """Guards the test above: without RNG replay the second pass would draw other dropout masks."""
    model = TinyEncoder().train()
    f = make_features(["anchor"], 4)["anchor"]
    assert not torch.allclose(model(f), model(f))


def test_loss_scale_scales_gradients_not_value() -> None:
    features = make_features(["anchor", "positive"], 6)
    model = TinyEncoder(dropout=0.0)
    loss = CachedMultipleNegativesRankingLoss(mini_batch_size=4)
    full = loss.forward_backward(model, features, None)
    full_grads = grads(model)
    model.zero_grad()
    half = loss.forward_backward(model, features, None, loss_scale=0.5)
    torch.testing.assert_close(half, full)
    for name, g in grads(model).items():
        torch.testing.assert_close(g, full_grads[name] * 0.5, atol=1e-6, rtol=1e-5)


def test_call_on_embeddings_equals_mnrl_and_no_grad_skips_backward() -> None:
    g = torch.Generator().manual_seed(0)
    embeddings = {"anchor": torch.randn(5, 8, generator=g), "positive": torch.randn(5, 8, generator=g)}
    cached = CachedMultipleNegativesRankingLoss(scale=10.0, mini_batch_size=2)
    torch.testing.assert_close(cached(embeddings, None), MultipleNegativesRankingLoss(scale=10.0)(embeddings))

    model = TinyEncoder(dropout=0.0)
    features = make_features(["anchor", "positive"], 5)
    with torch.no_grad():
        value = cached.forward_backward(model, features, None)
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        plain = MultipleNegativesRankingLoss(scale=10.0)({r: model(f) for r, f in features.items()})
    torch.testing.assert_close(value, plain)


def test_cached_follows_model_loss_protocol_and_plain_losses_do_not() -> None:
    assert isinstance(CachedMultipleNegativesRankingLoss(), ModelLoss)
    assert not isinstance(MultipleNegativesRankingLoss(), ModelLoss)
    assert CachedMultipleNegativesRankingLoss(mini_batch_size=8).config() == {
        "scale": 20.0,
        "similarity_fct": "cos_sim",
        "mini_batch_size": 8,
    }


def test_rng_outside_forward_backward_is_not_rewound() -> None:
    """Replaying saved RNG states must not leave the global generator at an old state."""
    model = TinyEncoder()
    features = make_features(["anchor", "positive"], 6)
    torch.manual_seed(5)
    CachedMultipleNegativesRankingLoss(mini_batch_size=2).forward_backward(model, features, None)
    after_cached = torch.rand(3)
    torch.manual_seed(5)
    with torch.no_grad():  # the same draws as step 1 only
        for f in features.values():
            for b in range(0, 6, 2):
                model({k: v[b : b + 2] for k, v in f.items()})
    torch.testing.assert_close(after_cached, torch.rand(3))
