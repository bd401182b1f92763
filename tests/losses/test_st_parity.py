"""Value and gradient parity with sentence-transformers' losses on random embeddings.

sentence-transformers' losses own a model; we drive them on given embeddings through their
``compute_loss_from_embeddings`` (and, for MatryoshkaLoss, a fake model that returns the embeddings).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

st_losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
from sentence_transformers import util as st_util  # noqa: E402

from embtune.losses import (  # noqa: E402
    ContrastiveLoss,
    CoSENTLoss,
    CosineSimilarityLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
    OnlineContrastiveLoss,
    TripletLoss,
)
from embtune.losses.base import Loss  # noqa: E402

TOL = {"atol": 1e-5, "rtol": 1e-5}
B, D = 6, 16


def roles_for(n_negatives: int) -> list[str]:
    return ["anchor", "positive"] + [f"negative_{i}" for i in range(1, n_negatives + 1)]


def random_embeddings(roles: list[str], seed: int) -> dict[str, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {role: torch.randn(B, D, generator=g) for role in roles}


def value_and_grads(
    fn: Callable[[dict[str, Tensor]], Tensor], base: dict[str, Tensor]
) -> tuple[Tensor, list[Tensor]]:
    leaves = {role: x.clone().requires_grad_() for role, x in base.items()}
    value = fn(leaves)
    value.backward()
    return value.detach(), [leaves[role].grad for role in base]


def assert_parity(
    ours: Loss, theirs: nn.Module, roles: list[str], labels: Tensor | None, seed: int = 0
) -> None:
    base = random_embeddings(roles, seed)
    our_value, our_grads = value_and_grads(lambda e: ours(e, labels), base)
    st_value, st_grads = value_and_grads(
        lambda e: theirs.compute_loss_from_embeddings([e[r] for r in roles], labels), base
    )
    torch.testing.assert_close(our_value, st_value, **TOL)
    for role, ours_g, st_g in zip(roles, our_grads, st_grads, strict=True):
        torch.testing.assert_close(ours_g, st_g, **TOL, msg=lambda m, role=role: f"grad of {role}: {m}")
    assert our_value.item() != 0.0  # a vacuous comparison would prove nothing


def float_labels(seed: int) -> Tensor:
    return torch.rand(B, generator=torch.Generator().manual_seed(seed + 100))


def binary_labels() -> Tensor:
    return torch.tensor([1, 0, 1, 1, 0, 0])


@pytest.mark.parametrize("n_negatives", [0, 1, 3])
@pytest.mark.parametrize(
    ("scale", "sim", "st_sim"),
    [
        (20.0, "cos_sim", st_util.cos_sim),
        (1.0, "dot_score", st_util.dot_score),
        (0.5, "euclidean", st_util.euclidean_sim),
    ],
)
def test_mnrl_matches_st(n_negatives: int, scale: float, sim: str, st_sim: Callable) -> None:
    ours = MultipleNegativesRankingLoss(scale=scale, similarity_fct=sim)
    theirs = st_losses.MultipleNegativesRankingLoss(None, scale=scale, similarity_fct=st_sim)
    assert_parity(ours, theirs, roles_for(n_negatives), None, seed=n_negatives)
    assert ours.config().items() <= theirs.get_config_dict().items()


@pytest.mark.parametrize("n_negatives", [0, 2])
def test_symmetric_mnrl_matches_st(n_negatives: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated in ST in favour of MNRL(directions=...)
        theirs = st_losses.MultipleNegativesSymmetricRankingLoss(None, scale=20.0)
    assert_parity(MultipleNegativesSymmetricRankingLoss(), theirs, roles_for(n_negatives), None)


@pytest.mark.parametrize(
    ("metric", "margin"), [("euclidean", 5), ("cosine", 0.5), ("manhattan", 10.0), ("euclidean", 1.0)]
)
def test_triplet_matches_st(metric: str, margin: float) -> None:
    st_metric = getattr(st_losses.TripletDistanceMetric, metric.upper())
    theirs = st_losses.TripletLoss(None, distance_metric=st_metric, triplet_margin=margin)
    ours = TripletLoss(distance_metric=metric, triplet_margin=margin)
    assert_parity(ours, theirs, roles_for(1), None)
    assert ours.config() == theirs.get_config_dict()


@pytest.mark.parametrize(("scale", "sim"), [(20.0, "pairwise_cos_sim"), (5.0, "pairwise_dot_score")])
def test_cosent_matches_st(scale: float, sim: str) -> None:
    ours = CoSENTLoss(scale=scale, similarity_fct=sim)
    theirs = st_losses.CoSENTLoss(None, scale=scale, similarity_fct=getattr(st_util, sim))
    if sim == "pairwise_dot_score":  # keep dot products small so the loss is not saturated
        base_scale = 0.2
        labels = float_labels(1)
        base = {r: x * base_scale for r, x in random_embeddings(roles_for(0), 1).items()}
        our_value, our_grads = value_and_grads(lambda e: ours(e, labels), base)
        st_value, st_grads = value_and_grads(
            lambda e: theirs.compute_loss_from_embeddings([e["anchor"], e["positive"]], labels), base
        )
        torch.testing.assert_close(our_value, st_value, **TOL)
        for a, b in zip(our_grads, st_grads, strict=True):
            torch.testing.assert_close(a, b, **TOL)
    else:
        assert_parity(ours, theirs, roles_for(0), float_labels(0))
    assert ours.config() == theirs.get_config_dict()


def test_cosent_ties_match_st() -> None:
    labels = torch.tensor([1.0, 1.0, 0.0, 0.5, 0.5, 1.0])
    assert_parity(CoSENTLoss(), st_losses.CoSENTLoss(None), roles_for(0), labels)


@pytest.mark.parametrize(
    ("name", "module"), [("mse", nn.MSELoss()), ("l1", nn.L1Loss()), ("huber", nn.HuberLoss())]
)
def test_cosine_similarity_matches_st(name: str, module: nn.Module) -> None:
    ours = CosineSimilarityLoss(loss_fct=name)
    theirs = st_losses.CosineSimilarityLoss(None, loss_fct=module)
    assert_parity(ours, theirs, roles_for(0), float_labels(2) * 2 - 1)
    assert ours.config().items() <= theirs.get_config_dict().items()


@pytest.mark.parametrize("metric", ["cosine_distance", "euclidean", "manhattan"])
@pytest.mark.parametrize(("margin", "size_average"), [(0.5, True), (8.0, False)])
def test_contrastive_matches_st(metric: str, margin: float, size_average: bool) -> None:
    st_metric = getattr(st_losses.SiameseDistanceMetric, metric.upper())
    theirs = st_losses.ContrastiveLoss(
        None, distance_metric=st_metric, margin=margin, size_average=size_average
    )
    ours = ContrastiveLoss(distance_metric=metric, margin=margin, size_average=size_average)
    assert_parity(ours, theirs, roles_for(0), binary_labels())
    assert ours.config() == theirs.get_config_dict()


@pytest.mark.parametrize("metric", ["cosine_distance", "euclidean", "manhattan"])
@pytest.mark.parametrize("labels", [[1, 0, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
def test_online_contrastive_matches_st(metric: str, labels: list[int]) -> None:
    st_metric = getattr(st_losses.SiameseDistanceMetric, metric.upper())
    margin = {"cosine_distance": 1.5, "euclidean": 8.0, "manhattan": 30.0}[metric]  # most negatives are hard
    theirs = st_losses.OnlineContrastiveLoss(None, distance_metric=st_metric, margin=margin)
    ours = OnlineContrastiveLoss(distance_metric=metric, margin=margin)
    assert_parity(ours, theirs, roles_for(0), torch.tensor(labels))
    assert ours.config() == theirs.get_config_dict()


class EmbeddingsAsModel(nn.Module):
    """Stands in for a SentenceTransformer: the 'features' of a column are its embeddings."""

    def forward(self, features: dict[str, Tensor]) -> dict[str, Tensor]:
        return {"sentence_embedding": features["embedding"]}

    def get_embedding_dimension(self) -> int:
        return D

    def _get_untruncated_embedding_dimension(self) -> int:  # what MatryoshkaLoss checks its dims against (ST >= 6.3)
        return D


@pytest.mark.parametrize(
    ("inner", "st_inner", "roles", "labels"),
    [
        ("mnrl", "MultipleNegativesRankingLoss", roles_for(0), None),
        ("mnrl", "MultipleNegativesRankingLoss", roles_for(2), None),
        ("cosent", "CoSENTLoss", roles_for(0), float_labels(3)),
    ],
)
@pytest.mark.parametrize(("dims", "weights"), [([16, 8, 4], None), ([4, 16, 8], [0.2, 1.0, 0.5])])
def test_matryoshka_matches_st(
    inner: str,
    st_inner: str,
    roles: list[str],
    labels: Tensor | None,
    dims: list[int],
    weights: list[float] | None,
) -> None:
    model = EmbeddingsAsModel()
    ours_inner = MultipleNegativesRankingLoss() if inner == "mnrl" else CoSENTLoss()
    ours = MatryoshkaLoss(ours_inner, matryoshka_dims=dims, matryoshka_weights=weights)
    theirs = st_losses.MatryoshkaLoss(
        model, getattr(st_losses, st_inner)(model), matryoshka_dims=dims, matryoshka_weights=weights
    )
    base = random_embeddings(roles, seed=7)
    our_value, our_grads = value_and_grads(lambda e: ours(e, labels), base)
    st_value, st_grads = value_and_grads(lambda e: theirs([{"embedding": e[r]} for r in roles], labels), base)
    torch.testing.assert_close(our_value, st_value, **TOL)
    for a, b in zip(our_grads, st_grads, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    st_config = {k: list(v) if isinstance(v, tuple) else v for k, v in theirs.get_config_dict().items()}
    assert ours.config() == st_config


@pytest.mark.parametrize(
    ("ours", "st_name"),
    [
        (MultipleNegativesRankingLoss(), "MultipleNegativesRankingLoss"),
        (TripletLoss(), "TripletLoss"),
        (CoSENTLoss(), "CoSENTLoss"),
        (ContrastiveLoss(), "ContrastiveLoss"),
    ],
)
def test_citations_match_st(ours: Loss, st_name: str) -> None:
    theirs = getattr(st_losses, st_name)(None)
    assert ours.citation.strip() == theirs.citation.strip()
    assert ours.name == type(theirs).__name__


def test_wrapper_and_symmetric_citations_match_st() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        symmetric = st_losses.MultipleNegativesSymmetricRankingLoss(None)
    assert MultipleNegativesSymmetricRankingLoss.citation.strip() == symmetric.citation.strip()
    model = EmbeddingsAsModel()
    matryoshka = st_losses.MatryoshkaLoss(model, st_losses.CoSENTLoss(model), [16])
    assert MatryoshkaLoss.citation.strip() == matryoshka.citation.strip()
