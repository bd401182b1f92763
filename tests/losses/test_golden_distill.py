"""Hand-computed values of the distillation and GIST losses on tiny embeddings."""

from __future__ import annotations

import math

import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.losses import DistillKLDivLoss, GISTEmbedLoss, MarginMSELoss, MSELoss

T = torch.tensor


def test_mse_golden() -> None:
    emb = {"anchor": T([[1.0, 0.0]]), "positive": T([[0.0, 1.0]])}
    # teacher [1, 1]: anchor error (0, 1) -> 0.5, positive error (1, 0) -> 0.5; mean 0.5
    assert MSELoss()(emb, T([[1.0, 1.0]])).item() == pytest.approx(0.5)


def test_margin_mse_golden() -> None:
    emb = {"anchor": T([[1.0, 0.0]]), "positive": T([[2.0, 0.0]]), "negative_1": T([[0.5, 0.0]])}
    # student margin 2 - 0.5 = 1.5; teacher scores (3, 1) -> margin 2; (1.5 - 2)^2 = 0.25
    assert MarginMSELoss()(emb, T([[3.0, 1.0]])).item() == pytest.approx(0.25)
    assert MarginMSELoss()(emb, T([2.0])).item() == pytest.approx(0.25)


def test_kl_div_is_zero_when_student_matches_teacher_and_golden_otherwise() -> None:
    emb = {"anchor": T([[1.0, 0.0]]), "positive": T([[2.0, 0.0]]), "negative_1": T([[0.0, 0.0]])}
    assert DistillKLDivLoss()(emb, T([[2.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-7)
    # teacher (0, 0) -> q = (.5, .5); student logits (2, 0) -> p = softmax; KL(q || p)
    p = torch.softmax(T([2.0, 0.0]), 0)
    expected = sum(0.5 * math.log(0.5 / p[i].item()) for i in range(2))
    assert DistillKLDivLoss()(emb, T([[0.0, 0.0]])).item() == pytest.approx(expected, rel=1e-6)


def test_gist_masks_a_false_negative_the_guide_sees() -> None:
    """Two rows; the guide finds positive 1 closer to anchor 0 than positive 0, so it is masked for row 0."""
    emb = {"anchor": T([[1.0, 0.0], [0.0, 1.0]]), "positive": T([[1.0, 0.0], [0.0, 1.0]])}
    guide_a = T([[1.0, 0.0], [0.0, 1.0]])
    guide_p = T([[0.6, 0.8], [1.0, 0.0]])  # guide: sim(a0, p0) = .6, sim(a0, p1) = 1 -> p1 masked for a0
    labels = torch.stack([guide_a, guide_p], dim=1)
    loss = GISTEmbedLoss("g", temperature=1.0, contrast_anchors=False, contrast_positives=False)
    # row 0: only its positive remains -> CE 0. row 1: guide sim(a1, p1) = 0, sim(a1, p0) = .8 > 0 -> masked -> 0.
    assert loss(emb, labels).item() == pytest.approx(0.0, abs=1e-7)
    # without masking (a negative margin so low nothing is dropped): MNRL with scale 1 on cosines
    loose = GISTEmbedLoss("g", temperature=1.0, margin=-10.0, contrast_anchors=False, contrast_positives=False)
    expected = -math.log(math.e / (math.e + 1.0))
    assert loose(emb, labels).item() == pytest.approx(expected, rel=1e-6)


def test_gist_without_guide_embeddings_says_how_to_get_them() -> None:
    with pytest.raises(EmbtuneError, match="guide's embeddings"):
        GISTEmbedLoss("g")({"anchor": torch.ones(2, 2), "positive": torch.ones(2, 2)}, None)
    with pytest.raises(EmbtuneError, match="needs a guide"):
        GISTEmbedLoss(None)
    with pytest.raises(EmbtuneError, match="teacher"):
        MarginMSELoss()({"anchor": torch.ones(2, 2), "positive": torch.ones(2, 2), "negative_1": torch.ones(2, 2)}, None)
