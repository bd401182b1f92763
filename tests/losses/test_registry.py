"""build_loss, the registry, check_roles and first_bad_label: what users see when they get it wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.losses import (
    LOSSES,
    CoSENTLoss,
    MatryoshkaLoss,
    MultipleNegativesRankingLoss,
    TripletLoss,
    build_loss,
    check_roles,
    first_bad_label,
)
from embtune.losses.base import LabelSpec, Loss


def test_every_registered_class_follows_the_protocol_and_its_st_name_is_registered() -> None:
    for key, cls in LOSSES.items():
        assert cls.name in LOSSES and LOSSES[cls.name] is cls, key
        loss = build_loss(key, loss="mnrl", matryoshka_dims=[4]) if cls is MatryoshkaLoss else build_loss(key)
        assert isinstance(loss, Loss), key
        assert isinstance(loss.config(), dict)


@pytest.mark.parametrize(
    ("name", "params", "config"),
    [
        ("mnrl", {}, {"scale": 20.0, "similarity_fct": "cos_sim"}),
        (
            "MultipleNegativesRankingLoss",
            {"similarity_fct": "dot_score", "scale": 1.0},
            {"scale": 1.0, "similarity_fct": "dot_score"},
        ),
        ("triplet", {}, {"distance_metric": "TripletDistanceMetric.EUCLIDEAN", "triplet_margin": 5}),
        (
            "TripletLoss",
            {"distance_metric": "TripletDistanceMetric.COSINE", "triplet_margin": 0.2},
            {"distance_metric": "TripletDistanceMetric.COSINE", "triplet_margin": 0.2},
        ),
        ("cosent", {}, {"scale": 20.0, "similarity_fct": "pairwise_cos_sim"}),
        ("cosine_similarity", {}, {"loss_fct": "torch.nn.modules.loss.MSELoss"}),
        (
            "cosine_similarity",
            {"loss_fct": "torch.nn.modules.loss.L1Loss"},
            {"loss_fct": "torch.nn.modules.loss.L1Loss"},
        ),
        ("cosine_similarity", {"loss_fct": "smooth_l1"}, {"loss_fct": "torch.nn.modules.loss.SmoothL1Loss"}),
        (
            "contrastive",
            {},
            {"distance_metric": "SiameseDistanceMetric.COSINE_DISTANCE", "margin": 0.5, "size_average": True},
        ),
        (
            "ContrastiveLoss",
            {"distance_metric": "cosine"},
            {"distance_metric": "SiameseDistanceMetric.COSINE_DISTANCE", "margin": 0.5, "size_average": True},
        ),
        (
            "online_contrastive",
            {"distance_metric": "euclidean"},
            {"distance_metric": "SiameseDistanceMetric.EUCLIDEAN", "margin": 0.5},
        ),
        (
            "cached_mnrl",
            {"mini_batch_size": 4},
            {"scale": 20.0, "similarity_fct": "cos_sim", "mini_batch_size": 4},
        ),
    ],
)
def test_build_loss_config_matches_model_card_format(name: str, params: dict, config: dict) -> None:
    assert build_loss(name, **params).config() == config


def test_build_matryoshka_from_yaml_like_dicts() -> None:
    loss = build_loss("matryoshka", loss={"name": "mnrl", "scale": 10.0}, matryoshka_dims=[8, 32, 16])
    assert isinstance(loss.loss, MultipleNegativesRankingLoss) and loss.loss.scale == 10.0
    assert loss.config() == {
        "loss": "MultipleNegativesRankingLoss",
        "matryoshka_dims": [32, 16, 8],
        "matryoshka_weights": [1, 1, 1],
        "n_dims_per_step": -1,
    }
    cosent = build_loss("MatryoshkaLoss", loss="cosent", matryoshka_dims=[4])
    assert cosent.label == CoSENTLoss.label and cosent.required_roles == ("anchor", "positive")


def test_build_loss_accepts_module_colon_class() -> None:
    loss = build_loss("embtune.losses.triplet:TripletLoss", allow_custom_code=True, triplet_margin=1.0)
    assert isinstance(loss, TripletLoss)


def test_module_colon_class_needs_the_opt_in_and_a_loss_class() -> None:
    with pytest.raises(EmbtuneError, match="never imports from a recipe.*--allow-custom-code"):
        build_loss("embtune.losses.triplet:TripletLoss")
    with pytest.raises(EmbtuneError, match="'os:system' is not a loss class"):
        build_loss("os:system", allow_custom_code=True, command="true")
    with pytest.raises(EmbtuneError, match="is not a loss class"):
        build_loss("collections:OrderedDict", allow_custom_code=True)


def test_unknown_loss_name_suggests_the_closest() -> None:
    with pytest.raises(EmbtuneError, match=r"unknown loss 'cosnet'; did you mean 'cosent'\?"):
        build_loss("cosnet")
    with pytest.raises(EmbtuneError, match="known losses: mnrl"):
        build_loss("zzzzzzzz")


def test_case_insensitive_names_work() -> None:
    assert isinstance(build_loss("CoSENTloss"), CoSENTLoss)


def test_unknown_parameter_lists_accepted_ones() -> None:
    with pytest.raises(
        EmbtuneError,
        match=r"unknown parameter\(s\) scael \(did you mean 'scale'.*accepts: scale, similarity_fct",
    ):
        build_loss("mnrl", scael=10)


def test_missing_required_parameter_is_named() -> None:
    with pytest.raises(EmbtuneError, match="needs the parameter.*matryoshka_dims"):
        build_loss("matryoshka", loss="mnrl")
    with pytest.raises(EmbtuneError, match="needs a `name`"):
        build_loss("matryoshka", loss={"scale": 3}, matryoshka_dims=[8])


def test_bad_module_path_says_what_failed() -> None:
    with pytest.raises(EmbtuneError, match="cannot import module 'no_such_pkg.losses'"):
        build_loss("no_such_pkg.losses:X", allow_custom_code=True)
    with pytest.raises(EmbtuneError, match="has no attribute 'Nope'"):
        build_loss("embtune.losses:Nope", allow_custom_code=True)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("mnrl", {"scale": 0}, "scale must be a number > 0"),
        ("mnrl", {"similarity_fct": "cosinus"}, "unknown similarity function 'cosinus'"),
        ("triplet", {"distance_metric": "euclidian"}, "did you mean 'euclidean'"),
        ("contrastive", {"distance_metric": "TripletDistanceMetric.EUCLIDEAN"}, "unknown distance_metric"),
        ("cosine_similarity", {"loss_fct": "msee"}, "did you mean 'mse'.*or pass a callable"),
        ("cached_mnrl", {"mini_batch_size": 0}, "mini_batch_size must be"),
        ("matryoshka", {"loss": "mnrl", "matryoshka_dims": [8, 0]}, "positive integers"),
        (
            "matryoshka",
            {"loss": "mnrl", "matryoshka_dims": [8, 4], "matryoshka_weights": [1]},
            "one weight per dim",
        ),
        (
            "matryoshka",
            {"loss": "cached_mnrl", "matryoshka_dims": [8]},
            "cannot wrap CachedMultipleNegativesRankingLoss",
        ),
    ],
)
def test_invalid_values_raise_with_a_fix(name: str, params: dict, message: str) -> None:
    with pytest.raises(EmbtuneError, match=message):
        build_loss(name, **params)


def test_matryoshka_dim_larger_than_embedding_is_an_error() -> None:
    loss = MatryoshkaLoss(MultipleNegativesRankingLoss(), [16, 8])
    with pytest.raises(EmbtuneError, match="dim 16 exceeds the embedding size 8"):
        loss({"anchor": torch.randn(2, 8), "positive": torch.randn(2, 8)}, None)


# ---- check_roles ----


def test_check_roles_names_missing_role_and_fix() -> None:
    with pytest.raises(
        EmbtuneError,
        match=r"TripletLoss needs the role\(s\) negative_1.*datasets\[\]\.columns \(negative_1: <column>\)",
    ):
        check_roles(TripletLoss(), {"anchor", "positive"}, 0)
    check_roles(TripletLoss(), {"anchor", "positive"}, 1)  # negatives may be given by count only


def test_check_roles_rejects_too_many_negatives() -> None:
    with pytest.raises(EmbtuneError, match="TripletLoss accepts 1 hard-negative role.*got 2"):
        check_roles(TripletLoss(), {"anchor", "positive", "negative_1", "negative_2"}, 2)
    with pytest.raises(EmbtuneError, match="CoSENTLoss accepts 0.*remove the negative columns"):
        check_roles(CoSENTLoss(), {"anchor", "positive", "negative_1"}, 1)
    check_roles(MultipleNegativesRankingLoss(), {"anchor", "positive"}, 7)


def test_check_roles_checks_labels_when_asked() -> None:
    with pytest.raises(EmbtuneError, match="CoSENTLoss needs a label column"):
        check_roles(CoSENTLoss(), {"anchor", "positive"}, 0, has_label=False)
    with pytest.raises(EmbtuneError, match="does not use labels"):
        check_roles(MultipleNegativesRankingLoss(), {"anchor", "positive"}, 0, has_label=True)
    check_roles(CoSENTLoss(), {"anchor", "positive"}, 0, has_label=True)


def test_calling_a_loss_without_a_role_or_labels_raises_embtune_error() -> None:
    with pytest.raises(EmbtuneError, match="needs the role"):
        MultipleNegativesRankingLoss()({"anchor": torch.randn(2, 4)})
    with pytest.raises(EmbtuneError, match="needs a label per pair"):
        CoSENTLoss()({"anchor": torch.randn(2, 4), "positive": torch.randn(2, 4)}, None)
    with pytest.raises(EmbtuneError, match="got 3 labels"):
        CoSENTLoss()({"anchor": torch.randn(2, 4), "positive": torch.randn(2, 4)}, torch.ones(3))
    with pytest.raises(EmbtuneError, match="same shape"):
        MultipleNegativesRankingLoss()({"anchor": torch.randn(2, 4), "positive": torch.randn(3, 4)})


# ---- first_bad_label ----


@pytest.mark.parametrize(
    ("spec", "labels", "expected"),
    [
        (LabelSpec("float"), [0.1, 5.0, -3.0], None),
        (LabelSpec("float"), [0.1, float("nan"), 2.0], (1, "label nan is not a finite number")),
        (LabelSpec("float"), [0.1, 0.2, float("inf")], (2, "label inf is not a finite number")),
        (LabelSpec("float", -1.0, 1.0), [0.5, -1.0, 1.0, 4.0], (3, "label 4 is outside [-1, 1]")),
        (LabelSpec("float", 0.0, None), [0.0, -0.5], (1, "label -0.5 is outside [0, inf]")),
        (LabelSpec("binary"), [1, 0, 1, 0], None),
        (LabelSpec("binary"), [True, False], None),
        (LabelSpec("binary"), [1, 0, 2], (2, "label 2 is not 0 or 1")),
        (LabelSpec("binary"), [1, 0.5, float("nan")], (1, "label 0.5 is not 0 or 1")),
        (LabelSpec("class"), [0, 3, 2.5], (2, "label 2.5 is not an integer class id")),
        (LabelSpec("float"), np.array(["0.5", "x"], dtype=object), (1, "label 'x' is not a number")),
        (LabelSpec("float"), np.array([0.5, None], dtype=object), (1, "label is missing (None)")),
        (LabelSpec("binary"), np.array([1, True, "1", 7], dtype=object), (3, "label 7 is not 0 or 1")),
        (LabelSpec("float"), [], None),
    ],
)
def test_first_bad_label(spec: LabelSpec, labels: list, expected: tuple[int, str] | None) -> None:
    result = first_bad_label(spec, np.asarray(labels) if not isinstance(labels, np.ndarray) else labels)
    if expected is None:
        assert result is None
    else:
        assert result is not None and result[0] == expected[0] and result[1].startswith(expected[1]), result


def test_first_bad_label_reports_the_earliest_row_whatever_the_reason() -> None:
    spec = LabelSpec("float", -1.0, 1.0)
    assert first_bad_label(spec, np.array([0.0, 3.0, np.nan])) == (
        1,
        "label 3 is outside [-1, 1]",
    )
