"""RunInfo: the typed facts a model card shows about one training run (``training/run_info.py`` fills it).

>>> info = RunInfo(base_model="bundled:all-MiniLM-L6-v2", train_datasets=[DatasetInfo(size=10)])
>>> info.train_datasets[0].size
10
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .._version import __version__


@dataclass
class LossInfo:
    """The loss trained on a dataset: ``loss.name``, ``loss.config()`` (None: not shown) and ``loss.citation``.

    ``wrapped`` holds the losses a wrapper applies (MatryoshkaLoss's inner loss): tagged and cited too.
    """

    name: str
    config: dict[str, Any] | None = None
    citation: str = ""
    wrapped: list[LossInfo] = field(default_factory=list)

    def all(self) -> list[LossInfo]:
        """This loss, then the ones it wraps."""
        return [self, *(inner for w in self.wrapped for inner in w.all())]


@dataclass
class ColumnStats:
    """min/mean/max of one source column over the first rows: token counts for text, values for the label."""

    column: str
    kind: str  # "string", "dict", "float", "int", "bool", "list" or "other"
    min: float | None
    mean: float | None
    max: float | None
    tokens: bool = True


@dataclass
class DatasetInfo:
    """One training or evaluation dataset. ``name`` None renders "Unnamed Dataset" (as the seed cards)."""

    name: str | None = None
    source: str | None = None  # e.g. the file name
    size: int | None = None
    columns: list[str] = field(default_factory=list)
    statistics: list[ColumnStats] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)  # a few rows: column -> value
    loss: LossInfo | None = None


@dataclass
class EvalInfo:
    """One evaluator's final metrics (and the base model's, for the comparison table).

    ``heading`` is the "#### ..." section (the evaluator's ``card_heading``); ``name`` its key prefix, which the
    tables leave out; ``evaluator_class`` links the sentence-transformers docs of the same evaluator.
    """

    heading: str = "Metrics"
    name: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_base: dict[str, float] | None = None
    primary_metric: str | None = None
    evaluator_class: str | None = None
    greater_is_better: bool = True


def framework_versions() -> dict[str, str]:
    """Versions of Python, embtune and the installed libraries it trains with."""
    found = {"Python": platform.python_version(), "embtune": __version__}
    for label, dist in [("Transformers", "transformers"), ("PyTorch", "torch"), ("Datasets", "datasets"),
                        ("Tokenizers", "tokenizers")]:
        try:
            found[label] = version(dist)
        except PackageNotFoundError:
            continue
    return found


@dataclass
class RunInfo:
    """Everything a model card shows; every field has a default, so a card can be written from any subset."""

    base_model: str | None = None
    base_model_revision: str | None = None
    architecture: str | None = None  # EmbeddingModel.architecture_repr()
    max_seq_length: int | None = None
    embedding_dim: int | None = None
    similarity_fn_name: str | None = None
    language: list[str] = field(default_factory=list)
    license: str | None = None
    model_id: str | None = None  # what the usage snippets load; None: a Hub placeholder
    train_datasets: list[DatasetInfo] = field(default_factory=list)
    eval_datasets: list[DatasetInfo] = field(default_factory=list)
    evaluations: list[EvalInfo] = field(default_factory=list)
    hyperparameters_all: dict[str, Any] = field(default_factory=dict)
    hyperparameters_non_default: dict[str, Any] = field(default_factory=dict)
    log_rows: list[dict[str, Any]] = field(default_factory=list)  # the loop's log (training_log.jsonl rows)
    adapter: dict[str, Any] | None = None  # LoRA config (kind, r, alpha, dropout, target_modules) of a LoRA run
    adapter_merged: bool = True  # the adapter was folded into the saved weights
    trainable_parameters: int | None = None
    total_parameters: int | None = None
    best_step: int | None = None  # the step of the saved (best) checkpoint, bold in the logs
    framework_versions: dict[str, str] = field(default_factory=framework_versions)
    tags: list[str] = field(default_factory=list)
    data_report: list[str] = field(default_factory=list)  # the data report's summary line and its warnings

    def losses(self) -> list[LossInfo]:
        """Every loss over the training datasets (wrapped ones included), first occurrence of each name."""
        found: dict[str, LossInfo] = {}
        for loss in (loss for d in self.train_datasets if d.loss for loss in d.loss.all()):
            found.setdefault(loss.name, loss)
        return list(found.values())
