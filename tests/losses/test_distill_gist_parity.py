"""Distillation and GIST losses: value and gradient parity with sentence-transformers, configs, citations.

sentence-transformers' losses own a model (and GIST a guide); we drive them with stand-in modules whose
"features" are the embeddings themselves, with column merging disabled so each column is embedded alone.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
from sentence_transformers import util as st_util  # noqa: E402
from sentence_transformers.base.losses.merged_forward import column_merging_disabled  # noqa: E402

from embtune.losses import (  # noqa: E402
    CachedGISTEmbedLoss,
    DistillKLDivLoss,
    GISTEmbedLoss,
    MarginMSELoss,
    MSELoss,
)

TOL = {"atol": 1e-5, "rtol": 1e-5}
B, D = 6, 16


def roles_for(n_negatives: int, positive: bool = True) -> list[str]:
    return ["anchor"] + (["positive"] if positive else []) + [f"negative_{i}" for i in range(1, n_negatives + 1)]


def random_embeddings(roles: list[str], seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {role: torch.randn(B, D, generator=g) for role in roles}


class FeaturesAsModel(nn.Module):
    """Stands in for a SentenceTransformer: returns ``features[key]`` as the sentence embedding."""

    def __init__(self, key: str, tokenizer: object = None) -> None:
        super().__init__()
        self.key = key
        self.tokenizer = tokenizer
        self.max_seq_length = 128

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"sentence_embedding": features[self.key]}

    def get_embedding_dimension(self) -> int:
        return D

    def __getitem__(self, index: int) -> nn.Module:  # ST's cached losses inspect model[0]
        return self


def run_both(
    ours: Callable[[dict[str, Tensor]], Tensor],
    theirs: Callable[[list[dict[str, Tensor]]], Tensor],
    roles: list[str],
    extra: dict[str, Tensor] | None = None,
    seed: int = 0,
) -> None:
    """Compare values and gradients w.r.t. every role's embeddings; ``extra`` rides along in the features."""
    base = random_embeddings(roles, seed)
    results = []
    for fn, kind in ((ours, "ours"), (theirs, "theirs")):
        leaves = {r: x.clone().requires_grad_() for r, x in base.items()}
        if kind == "ours":
            value = fn(leaves)
        else:
            features = [{"embedding": leaves[r], **({"guide": extra[r]} if extra else {})} for r in roles]
            with column_merging_disabled():
                value = fn(features)
        value.backward()
        results.append((value.detach(), [leaves[r].grad for r in roles]))
    (our_value, our_grads), (st_value, st_grads) = results
    torch.testing.assert_close(our_value, st_value, **TOL)
    for role, a, b in zip(roles, our_grads, st_grads, strict=True):
        torch.testing.assert_close(a, b, **TOL, msg=lambda m, role=role: f"grad of {role}: {m}")
    assert our_value.item() != 0.0


@pytest.mark.parametrize(("roles", "label_shape"), [(roles_for(0, False), (B, D)), (roles_for(0), (B, D)),
                                                    (roles_for(1), (B, 3, D))])
def test_mse_matches_st(roles: list[str], label_shape: tuple[int, ...]) -> None:
    labels = torch.randn(*label_shape, generator=torch.Generator().manual_seed(5))
    theirs = st_losses.MSELoss(FeaturesAsModel("embedding"))
    run_both(lambda e: MSELoss()(e, labels), lambda f: theirs(f, labels), roles)


@pytest.mark.parametrize("n_negatives", [1, 3])
@pytest.mark.parametrize("scores", [False, True])
@pytest.mark.parametrize(("sim", "st_sim"), [("pairwise_dot_score", st_util.pairwise_dot_score),
                                             ("pairwise_cos_sim", st_util.pairwise_cos_sim)])
def test_margin_mse_matches_st(n_negatives: int, scores: bool, sim: str, st_sim: Callable) -> None:
    width = n_negatives + 1 if scores else n_negatives
    labels = torch.randn(B, width, generator=torch.Generator().manual_seed(6))
    ours = MarginMSELoss(similarity_fct=sim)
    theirs = st_losses.MarginMSELoss(FeaturesAsModel("embedding"), similarity_fct=st_sim)
    run_both(lambda e: ours(e, labels), lambda f: theirs(f, labels), roles_for(n_negatives))
    assert ours.config() == theirs.get_config_dict()


def test_margin_mse_takes_one_dimensional_margins() -> None:
    labels = torch.randn(B, generator=torch.Generator().manual_seed(7))
    theirs = st_losses.MarginMSELoss(FeaturesAsModel("embedding"))
    run_both(lambda e: MarginMSELoss()(e, labels), lambda f: theirs(f, labels), roles_for(1))


@pytest.mark.parametrize("n_negatives", [1, 4])
@pytest.mark.parametrize(("temperature", "student_t", "teacher_t"), [(1.0, None, None), (2.0, None, 0.5),
                                                                     (0.7, 3.0, None)])
def test_distill_kl_div_matches_st(n_negatives: int, temperature: float, student_t, teacher_t) -> None:
    labels = torch.randn(B, n_negatives + 1, generator=torch.Generator().manual_seed(8)) * 3
    ours = DistillKLDivLoss(temperature=temperature, student_temperature=student_t, teacher_temperature=teacher_t)
    theirs = st_losses.DistillKLDivLoss(
        FeaturesAsModel("embedding"), temperature=temperature, student_temperature=student_t,
        teacher_temperature=teacher_t,
    )
    small = {"seed": n_negatives}
    run_both(lambda e: ours({r: x * 0.3 for r, x in e.items()}, labels),
             lambda f: theirs([{"embedding": x["embedding"] * 0.3} for x in f], labels),
             roles_for(n_negatives), **small)
    assert ours.config() == theirs.get_config_dict()


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def guide_embeddings(roles: list[str], correlated_with: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(11)
    return {r: torch.randn(B, 12, generator=g) for r in roles}


GIST_CASES = [
    (0, "absolute", 0.0, True, True),
    (1, "absolute", 0.1, True, True),
    (1, "relative", 0.05, True, False),
    (0, "relative", 0.2, False, True),
    (1, "absolute", -0.5, False, False),
]


@pytest.mark.parametrize(("n_negatives", "strategy", "margin", "anchors", "positives"), GIST_CASES)
def test_gist_matches_st(tokenizer, n_negatives, strategy, margin, anchors, positives) -> None:
    roles = roles_for(n_negatives)
    guide = guide_embeddings(roles)
    # Make some in-batch candidates look like false negatives to the guide: copy positive 0 onto others.
    guide["positive"][3] = guide["positive"][0] + 0.01
    labels = torch.stack([guide[r] for r in roles], dim=1)
    params = {"temperature": 0.05, "margin_strategy": strategy, "margin": margin,
              "contrast_anchors": anchors, "contrast_positives": positives}
    ours = GISTEmbedLoss(guide="guide-model", **params)
    theirs = st_losses.GISTEmbedLoss(FeaturesAsModel("embedding", tokenizer), FeaturesAsModel("guide", tokenizer),
                                     **params)
    run_both(lambda e: ours(e, labels), lambda f: theirs(f, None), roles, extra=guide, seed=n_negatives)
    st_config = {k: v for k, v in theirs.get_config_dict().items() if k not in ("guide", "gather_across_devices")}
    assert {k: v for k, v in ours.config().items() if k != "guide"} == st_config


class LookupEncoder(nn.Module):
    """A trainable 'model': token id -> embedding row, mean over the (one-token) texts."""

    def __init__(self) -> None:
        super().__init__()
        self.table = nn.Embedding(64, D)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return self.table(features["input_ids"]).mean(dim=1)


@pytest.mark.parametrize("n_negatives", [0, 2])
@pytest.mark.parametrize("mini_batch_size", [1, 4, 32])
def test_cached_gist_equals_st_cached_gist_and_plain(tokenizer, n_negatives: int, mini_batch_size: int) -> None:
    """Parameter gradients of our CachedGIST equal GIST's on the same model, and ST's CachedGIST values."""
    torch.manual_seed(0)
    encoder = LookupEncoder()
    roles = roles_for(n_negatives)
    features = {r: {"input_ids": torch.randint(0, 64, (B, 1)) + 0} for r in roles}
    guide = guide_embeddings(roles)
    labels = torch.stack([guide[r] for r in roles], dim=1)
    plain = GISTEmbedLoss(guide="g", temperature=0.05, margin=0.05)
    cached = CachedGISTEmbedLoss(guide="g", temperature=0.05, margin=0.05, mini_batch_size=mini_batch_size)

    encoder.zero_grad()
    plain_value = plain({r: encoder(f) for r, f in features.items()}, labels)
    plain_value.backward()
    plain_grad = encoder.table.weight.grad.clone()

    encoder.zero_grad()
    cached_value = cached.forward_backward(encoder, features, labels)
    torch.testing.assert_close(cached_value, plain_value.detach(), **TOL)
    torch.testing.assert_close(encoder.table.weight.grad, plain_grad, **TOL)

    # sentence-transformers' CachedGISTEmbedLoss on the same embeddings gives the same value.
    embs = {r: encoder(f).detach() for r, f in features.items()}
    theirs = st_losses.CachedGISTEmbedLoss(FeaturesAsModel("embedding", tokenizer), FeaturesAsModel("guide", tokenizer),
                                           temperature=0.05, margin=0.05, mini_batch_size=mini_batch_size)
    with torch.no_grad():
        st_value = theirs([{"embedding": embs[r], "guide": guide[r], **features[r],
                            "attention_mask": torch.ones(B, 1, dtype=torch.long)} for r in roles], None)
    torch.testing.assert_close(cached_value, st_value, **TOL)


@pytest.mark.parametrize(("ours", "st_name"), [
    (MSELoss(), "MSELoss"), (MarginMSELoss(), "MarginMSELoss"), (DistillKLDivLoss(), "DistillKLDivLoss"),
])
def test_distill_citations_match_st(ours, st_name: str) -> None:
    theirs = getattr(st_losses, st_name)(FeaturesAsModel("embedding"))
    assert ours.citation.strip() == theirs.citation.strip()
    assert ours.name == type(theirs).__name__


def test_gist_citation_matches_st(tokenizer) -> None:
    model, guide = FeaturesAsModel("embedding", tokenizer), FeaturesAsModel("guide", tokenizer)
    theirs = st_losses.GISTEmbedLoss(model, guide)
    assert GISTEmbedLoss("g").citation.strip() == theirs.citation.strip()
    assert CachedGISTEmbedLoss.citation == GISTEmbedLoss.citation  # ST's cached variant declares none
    assert CachedGISTEmbedLoss.name == type(st_losses.CachedGISTEmbedLoss(model, guide)).__name__
