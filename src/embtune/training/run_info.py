"""The hook between the training loop and the model card (``embtune.cards``).

``build_run_info`` collects what the card shows (base model, datasets with sizes/columns/statistics/samples
and their losses, evaluators with base vs final metrics, all and non-default hyperparameters, the log) into
``embtune.cards.RunInfo``; ``write_card`` renders README.md (and the curve image) into the model folder.
Both degrade to "no card" when ``embtune.cards`` is not available.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def build_run_info(
    base_model: str,
    model: Any,
    data: list[Any],
    evaluators: list[Any],
    base_metrics: dict[str, float],
    final_metrics: dict[str, float],
    args: Any,
    log: list[dict[str, Any]],
    best_checkpoint: str | None,
) -> Any | None:
    """An ``embtune.cards.RunInfo`` for the finished run, or None when the cards module is missing.

    ``base_metrics`` / ``final_metrics`` are the loop's metrics (keys with the ``eval_`` prefix); each
    evaluator gets back its own keys (``{name}_{metric}``).
    """
    try:
        from ..cards import DatasetInfo, EvalInfo, RunInfo
    except ImportError:
        return None
    datasets = []
    for d in data:
        datasets.append(DatasetInfo.from_prepared(d.train, d.loss, split="train"))
        if d.eval is not None:
            datasets.append(DatasetInfo.from_prepared(d.eval, d.loss, split="eval"))
    evaluations = [
        EvalInfo.from_evaluator(ev, _own(final_metrics, ev.name), _own(base_metrics, ev.name) or None)
        for ev in evaluators
    ]
    best_step = int(best_checkpoint.rsplit("-", 1)[1]) if best_checkpoint else None
    return RunInfo(
        base_model=base_model,
        model=model,
        datasets=datasets,
        evaluations=evaluations,
        hyperparameters_all=args.to_dict(),
        hyperparameters_non_default=args.non_default(),
        log_rows=list(log),
        best_step=best_step,
    )


def _own(metrics: dict[str, float], name: str) -> dict[str, float]:
    """The metrics of the evaluator called ``name``, with the loop's ``eval_`` prefix removed."""
    prefix = f"eval_{name}_" if name else "eval_"
    return {k[len("eval_"):]: v for k, v in metrics.items() if k.startswith(prefix) and not k.endswith("_loss")}


def write_card(info: Any | None, folder: Path) -> None:
    """HOOK: README.md (+ curves) via ``embtune.cards.save_card``; nothing when there is no card support."""
    if info is None:
        return
    try:
        from ..cards import save_card
    except ImportError:
        return
    save_card(info, folder)
