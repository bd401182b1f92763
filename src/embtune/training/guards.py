"""Checks that keep a run from failing late or saving garbage.

Before the loop: ``check_metric_name`` (``metric_for_best_model`` is one of the keys the evaluators and
validation sets will report) and ``check_first_batches`` (every loss runs on a first batch of its dataset:
shape or role mismatches between data, model and loss surface in setup, not hours in). During the loop:
``NonFinite`` from a non-finite loss or gradient norm, turned into one line by ``non_finite_error``. Before
every save: ``check_finite_model``. (The JSON files a run writes are strict JSON: ``log.finite_json``.)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.collate import collate
from ..errors import EmbtuneError
from ..utils.seed import get_rng_state, set_rng_state
from . import checkpoint as ckpt


class NonFinite(Exception):
    """A non-finite training quantity (loss or gradient norm) at the current step; see ``non_finite_error``."""

    def __init__(self, what: str, value: float) -> None:
        super().__init__(f"{what} is {value}")
        self.what, self.value = what, value


def check_finite(what: str, value: Tensor | float) -> None:
    """Raise ``NonFinite`` when ``value`` is inf or NaN."""
    number = float(value)
    if not math.isfinite(number):
        raise NonFinite(what, number)


def non_finite_error(exc: NonFinite, step: int, dataset: str, output_dir: Path) -> EmbtuneError:
    """One line: what went non-finite, at which step and dataset, and the last good checkpoint to go back to."""
    last = ckpt.find_last_checkpoint(output_dir)
    where = f"the last good checkpoint is {last}" if last else "no checkpoint was saved yet"
    return EmbtuneError(
        f"training stopped at step {step} (dataset {dataset!r}): the {exc.what} is {exc.value} (not finite); "
        f"nothing was saved from this step, {where}; lower args.learning_rate, set args.max_grad_norm (e.g. 1.0) "
        "or check the dataset's labels, then start again"
        + (" or resume with resume_from_checkpoint: last" if last else "")
    )


FINITE_CHUNK = 1 << 22  # elements per slice of the exact check


def all_finite(tensor: Tensor) -> bool:
    """Whether every element of a floating-point ``tensor`` is finite, without tensor-sized temporaries.

    ``torch.isfinite(t).all()`` builds an absolute-value copy and two boolean masks: for bge-m3's 1 GB embedding
    matrix that was a 1.7 GB spike, the peak of a whole training run at its final save. A NaN or inf element
    makes the sum NaN or inf, so a finite sum proves every element finite (one pass, no copy). A sum that is not
    finite is checked exactly, a slice at a time, since finite values can also overflow the sum's dtype.
    """
    if bool(torch.isfinite(tensor.sum())):
        return True
    flat = tensor.detach().reshape(-1)
    return all(bool(torch.isfinite(flat[i:i + FINITE_CHUNK]).all()) for i in range(0, flat.numel(), FINITE_CHUNK))


def check_finite_model(model: nn.Module, where: Path) -> None:
    """Refuse to write a model with an inf / NaN weight to ``where``."""
    for name, param in model.state_dict().items():
        if param.is_floating_point() and not all_finite(param):
            raise EmbtuneError(
                f"{where}: not saved, weight {name!r} holds inf or NaN (training diverged); lower "
                "args.learning_rate or set args.max_grad_norm, then start again"
            )


# --- before the loop ------------------------------------------------------------------------------------


def known_metrics(data: list[Any], evaluators: list[Any]) -> list[str]:
    """Every key an evaluation during this run reports (``eval_`` prefixed), without running anything."""
    keys = [f"eval_{d.name}_loss" for d in data if d.eval is not None]
    if keys:
        keys.append("eval_loss")
    for evaluator in evaluators:
        names = getattr(evaluator, "metric_names", None)
        if names is None:  # a user's evaluator that cannot tell: its keys are only known after it ran
            return []
        keys += [f"eval_{k}" for k in names()]
    return keys


def check_metric_name(args: Any, data: list[Any], evaluators: list[Any]) -> None:
    """``metric_for_best_model`` (with or without ``eval_``) must be a key the evaluations will report."""
    if args.metric_for_best_model is None and not args.load_best_model_at_end:
        return
    keys = known_metrics(data, evaluators)
    if keys and args.best_metric not in keys:
        import difflib

        close = difflib.get_close_matches(args.best_metric, keys, n=1, cutoff=0.6)
        hint = f"did you mean {close[0].removeprefix('eval_')!r}? " if close else ""
        shown = ", ".join(k.removeprefix("eval_") for k in keys[:12]) + (", ..." if len(keys) > 12 else "")
        raise EmbtuneError(
            f"args.metric_for_best_model: {args.metric_for_best_model!r} is not a metric this run reports; "
            f"{hint}set it to one of: {shown}"
        )


def check_first_batches(model: nn.Module, data: list[Any], batch_size: int, device: torch.device) -> None:
    """Run each dataset's loss on its first rows (no gradient, eval mode: no randomness is consumed).

    Catches what only shows when tensors meet (a loss expecting another embedding size, labels of the wrong
    shape, a model whose modules do not fit together) before anything is trained or written.
    """
    was_training, rng = model.training, get_rng_state()
    model.eval()
    try:
        for d in data:
            batch = collate(d.train, list(range(min(batch_size, d.train.num_rows)))).to(device)
            labels = None if batch.labels is None else batch.labels.float()
            try:
                with torch.no_grad():
                    embeddings = {role: model(f).float() for role, f in batch.features.items()}
                    loss = d.loss(embeddings, labels)
            except EmbtuneError as exc:
                raise EmbtuneError(f"dataset {d.name!r}: {exc}") from None
            except (RuntimeError, ValueError, IndexError, TypeError) as exc:
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
                raise EmbtuneError(
                    f"dataset {d.name!r}: the loss {type(d.loss).__name__} cannot run on its first batch "
                    f"({type(exc).__name__}: {reason}); check the loss parameters against the model "
                    f"(embedding size {getattr(model, 'embedding_dim', '?')}) and the dataset's columns"
                ) from None
            if loss.ndim != 0:
                raise EmbtuneError(
                    f"dataset {d.name!r}: the loss {type(d.loss).__name__} returned shape {tuple(loss.shape)}, "
                    "not a scalar; a loss must reduce over the batch"
                )
    finally:
        model.train(was_training)
        set_rng_state(rng)  # losses that sample (Matryoshka dims) leave the run's random stream untouched
