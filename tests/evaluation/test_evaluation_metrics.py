"""metrics.py against hand-computed values on tiny rankings, and against scipy / scikit-learn where they exist."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embtune.errors import EmbtuneError
from embtune.evaluation import metrics as M

# ---------------------------------------------------------------------------------------------------------
# correlations
# ---------------------------------------------------------------------------------------------------------


def test_rankdata_averages_tied_ranks() -> None:
    assert M.rankdata([3.0, 1.0, 3.0, 2.0, 3.0]).tolist() == [4.0, 1.0, 4.0, 2.0, 4.0]


def test_spearman_with_ties_matches_hand_value() -> None:
    # ranks x = [1, 2.5, 2.5, 4], y = [1, 2, 3, 4]: pearson of those ranks = 4.5 / sqrt(4.5 * 5)
    assert M.spearman([1, 2, 2, 3], [10, 20, 30, 40]) == pytest.approx(4.5 / math.sqrt(4.5 * 5), abs=1e-12)


def test_pearson_perfect_and_anti_correlation() -> None:
    assert M.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert M.pearson([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_correlations_are_nan_for_constant_input_like_scipy() -> None:
    assert math.isnan(M.pearson([1, 2, 3], [5, 5, 5]))
    assert math.isnan(M.spearman([1, 2, 3], [5, 5, 5]))


def test_correlations_match_scipy_on_random_data_with_ties() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.integers(0, 6, size=40).astype(float)  # many ties
        y = x + rng.normal(size=40).astype(np.float32)
        assert M.pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
        assert M.spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0], abs=1e-12)
        assert M.rankdata(x).tolist() == stats.rankdata(x).tolist()


def test_correlation_rejects_mismatched_lengths() -> None:
    with pytest.raises(EmbtuneError, match="equal length"):
        M.spearman([1, 2, 3], [1, 2])


# ---------------------------------------------------------------------------------------------------------
# ranking
# ---------------------------------------------------------------------------------------------------------

# Two queries, ranked lists of 4: q0 finds its 2 relevant docs at ranks 2 and 4; q1 (1 relevant) at rank 1.
HITS = np.array([[0, 1, 0, 1], [1, 0, 0, 0]], dtype=bool)
N_REL = np.array([2, 1])


def test_accuracy_precision_recall_at_k_hand_values() -> None:
    assert M.accuracy_at_k(HITS, 1) == 0.5
    assert M.accuracy_at_k(HITS, 2) == 1.0
    assert M.precision_at_k(HITS, 2) == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert M.precision_at_k(HITS, 4) == pytest.approx((2 / 4 + 1 / 4) / 2)
    assert M.recall_at_k(HITS, N_REL, 2) == pytest.approx((1 / 2 + 1) / 2)
    assert M.recall_at_k(HITS, N_REL, 4) == 1.0


def test_mrr_ndcg_map_hand_values() -> None:
    assert M.mrr_at_k(HITS, 1) == 0.5
    assert M.mrr_at_k(HITS, 4) == pytest.approx((1 / 2 + 1) / 2)
    # q0: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3). q1: 1.
    q0 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert M.ndcg_at_k(HITS, N_REL, 4) == pytest.approx((q0 + 1) / 2)
    # q0: (1/2 + 2/4) / min(4, 2) = 0.5; q1: 1.
    assert M.map_at_k(HITS, N_REL, 4) == pytest.approx(0.75)


def test_ranking_metrics_pad_lists_shorter_than_k() -> None:
    short = np.array([[1]], dtype=bool)  # corpus had one document
    assert M.precision_at_k(short, 10) == pytest.approx(0.1)  # still divided by k, as sentence-transformers
    assert M.ndcg_at_k(short, [3], 10) == pytest.approx(1 / (1 + 1 / math.log2(3) + 1 / math.log2(4)))
    assert M.map_at_k(short, [3], 10) == pytest.approx(1 / 3)


def test_hit_matrix_from_ids() -> None:
    hits, n_rel = M.hit_matrix([["a", "b", "c"], ["x"]], [{"b", "z"}, {"x"}], k=2)
    assert hits.tolist() == [[False, True], [True, False]]
    assert n_rel.tolist() == [2, 1]


def test_ranking_metrics_reject_bad_k_and_missing_relevant_counts() -> None:
    with pytest.raises(EmbtuneError, match="k must be"):
        M.accuracy_at_k(HITS, 0)
    with pytest.raises(EmbtuneError, match="n_relevant"):
        M.recall_at_k(HITS, [2, 0], 2)


# ---------------------------------------------------------------------------------------------------------
# binary classification
# ---------------------------------------------------------------------------------------------------------


def test_best_accuracy_threshold_is_midpoint_between_groups() -> None:
    scores = np.array([0.9, 0.7, 0.5, 0.2], dtype=np.float32)
    # predicting the top 2 similar gets 3/4 right (the last positive is missed); midpoint of 0.7 and 0.5.
    # Predicting all 4 similar also gets 3/4, but the first best wins.
    acc, threshold = M.best_accuracy_and_threshold(scores, [1, 1, 0, 1])
    assert (acc, threshold) == (0.75, pytest.approx(0.6))
    assert isinstance(threshold, float)


def test_accuracy_threshold_starts_beyond_the_best_score() -> None:
    # "everything dissimilar" (3/4 correct) is never beaten, so the threshold is just above the top score
    scores = np.array([0.9, 0.7, 0.5, 0.2], dtype=np.float32)
    acc, threshold = M.best_accuracy_and_threshold(scores, [0, 1, 0, 0])
    assert acc == 0.75
    assert threshold == float(np.nextafter(np.float32(0.9), np.float32(np.inf)))


def test_accuracy_threshold_for_distances_predicts_at_or_below() -> None:
    distances = np.array([0.1, 0.4, 2.0, 3.0])
    acc, threshold = M.best_accuracy_and_threshold(distances, [1, 1, 0, 0], greater_is_better=False)
    assert (acc, threshold) == (1.0, pytest.approx(1.2))


def test_tied_scores_are_one_group() -> None:
    # the tie at 0.5 cannot be split: predicting both similar gives 3/4, not 4/4
    acc, threshold = M.best_accuracy_and_threshold(np.array([0.9, 0.5, 0.5, 0.1]), [1, 1, 0, 0])
    assert acc == 0.75
    f1, precision, recall, f1_threshold = M.best_f1_and_threshold(
        np.array([0.9, 0.5, 0.5, 0.1]), [1, 1, 0, 0]
    )
    assert (f1, precision, recall) == (pytest.approx(0.8), pytest.approx(2 / 3), 1.0)
    assert f1_threshold == pytest.approx(0.3)


def test_average_precision_and_mcc_match_sklearn() -> None:
    skm = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    for _ in range(20):
        labels = rng.integers(0, 2, size=30)
        labels[0], labels[1] = 0, 1
        scores = np.round(rng.normal(size=30) + labels, 1).astype(np.float32)  # rounding creates ties
        assert M.average_precision(scores, labels) == pytest.approx(
            skm.average_precision_score(labels, scores), abs=1e-12
        )
        predicted = scores >= np.median(scores)
        assert M.matthews_corrcoef(labels, predicted) == pytest.approx(
            skm.matthews_corrcoef(labels, predicted), abs=1e-12
        )


def test_binary_metrics_reject_labels_other_than_0_1() -> None:
    with pytest.raises(EmbtuneError, match="0 or 1"):
        M.best_f1_and_threshold(np.array([0.1, 0.2]), np.array([0, 2]))
