"""Losses as math on embeddings, and the registry that builds them from names (YAML recipes).

Python users import the classes; recipes name them::

    build_loss("mnrl", scale=20.0)
    build_loss("MatryoshkaLoss", loss={"name": "cosent"}, matryoshka_dims=[32, 16])
    build_loss("mypackage.losses:MyLoss", alpha=0.1)   # escape hatch for your own loss
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from typing import Any

from ..errors import EmbtuneError
from .base import LabelSpec, Loss, ModelLoss, check_roles, first_bad_label, negative_roles
from .cached import CachedMultipleNegativesRankingLoss
from .contrastive import ContrastiveLoss, OnlineContrastiveLoss
from .cosent import CoSENTLoss
from .cosine_similarity import CosineSimilarityLoss
from .distill import DistillKLDivLoss, MarginMSELoss, MSELoss
from .gist import CachedGISTEmbedLoss, GISTEmbedLoss
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
    "mse": MSELoss,
    "MSELoss": MSELoss,
    "margin_mse": MarginMSELoss,
    "MarginMSELoss": MarginMSELoss,
    "distill_kl_div": DistillKLDivLoss,
    "DistillKLDivLoss": DistillKLDivLoss,
    "gist": GISTEmbedLoss,
    "GISTEmbedLoss": GISTEmbedLoss,
    "cached_gist": CachedGISTEmbedLoss,
    "CachedGISTEmbedLoss": CachedGISTEmbedLoss,
}


def _import_class(path: str) -> type:
    """``"package.module:Class"`` -> the class."""
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise EmbtuneError(
            f"loss {path!r}: cannot import module {module_name!r} ({err}); is it installed?"
        ) from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise EmbtuneError(f"loss {path!r}: module {module_name!r} has no attribute {attr!r}") from None


def _lookup(name: str) -> type:
    if not isinstance(name, str):
        raise EmbtuneError(f"a loss name must be a string such as 'mnrl', got {name!r}")
    if ":" in name:
        return _import_class(name)
    if name in LOSSES:
        return LOSSES[name]
    folded = {key.lower(): cls for key, cls in LOSSES.items()}
    if name.lower() in folded:
        return folded[name.lower()]
    close = difflib.get_close_matches(name, list(LOSSES), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise EmbtuneError(
        f"unknown loss {name!r}; {hint}known losses: {', '.join(LOSSES)} "
        "(or 'package.module:Class' for your own)"
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


def build_loss(name: str, **params: Any) -> Loss:
    """Build a loss from its registry name (alias or sentence-transformers class name) and parameters.

    A ``loss`` parameter given as a name or as a dict ``{"name": ..., **params}`` is built first, so
    wrappers work from YAML: ``build_loss("matryoshka", loss={"name": "mnrl"}, matryoshka_dims=[64, 32])``.

    Raises:
        EmbtuneError: unknown name (with a suggestion), unknown or missing parameters (listing the
            accepted ones), or invalid values.

    >>> build_loss("mnrl", scale=10.0).config()
    {'scale': 10.0, 'similarity_fct': 'cos_sim'}
    """
    cls = _lookup(name)
    inner = params.get("loss")
    if isinstance(inner, str):
        params["loss"] = build_loss(inner)
    elif isinstance(inner, dict):
        inner = dict(inner)
        if "name" not in inner:
            raise EmbtuneError(
                f"{cls.__name__}: the inner `loss` needs a `name`, e.g. {{name: mnrl}}; got {inner}"
            )
        params["loss"] = build_loss(inner.pop("name"), **inner)
    _check_params(cls, params)
    try:
        return cls(**params)
    except TypeError as err:
        raise EmbtuneError(f"{cls.__name__}: invalid parameters {params}: {err}") from None


__all__ = [
    "LOSSES",
    "CachedGISTEmbedLoss",
    "CachedMultipleNegativesRankingLoss",
    "CoSENTLoss",
    "ContrastiveLoss",
    "CosineSimilarityLoss",
    "DistillKLDivLoss",
    "GISTEmbedLoss",
    "MSELoss",
    "MarginMSELoss",
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
