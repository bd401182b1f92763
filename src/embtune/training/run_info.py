"""From the finished run to its model card: the one adapter from loop state to ``embtune.cards.RunInfo``.

``write_card`` is also the one place that guards the card: any failure while describing the run or rendering
the card is one warning line, never an exception, so a card bug can never cost the trained model.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ..cards import DatasetInfo, EvalInfo, LossInfo, RunInfo, save_card
from ..cards.dataset_stats import dataset_info
from ..data.prepare import PreparedDataset
from ..data.sources import load_table
from ..losses.base import Loss
from ..models.embedding_model import EmbeddingModel
from .build import TrainData
from .checkpoint import TrainState
from .config import TrainConfig

logger = logging.getLogger(__name__)


def write_card(
    folder: Path,
    config: TrainConfig,
    model: EmbeddingModel,
    data: list[TrainData],
    evaluators: list[Any],
    state: TrainState,
    final_metrics: dict[str, float],
) -> Path | None:
    """Write README.md into ``folder`` (which already holds the model); on any error warn and return None."""
    try:
        return save_card(run_info(config, model, data, evaluators, state, final_metrics), folder)
    except Exception as err:  # the one guard around the card: the model is saved either way
        logger.warning("the model card was not written (%s: %s); the model itself is saved", type(err).__name__,
                       str(err).replace("\n", " "))
        return None


def run_info(
    config: TrainConfig,
    model: EmbeddingModel,
    data: list[TrainData],
    evaluators: list[Any],
    state: TrainState,
    final_metrics: dict[str, float],
) -> RunInfo:
    """Everything the card shows about the run: model facts, datasets, evaluators (base vs final), log.

    ``state.base_metrics`` / ``final_metrics`` are the loop's metrics (``eval_``-prefixed); each evaluator gets
    back its own keys (``{name}_{metric}``).
    """
    cache_dir = config.args.resolved_cache_dir()

    def describe(prepared: PreparedDataset, d: TrainData) -> DatasetInfo:
        source = load_table(prepared.path, d.cfg.format, cache_dir=cache_dir).data.table
        return dataset_info(prepared, source, d.cfg.template, loss_info(d.loss))

    best = state.best_checkpoint
    adapter = getattr(model, "adapter_info", None)  # set by models.adapters.with_adapter on LoRA runs
    return RunInfo(
        base_model=config.model.name,
        architecture=model.architecture_repr(),
        max_seq_length=model.max_seq_length,
        embedding_dim=model.embedding_dim,
        similarity_fn_name=model.similarity_fn_name,
        train_datasets=[describe(d.train, d) for d in data],
        eval_datasets=[describe(d.eval, d) for d in data if d.eval is not None],
        evaluations=[eval_info(ev, final_metrics, state.base_metrics) for ev in evaluators],
        hyperparameters_all=config.args.to_dict(),
        hyperparameters_non_default=config.args.non_default(),
        log_rows=list(state.log),
        best_step=int(best.rsplit("-", 1)[1]) if best else None,
        data_report=data_report_lines(Path(config.args.output_dir)),
        adapter=None if adapter is None else adapter.config,
        adapter_merged=config.model.adapter is None or config.model.adapter.save == "merged",
        trainable_parameters=None if adapter is None else adapter.trainable_parameters,
        total_parameters=None if adapter is None else adapter.total_parameters,
    )


def data_report_lines(output_dir: Path) -> list[str]:
    """The data report's summary and its warnings/errors, from the JSON ``train`` wrote before training."""
    from ..report.run import REPORT_FILE

    path = output_dir / REPORT_FILE
    if not path.is_file():
        return []
    raw = json.loads(path.read_text(encoding="utf-8"))
    lines = [raw["summary"].split(" -> ")[0] + f" (full report: {REPORT_FILE})"]
    for d in raw["datasets"]:
        lines += [f"{d['name']} ({d['split']}): {f['message']}" for f in d["findings"] if f["severity"] != "info"]
    return lines


def loss_info(loss: Loss) -> LossInfo:
    """Name, parameters and citation of a loss; a wrapper (``MatryoshkaLoss``) also names the loss it wraps."""
    inner = getattr(loss, "loss", None)
    wrapped = [loss_info(inner)] if isinstance(inner, Loss) else []
    return LossInfo(name=loss.name, config=dict(loss.config()), citation=loss.citation, wrapped=wrapped)


def eval_info(evaluator: Any, final_metrics: dict[str, float], base_metrics: dict[str, float]) -> EvalInfo:
    """One evaluator's final and base metrics (its own keys, the loop's ``eval_`` prefix removed)."""
    prefix = f"eval_{evaluator.name}_" if evaluator.name else "eval_"

    def own(metrics: dict[str, float]) -> dict[str, float]:
        return {k.removeprefix("eval_"): v for k, v in metrics.items() if k.startswith(prefix)
                and not k.endswith("_loss")}

    cls = type(evaluator)
    return EvalInfo(
        heading=getattr(cls, "card_heading", cls.__name__),
        name=evaluator.name,
        metrics=own(final_metrics),
        metrics_base=own(base_metrics) or None,
        primary_metric=evaluator.primary_metric,
        evaluator_class=cls.__name__,
        greater_is_better=evaluator.greater_is_better,
    )
