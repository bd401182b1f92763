"""Checks that run before ``train`` touches anything: names resolve, paths are safe, inputs are readable.

Called first by ``train``: a refusal here leaves every file as it was. It expands ``~`` in the path fields
of the config (in place), builds every loss once by name (registry names only, unless the caller opted in
to custom code), checks each input path (regular, readable file or folder) and the output folder
(``utils.paths.check_output_dir``).
"""

from __future__ import annotations

from pathlib import Path

from ..data.sources import split_path
from ..data.synthetic import PREFIX
from ..errors import EmbtuneError
from ..losses import build_loss
from ..utils.paths import check_output_dir, expand, input_path
from .config import TrainConfig


def preflight(config: TrainConfig) -> None:
    """Validate ``config`` before the run; see the module docstring.

    Raises:
        EmbtuneError: naming the recipe key (``datasets[0].loss``, ``args.output_dir``...) and the fix.
    """
    protected: list[tuple[str, Path]] = []
    recipe = getattr(config, "recipe_path", None)
    if recipe is not None:
        protected.append(("the recipe", Path(recipe)))
    model = _local(config.model.name)
    if model is not None:
        config.model.name = str(input_path(model, "model folder", key="model.name"))
        protected.append(("the base model", model))
    for i, d in enumerate(config.datasets):
        try:
            build_loss(d.loss.name, **dict(d.loss.params))
        except EmbtuneError as exc:
            raise EmbtuneError(f"datasets[{i}].loss: {exc}") from None
        for key in ("path", "eval_path"):
            value = getattr(d, key)
            if value and not value.startswith(PREFIX):
                setattr(d, key, _expanded(value))
                path = split_path(getattr(d, key))[0]
                input_path(path, "data file", key=f"datasets[{i}].{key}")
                protected.append(("the data file", path))
    for i, e in enumerate(config.eval.evaluators):
        if not e.path.startswith(PREFIX):
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


def _expanded(value: str) -> str:
    return str(expand(value))


def _local(name: str) -> Path | None:
    """The base model's folder when ``model.name`` is a local path (not bundled:, not a Hub id)."""
    if name.startswith("bundled"):
        return None
    path = expand(name)
    return path if path.exists() or name.startswith(("/", ".", "~")) else None
