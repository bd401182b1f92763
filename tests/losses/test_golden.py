"""Loss values worked out by hand on 2-D embeddings (the expected numbers use only `math`)."""

from __future__ import annotations

import math

import pytest
import torch

from embtune.losses import (
    ContrastiveLoss,
    CoSENTLoss,
    CosineSimilarityLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
    MultipleNegativesSymmetricRankingLoss,
    OnlineContrastiveLoss,
    TripletLoss,
)

R2 = math.sqrt(2)


def t(*rows: tuple[float, ...]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def unit(angle_cos: float) -> tuple[float, float]:
    """The 2-D unit vector whose cosine with (1, 0) is ``angle_cos``."""
    return (angle_cos, math.sqrt(1 - angle_cos**2))


def ce(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(x) for x in logits))


# anchors (1,0), (0,1); positives (1,0), (1,1)/sqrt2 -> cosines [[1, 1/√2], [0, 1/√2]]
ANCHORS = t((1, 0), (0, 1))
POSITIVES = t((1, 0), (1, 1))
NEGATIVES = t((0, 1), (-1, 0))  # cosines with anchors [[0, -1], [1, 0]]


@pytest.mark.parametrize("scale", [1.0, 20.0])
def test_mnrl_pairs_matches_hand_computed_cross_entropy(scale: float) -> None:
    loss = MultipleNegativesRankingLoss(scale=scale)
    expected = (ce([scale * 1, scale / R2], 0) + ce([0, scale / R2], 1)) / 2
    assert loss({"anchor": ANCHORS, "positive": POSITIVES}).item() == pytest.approx(expected, abs=1e-9)


def test_mnrl_hard_negatives_of_every_row_are_candidates() -> None:
    loss = MultipleNegativesRankingLoss(scale=1.0)
    # candidates: p1, p2, n1, n2
    row1 = ce([1, 1 / R2, 0, -1], 0)
    row2 = ce([0, 1 / R2, 1, 0], 1)
    value = loss({"anchor": ANCHORS, "positive": POSITIVES, "negative_1": NEGATIVES}).item()
    assert value == pytest.approx((row1 + row2) / 2, abs=1e-9)


def test_mnrl_dot_score_uses_raw_products() -> None:
    loss = MultipleNegativesRankingLoss(scale=1.0, similarity_fct="dot_score")
    anchors, positives = t((2, 0), (0, 1)), t((1, 0), (1, 3))  # products [[2, 2], [0, 3]]
    expected = (ce([2, 2], 0) + ce([0, 3], 1)) / 2
    assert loss({"anchor": anchors, "positive": positives}).item() == pytest.approx(expected, abs=1e-9)


def test_symmetric_mnrl_averages_both_directions() -> None:
    loss = MultipleNegativesSymmetricRankingLoss(scale=1.0)
    forward = (ce([1, 1 / R2], 0) + ce([0, 1 / R2], 1)) / 2
    backward = (ce([1, 0], 0) + ce([1 / R2, 1 / R2], 1)) / 2  # positive -> anchors
    value = loss({"anchor": ANCHORS, "positive": POSITIVES}).item()
    assert value == pytest.approx((forward + backward) / 2, abs=1e-9)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        # row 1: d(a,p)=5, d(a,n)=1 -> 9; row 2: d(a,p)=0, d(a,n)=6 -> relu(-1)=0
        ("euclidean", (9 + 0) / 2),
        # row 1: 7 - 1 + 5 = 11; row 2: 0 - 6 + 5 -> 0
        ("manhattan", (11 + 0) / 2),
        ("TripletDistanceMetric.EUCLIDEAN", 4.5),
    ],
)
def test_triplet_distances(metric: str, expected: float) -> None:
    embeddings = {"anchor": t((0, 0), (1, 1)), "positive": t((3, 4), (1, 1)), "negative_1": t((0, 1), (1, 7))}
    assert TripletLoss(distance_metric=metric)(embeddings).item() == pytest.approx(expected, abs=1e-9)


def test_triplet_cosine_distance() -> None:
    # cos(a,p)=0 -> d=1; cos(a,n)=1 -> d=0; margin 0.5 -> 1.5. Row 2: d(a,p)=0, d(a,n)=2 -> 0.
    embeddings = {
        "anchor": t((1, 0), (0, 2)),
        "positive": t((0, 1), (0, 1)),
        "negative_1": t((3, 0), (0, -1)),
    }
    loss = TripletLoss(distance_metric="cosine", triplet_margin=0.5)
    assert loss(embeddings).item() == pytest.approx(1.5 / 2, abs=1e-9)


# Pairs with cosines 1, 0, -1.
COSENT_PAIRS = {"anchor": t((1, 0), (1, 0), (1, 0)), "positive": t((2, 0), (0, 1), (-1, 0))}


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        # already in order: each ordered pair (i above j) adds exp(s_j - s_i)
        ([1.0, 0.5, 0.0], math.log(1 + math.exp(-1) + math.exp(-2) + math.exp(-1))),
        ([0.0, 0.5, 1.0], math.log(1 + math.exp(1) + math.exp(2) + math.exp(1))),
        # ties add nothing: only (0 > 2) and (1 > 2)
        ([3.0, 3.0, 0.0], math.log(1 + math.exp(-2) + math.exp(-1))),
        ([2.0, 2.0, 2.0], 0.0),
    ],
)
def test_cosent_sums_over_pairs_with_higher_label(labels: list[float], expected: float) -> None:
    value = CoSENTLoss(scale=1.0)(COSENT_PAIRS, torch.tensor(labels)).item()
    assert value == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("loss_fct", "expected"), [("mse", 0.25), ("l1", 0.5), ("huber", 0.125)])
def test_cosine_similarity_regresses_cosine_onto_label(loss_fct: str, expected: float) -> None:
    pairs = {"anchor": t((1, 0), (1, 0)), "positive": t((5, 0), (0, 2))}  # cosines 1 and 0
    value = CosineSimilarityLoss(loss_fct=loss_fct)(pairs, torch.tensor([0.5, 0.5])).item()
    assert value == pytest.approx(expected, abs=1e-9)


def test_contrastive_cosine_distance() -> None:
    # label 1 at distance 1 -> 0.5 * 1; label 0 at distance 0.2 -> 0.5 * (0.5 - 0.2)^2
    pairs = {"anchor": t((1, 0), (1, 0)), "positive": t((0, 1), unit(0.8))}
    labels = torch.tensor([1, 0])
    assert ContrastiveLoss()(pairs, labels).item() == pytest.approx((0.5 + 0.045) / 2, abs=1e-9)
    assert ContrastiveLoss(size_average=False)(pairs, labels).item() == pytest.approx(0.545, abs=1e-9)


def test_contrastive_euclidean() -> None:
    # label 1 at 0.5 -> 0.125; label 0 at 0.1 -> 0.5 * 0.4^2 = 0.08; label 0 at 2 -> 0
    pairs = {"anchor": t((0, 0), (0, 0), (0, 0)), "positive": t((0.3, 0.4), (0.1, 0), (2, 0))}
    value = ContrastiveLoss(distance_metric="euclidean")(pairs, torch.tensor([1, 0, 0])).item()
    assert value == pytest.approx((0.125 + 0.08 + 0) / 3, abs=1e-5)  # torch adds eps=1e-6 to differences


@pytest.mark.parametrize(
    ("positive_d", "negative_d", "expected"),
    [
        # all hard: pos 0.2, 0.9 > min neg 0.1; neg 0.1, 0.6 < max pos 0.9
        ([0.2, 0.9], [0.1, 0.6], 0.04 + 0.81 + 0.4**2 + 0),
        # pos 0.1 > 0.05 is hard; neg 0.3 is not below max pos 0.1 -> only 0.05 counts
        ([0.1], [0.3, 0.05], 0.01 + 0.45**2),
    ],
)
def test_online_contrastive_keeps_only_hard_pairs(
    positive_d: list[float], negative_d: list[float], expected: float
) -> None:
    distances = positive_d + negative_d
    labels = torch.tensor([1] * len(positive_d) + [0] * len(negative_d))
    pairs = {"anchor": t(*[(1, 0)] * len(distances)), "positive": t(*[unit(1 - d) for d in distances])}
    assert OnlineContrastiveLoss()(pairs, labels).item() == pytest.approx(expected, abs=1e-9)


def test_matryoshka_truncates_normalises_and_weights() -> None:
    # dim 3 cosines: 1/√2 and 1/3; dim 1 cosines: 1 and -1. Labels 1, 0.
    pairs = {"anchor": t((1, 0, 0), (-1, 1, 1)), "positive": t((1, 1, 0), (1, 1, 1))}
    at_3 = ((1 - 1 / R2) ** 2 + (1 / 3) ** 2) / 2
    at_1 = (0 + 1) / 2
    loss = MatryoshkaLoss(CosineSimilarityLoss(), matryoshka_dims=[1, 3], matryoshka_weights=[0.5, 1])
    assert loss(pairs, torch.tensor([1.0, 0.0])).item() == pytest.approx(at_3 + 0.5 * at_1, abs=1e-9)
    assert loss.config() == {
        "loss": "CosineSimilarityLoss",
        "matryoshka_dims": [3, 1],
        "matryoshka_weights": [1, 0.5],
        "n_dims_per_step": -1,
    }


def test_matryoshka_normalises_before_a_dot_product_loss() -> None:
    # anchors (3, 4), (0, 2) -> (0.6, 0.8), (0, 1); positives unchanged after normalising.
    inner = MultipleNegativesRankingLoss(scale=1.0, similarity_fct="dot_score")
    embeddings = {"anchor": t((3, 4), (0, 2)), "positive": t((1, 0), (0, 1))}
    expected = (ce([0.6, 0.8], 0) + ce([0, 1], 1)) / 2
    assert MatryoshkaLoss(inner, [2])(embeddings, None).item() == pytest.approx(expected, abs=1e-9)


def test_matryoshka_n_dims_per_step_samples_dims() -> None:
    pairs = {"anchor": t((1, 0, 0), (-1, 1, 1)), "positive": t((1, 1, 0), (1, 1, 1))}
    labels = torch.tensor([1.0, 0.0])
    single = {d: MatryoshkaLoss(CosineSimilarityLoss(), [d])(pairs, labels).item() for d in (1, 2, 3)}
    sampled = MatryoshkaLoss(CosineSimilarityLoss(), [1, 2, 3], n_dims_per_step=1)
    values = {round(sampled(pairs, labels).item(), 9) for _ in range(30)}
    assert values <= {round(v, 9) for v in single.values()} and len(values) > 1
