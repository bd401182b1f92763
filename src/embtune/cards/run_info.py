"""RunInfo: every fact a model card shows about a training run, all optional with safe defaults.

The trainer fills one ``RunInfo`` (or a plain dict with the same field names) and calls ``render_card``.
Values may also be zero-argument callables for ``DatasetInfo.statistics`` / ``samples``: they are called
while the card renders, inside the guard, so a failure there costs one line of the card, not the save.

>>> info = RunInfo(base_model="bundled:all-MiniLM-L6-v2", datasets=[DatasetInfo(size=10, columns=["a", "b"])])
>>> info.train_datasets[0].size
10
"""

from __future__ import annotations

import dataclasses
import logging
import platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

# Evaluator class -> the heading sentence-transformers uses for its metrics ("#### Triplet").
EVALUATOR_KINDS = {
    "TripletEvaluator": "Triplet",
    "EmbeddingSimilarityEvaluator": "Semantic Similarity",
    "InformationRetrievalEvaluator": "Information Retrieval",
    "BinaryClassificationEvaluator": "Binary Classification",
}


@dataclass
class DatasetInfo:
    """One training or evaluation dataset as the card describes it.

    Attributes:
        name: shown as the heading; None gives "Unnamed Dataset" (as the seed cards).
        source: where the data came from, e.g. the file name; shown under the heading.
        split: "train" or "eval".
        size: number of rows.
        columns: source column names in order (text columns, then the label).
        statistics: ``PreparedDataset.statistics()`` output, or a callable returning it.
        statistics_rows: rows the statistics cover; default ``min(size, 1000)``.
        samples: a few rows as column -> value dicts, or a callable returning them.
        loss_name / loss_config / loss_citation: the loss trained on this dataset (``loss.name``,
            ``loss.config()``, ``loss.citation``).
        inner_losses: losses wrapped by ``loss_name`` (e.g. MatryoshkaLoss's inner loss), name -> BibTeX.
    """

    name: str | None = None
    source: str | None = None
    split: str = "train"
    size: int | None = None
    columns: list[str] = field(default_factory=list)
    statistics: dict[str, dict[str, Any]] | Callable[[], dict[str, dict[str, Any]]] | None = None
    statistics_rows: int | None = None
    samples: list[dict[str, Any]] | Callable[[], list[dict[str, Any]]] | None = None
    loss_name: str | None = None
    loss_config: dict[str, Any] | None = None
    loss_citation: str = ""
    inner_losses: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_prepared(cls, prepared: Any, loss: Any = None, split: str = "train") -> DatasetInfo:
        """Describe an ``embtune.data.PreparedDataset`` and the loss trained on it.

        Only a name set explicitly in the DatasetSpec becomes the heading (like sentence-transformers, which
        names Hub datasets only); the file name is shown as the source. Statistics and samples stay lazy
        (bound methods), so computing them happens under the card's guard.
        """
        columns = [prepared.columns[role] for role in prepared.roles]
        if "label" in prepared.columns:
            columns.append(prepared.columns["label"])
        info = cls(
            name=getattr(getattr(prepared, "spec", None), "name", None),
            source=Path(str(prepared.path)).name if getattr(prepared, "path", None) else None,
            split=split,
            size=prepared.num_rows,
            columns=columns,
            statistics=prepared.statistics,
            samples=prepared.samples,
        )
        if loss is not None:
            info.set_loss(loss)
        return info

    def set_loss(self, loss: Any) -> None:
        """Copy name, config and citation from an embtune loss (anything with ``name``/``config()``)."""
        self.loss_name = getattr(loss, "name", None) or type(loss).__name__
        try:
            self.loss_config = dict(loss.config())
        except Exception as err:  # the card says so instead of failing
            logger.warning("model card: %s.config() failed: %s", self.loss_name, err)
            self.loss_config = None
        self.loss_citation = getattr(loss, "citation", "") or ""
        inner = getattr(loss, "loss", None)
        if inner is not None and hasattr(inner, "config"):
            self.inner_losses[getattr(inner, "name", type(inner).__name__)] = (
                getattr(inner, "citation", "") or ""
            )


@dataclass
class EvalInfo:
    """Results of one evaluator on the fine-tuned model (and on the base model, for the comparison).

    Attributes:
        kind: heading, e.g. "Triplet", "Semantic Similarity"; default from ``evaluator_class``.
        name: the evaluator's ``name`` (dataset name); metric keys prefixed ``{name}_`` are shown without it.
        metrics: final metrics of the fine-tuned model.
        metrics_base: the same metrics for the base model (None: not evaluated).
        primary_metric: key of the metric shown in bold.
        evaluator_class: e.g. "TripletEvaluator" (linked to the sentence-transformers docs).
        greater_is_better: direction of ``primary_metric`` (which training-log row is best).
    """

    kind: str | None = None
    name: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    metrics_base: dict[str, Any] | None = None
    primary_metric: str | None = None
    evaluator_class: str | None = None
    greater_is_better: bool = True

    @classmethod
    def from_evaluator(
        cls, evaluator: Any, metrics: Mapping[str, Any], metrics_base: Mapping[str, Any] | None = None
    ) -> EvalInfo:
        """Build from an embtune evaluator and the dicts it returned for the fine-tuned and base model."""
        class_name = type(evaluator).__name__
        return cls(
            kind=EVALUATOR_KINDS.get(class_name),
            name=getattr(evaluator, "name", "") or "",
            metrics=dict(metrics),
            metrics_base=dict(metrics_base) if metrics_base is not None else None,
            primary_metric=getattr(evaluator, "primary_metric", None),
            evaluator_class=class_name,
            greater_is_better=bool(getattr(evaluator, "greater_is_better", True)),
        )

    @property
    def title(self) -> str:
        """The "#### ..." heading of this evaluator's metrics."""
        return (
            self.kind
            or EVALUATOR_KINDS.get(self.evaluator_class or "", None)
            or self.evaluator_class
            or "Metrics"
        )


@dataclass
class RunInfo:
    """Everything a model card needs; every field is optional.

    Model facts (architecture, max_seq_length, embedding_dim, similarity_fn_name) given explicitly win over
    those read from ``model`` (an ``EmbeddingModel``). ``framework_versions=None`` collects the installed
    versions at render time; ``widget=None`` takes widget examples from the training samples.
    """

    base_model: str | None = None
    base_model_revision: str | None = None
    model: Any = None
    architecture: str | None = None
    max_seq_length: int | None = None
    embedding_dim: int | None = None
    similarity_fn_name: str | None = None
    language: str | list[str] | None = None
    license: str | None = None
    model_id: str | None = None
    datasets: list[DatasetInfo] = field(default_factory=list)
    eval_datasets: list[DatasetInfo] = field(default_factory=list)
    evaluations: list[EvalInfo] = field(default_factory=list)
    hyperparameters_all: dict[str, Any] = field(default_factory=dict)
    hyperparameters_non_default: dict[str, Any] = field(default_factory=dict)
    log_rows: list[dict[str, Any]] = field(default_factory=list)
    best_step: int | None = None
    framework_versions: dict[str, str] | None = None
    widget: list[dict[str, Any]] | None = None
    curve_image: str | None = None
    tags: list[str] = field(default_factory=list)

    @property
    def train_datasets(self) -> list[DatasetInfo]:
        """Datasets with split "train" (anything but "eval")."""
        return [d for d in self.datasets if d.split != "eval"]

    @property
    def all_eval_datasets(self) -> list[DatasetInfo]:
        """Datasets with split "eval" from ``datasets``, then ``eval_datasets``."""
        return [d for d in self.datasets if d.split == "eval"] + list(self.eval_datasets)

    def model_fact(self, name: str) -> Any:
        """An explicit model fact, else the one read from ``model`` (None when neither is known)."""
        value = getattr(self, name)
        if value is not None or self.model is None:
            return value
        readers: dict[str, Callable[[Any], Any]] = {
            "architecture": lambda m: m.architecture_repr(),
            "max_seq_length": lambda m: m.max_seq_length,
            "embedding_dim": lambda m: m.embedding_dim,
            "similarity_fn_name": lambda m: m.similarity_fn_name,
        }
        try:
            return readers[name](self.model)
        except Exception as err:  # a missing fact is shown as unknown
            logger.debug("model card: cannot read %s from the model: %s", name, err)
            return None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunInfo:
        """Lenient conversion: nested dicts become DatasetInfo/EvalInfo, unknown keys are ignored with a warning."""
        return _build(
            cls, data, nested={"datasets": DatasetInfo, "eval_datasets": DatasetInfo, "evaluations": EvalInfo}
        )


def _build(cls: type, data: Mapping[str, Any], nested: dict[str, type] | None = None) -> Any:
    nested = nested or {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        logger.warning("model card: ignoring unknown %s fields %s", cls.__name__, unknown)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names or value is None and key in nested:
            continue
        if key in nested:
            items = value if isinstance(value, list | tuple) else [value]
            kwargs[key] = [_coerce(nested[key], item) for item in items]
            kwargs[key] = [item for item in kwargs[key] if item is not None]
        else:
            kwargs[key] = value
    return cls(**kwargs)


def _coerce(cls: type, item: Any) -> Any:
    if isinstance(item, cls):
        return item
    if isinstance(item, Mapping):
        return _build(cls, item)
    logger.warning("model card: dropping a %s entry of type %s", cls.__name__, type(item).__name__)
    return None


def as_run_info(info: RunInfo | Mapping[str, Any]) -> RunInfo:
    """A RunInfo from a RunInfo or a plain dict with the same field names."""
    if isinstance(info, RunInfo):
        return info
    if isinstance(info, Mapping):
        return RunInfo.from_dict(info)
    raise TypeError(f"render_card needs a RunInfo or a dict, got {type(info).__name__}")


def framework_versions() -> dict[str, str]:
    """Versions of Python, embtune and the libraries it trains with (those installed)."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    versions = {"Python": platform.python_version(), "embtune": __version__}
    for label, dist in [
        ("Transformers", "transformers"),
        ("PyTorch", "torch"),
        ("Datasets", "datasets"),
        ("Tokenizers", "tokenizers"),
    ]:
        try:
            versions[label] = version(dist)
        except PackageNotFoundError:
            continue
    return versions
