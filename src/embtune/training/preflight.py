"""Checks that run before ``train`` touches anything: names resolve, paths are safe, inputs are readable.

Called first by ``train``: a refusal here leaves every file as it was. It expands ``~`` in the path fields
of the config (in place), builds every loss once by name (registry names only, unless the caller opted in
to custom code), checks each input path (regular, readable file or folder) and the output folder
(``utils.paths.check_output_dir``).
"""

from __future__ import annotations

import os
from pathlib import Path

from ..data.sources import split_path
from ..errors import EmbtuneError
from ..losses import CachedMultipleNegativesRankingLoss, MultipleNegativesRankingLoss, build_loss
from ..utils.paths import check_output_dir, expand, input_path
from .config import TrainConfig


def preflight(config: TrainConfig) -> None:
    """Validate ``config`` before the run; see the module docstring.

    Raises:
        EmbtuneError: naming the recipe file and key (``datasets[0].loss``, ``args.output_dir``...) and the fix.
    """
    recipe = getattr(config, "recipe_path", None)
    try:
        _preflight(config, recipe)
    except EmbtuneError as exc:
        if recipe is None or str(exc).startswith(str(recipe)):
            raise
        raise EmbtuneError(f"{recipe}: {exc}") from None


def _preflight(config: TrainConfig, recipe: Path | None) -> None:
    protected: list[tuple[str, Path]] = []
    if recipe is not None:
        protected.append(("the recipe", Path(recipe)))
    model = _local(config.model.name)
    if model is not None:
        config.model.name = str(input_path(model, "model folder", key="model.name"))
        protected.append(("the base model", model))
    for i, d in enumerate(config.datasets):
        try:
            loss = build_loss(d.loss.name, **dict(d.loss.params))
        except EmbtuneError as exc:
            raise EmbtuneError(f"datasets[{i}].loss: {exc}") from None
        _check_in_batch(loss, d, i, config.args.per_device_train_batch_size)
        for key in ("path", "eval_path"):
            value = getattr(d, key)
            if value:
                setattr(d, key, _expanded(value))
                path = split_path(getattr(d, key))[0]
                input_path(path, "data file", key=f"datasets[{i}].{key}")
                protected.append(("the data file", path))
    for i, e in enumerate(config.eval.evaluators):
        if e.path:
            e.path = _expanded(e.path)
            path = split_path(e.path)[0]
            input_path(path, "evaluation file", key=f"eval.evaluators[{i}].path")
            protected.append(("the evaluation file", path))
    args = config.args
    if args.cache_dir:
        args.cache_dir = _expanded(args.cache_dir)
    if args.resume_from_checkpoint and args.resume_from_checkpoint != "last":
        args.resume_from_checkpoint = _expanded(args.resume_from_checkpoint)
    args.output_dir = str(check_output_dir(args.output_dir, overwrite=args.overwrite_output_dir, protected=protected))


def _check_in_batch(loss: object, d, index: int, batch_size: int) -> None:
    """In-batch negatives with a global batch of one row and no hard negatives: loss 0, gradient 0."""
    inner = getattr(loss, "loss", loss)  # MatryoshkaLoss wraps its loss
    if not isinstance(inner, MultipleNegativesRankingLoss | CachedMultipleNegativesRankingLoss):
        return
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if batch_size * world < 2 and not d.columns.negatives:
        raise EmbtuneError(
            f"datasets[{index}].loss: {type(inner).__name__} contrasts each anchor with the other rows of its "
            "batch, and a batch of 1 row without negatives has none (loss 0, no gradient, nothing learned): set "
            "args.per_device_train_batch_size to 2 or more, or add columns.negatives"
        )


def _expanded(value: str) -> str:
    return str(expand(value))


def _local(name: str) -> Path | None:
    """The base model's folder when ``model.name`` is a local path (not bundled:, not a Hub id)."""
    if name.startswith("bundled"):
        return None
    path = expand(name)
    return path if path.exists() or name.startswith(("/", ".", "~")) else None
