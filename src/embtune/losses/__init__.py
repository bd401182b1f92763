"""Losses as math on embeddings, and the registry that builds them from names (YAML recipes).

Python users import the classes; recipes name them::

    build_loss("mnrl", scale=20.0)
    build_loss("MatryoshkaLoss", loss={"name": "cosent"}, matryoshka_dims=[32, 16])
    build_loss("mypackage.losses:MyLoss", alpha=0.1, allow_custom_code=True)   # your own loss class
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any

from ..errors import EmbtuneError
from ..utils.resolve import resolve
from .base import LabelSpec, Loss, ModelLoss, check_roles, first_bad_label, negative_roles
from .cached import CachedMultipleNegativesRankingLoss
from .contrastive import ContrastiveLoss, OnlineContrastiveLoss
from .cosent import CoSENTLoss
from .cosine_similarity import CosineSimilarityLoss
from .in_batch import MultipleNegativesRankingLoss, MultipleNegativesSymmetricRankingLoss
from .matryoshka import MatryoshkaLoss
from .triplet import TripletLoss

# Short aliases and the sentence-transformers class names, both accepted in recipes.
LOSSES: dict[str, type] = {
    "mnrl": MultipleNegativesRankingLoss,
    "in_batch_negatives": MultipleNegativesRankingLoss,
    "MultipleNegativesRankingLoss": MultipleNegativesRankingLoss,
    "mnsrl": MultipleNegativesSymmetricRankingLoss,
    "symmetric_mnrl": MultipleNegativesSymmetricRankingLoss,
    "MultipleNegativesSymmetricRankingLoss": MultipleNegativesSymmetricRankingLoss,
    "cached_mnrl": CachedMultipleNegativesRankingLoss,
    "CachedMultipleNegativesRankingLoss": CachedMultipleNegativesRankingLoss,
    "triplet": TripletLoss,
    "TripletLoss": TripletLoss,
    "cosent": CoSENTLoss,
    "CoSENTLoss": CoSENTLoss,
    "cosine_similarity": CosineSimilarityLoss,
    "CosineSimilarityLoss": CosineSimilarityLoss,
    "contrastive": ContrastiveLoss,
    "ContrastiveLoss": ContrastiveLoss,
    "online_contrastive": OnlineContrastiveLoss,
    "OnlineContrastiveLoss": OnlineContrastiveLoss,
    "matryoshka": MatryoshkaLoss,
    "MatryoshkaLoss": MatryoshkaLoss,
}


_LOSS_ATTRS = ("required_roles", "max_negatives", "label", "citation", "config")


def _is_loss_class(obj: object) -> bool:
    """A class with the Loss interface (roles, labels, citation, ``config`` and ``__call__``)."""
    defines_call = any("__call__" in vars(k) for k in getattr(obj, "__mro__", ())[:-1])  # not object's
    return all(hasattr(obj, attr) for attr in _LOSS_ATTRS) and defines_call


def _lookup(name: str, allow_custom_code: bool | None = None) -> type:
    """Registry name -> class; ``package.module:Class`` only with the custom-code opt-in (``utils.resolve``)."""
    return resolve(
        "loss", name, LOSSES, check=_is_loss_class, allow_custom_code=allow_custom_code,
        expected="a loss class (required_roles, label, citation, config() and __call__(embeddings, labels))",
    )


def _check_params(cls: type, params: dict[str, Any]) -> None:
    signature = inspect.signature(cls)
    accepted = [
        p.name for p in signature.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [key for key in params if key not in accepted]
    if unknown and not takes_any:
        hints = [difflib.get_close_matches(key, accepted, n=1) for key in unknown]
        hint = "".join(
            f" (did you mean {h[0]!r} for {key!r}?)" for key, h in zip(unknown, hints, strict=True) if h
        )
        raise EmbtuneError(
            f"{cls.__name__} got unknown parameter(s) {', '.join(unknown)}{hint}; "
            f"it accepts: {', '.join(accepted) or 'no parameters'}"
        )
    missing = [
        p.name
        for p in signature.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in params
    ]
    if missing:
        raise EmbtuneError(
            f"{cls.__name__} needs the parameter(s) {', '.join(missing)}; add them to the loss config"
        )


def build_loss(name: str, *, allow_custom_code: bool | None = None, **params: Any) -> Loss:
    """Build a loss from its registry name (alias or sentence-transformers class name) and parameters.

    A ``loss`` parameter given as a name or as a dict ``{"name": ..., **params}`` is built first, so
    wrappers work from YAML: ``build_loss("matryoshka", loss={"name": "mnrl"}, matryoshka_dims=[64, 32])``.

    ``package.module:Class`` names are imported only with ``allow_custom_code=True`` (or inside
    ``train(config, allow_custom_code=True)``), and only classes with the loss interface are accepted.

    Raises:
        EmbtuneError: unknown name (with a suggestion), custom code without the opt-in, unknown or missing parameters (listing the
            accepted ones), or invalid values.

    >>> build_loss("mnrl", scale=10.0).config()
    {'scale': 10.0, 'similarity_fct': 'cos_sim'}
    """
    cls = _lookup(name, allow_custom_code)
    inner = params.get("loss")
    if isinstance(inner, str):
        params["loss"] = build_loss(inner, allow_custom_code=allow_custom_code)
    elif isinstance(inner, dict):
        inner = dict(inner)
        if "name" not in inner:
            raise EmbtuneError(
                f"{cls.__name__}: the inner `loss` needs a `name`, e.g. {{name: mnrl}}; got {inner}"
            )
        params["loss"] = build_loss(inner.pop("name"), allow_custom_code=allow_custom_code, **inner)
    _check_params(cls, params)
    try:
        return cls(**params)
    except TypeError as err:
        raise EmbtuneError(f"{cls.__name__}: invalid parameters {params}: {err}") from None


__all__ = [
    "LOSSES",
    "CachedMultipleNegativesRankingLoss",
    "CoSENTLoss",
    "ContrastiveLoss",
    "CosineSimilarityLoss",
    "LabelSpec",
    "Loss",
    "MatryoshkaLoss",
    "ModelLoss",
    "MultipleNegativesRankingLoss",
    "MultipleNegativesSymmetricRankingLoss",
    "OnlineContrastiveLoss",
    "TripletLoss",
    "build_loss",
    "check_roles",
    "first_bad_label",
    "negative_roles",
]
