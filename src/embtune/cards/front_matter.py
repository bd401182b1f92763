"""The card's YAML front matter: tags, base model, widget examples, metrics and model-index (HF Hub metadata)."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from .run_info import DatasetInfo, EvalInfo, RunInfo

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WIDGET_EXAMPLES = 5


def hub_base_model(info: RunInfo) -> str | None:
    """The base model as a Hub id (the bundled model maps to its Hub id); None for local paths."""
    base = info.base_model
    if not base:
        return None
    base = str(base)
    if base.startswith("bundled:"):
        from ..models.bundled import HUB_ID as BUNDLED_HUB_ID

        return BUNDLED_HUB_ID
    return base if HUB_ID.match(base) else None


def model_name(info: RunInfo) -> str:
    """The card title (and model-index name), in the seed cards' wording."""
    base = hub_base_model(info) or (Path(str(info.base_model)).name if info.base_model else None)
    return f"SentenceTransformer based on {base}" if base else "SentenceTransformer"


def total_train_size(info: RunInfo) -> int | None:
    sizes = [d.size for d in info.train_datasets if isinstance(d.size, int)]
    return sum(sizes) if sizes else None


def loss_names(info: RunInfo) -> list[str]:
    """Loss class names over all training datasets, wrapped losses included, without duplicates."""
    names: list[str] = []
    for dataset in info.train_datasets:
        if dataset.loss_name:
            names.append(dataset.loss_name)
        names.extend(dataset.inner_losses)
    return list(dict.fromkeys(names))


def resolve_samples(dataset: DatasetInfo) -> list[dict[str, Any]]:
    """The dataset's sample rows (calling a lazy ``samples``); raises what the callable raises."""
    samples = dataset.samples() if callable(dataset.samples) else dataset.samples
    return [dict(row) for row in (samples or [])]


def widget_examples(info: RunInfo) -> list[dict[str, Any]]:
    """``info.widget`` if given, else examples from the training samples: the first text column of a row
    as ``source_sentence`` and the other text columns (or the next rows' second column) as ``sentences``."""
    if info.widget is not None:
        return list(info.widget)[:WIDGET_EXAMPLES]
    examples: list[dict[str, Any]] = []
    for dataset in info.train_datasets:
        try:
            rows = resolve_samples(dataset)
        except Exception:  # no widget from this dataset; its section reports the error
            continue
        texts = [[v for v in row.values() if isinstance(v, str) and v.strip()] for row in rows]
        texts = [t for t in texts if len(t) >= 2]
        for i, row_texts in enumerate(texts):
            sentences = row_texts[1:]
            for other in texts[i + 1 :] + texts[:i]:
                if len(sentences) >= 3:
                    break
                sentences.append(other[1])
            if any(e["source_sentence"] == row_texts[0] for e in examples):
                continue
            examples.append({"source_sentence": row_texts[0], "sentences": sentences[:3]})
            if len(examples) >= WIDGET_EXAMPLES:
                return examples
    return examples


def strip_prefix(evaluation: EvalInfo, metrics: dict[str, Any]) -> dict[str, Any]:
    """Metric keys without the ``{name}_`` prefix (when every key has it), as the seed cards show them."""
    prefix = f"{evaluation.name}_" if evaluation.name else ""
    if prefix and metrics and all(str(k).startswith(prefix) for k in metrics):
        return {str(k)[len(prefix) :]: v for k, v in metrics.items()}
    return {str(k): v for k, v in metrics.items()}


def short_primary(evaluation: EvalInfo) -> str | None:
    """The primary metric's key as ``strip_prefix`` shows it."""
    primary = evaluation.primary_metric
    prefix = f"{evaluation.name}_" if evaluation.name else ""
    shown = strip_prefix(evaluation, evaluation.metrics)
    if primary and prefix and primary not in shown and primary.startswith(prefix):
        return primary[len(prefix) :]
    return primary


def as_float(value: Any) -> float | None:
    try:
        result = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(result) else result


def model_index(info: RunInfo) -> list[dict[str, Any]]:
    """The HF ``model-index`` entry: one result per evaluator, one metric per numeric value."""
    results = []
    for evaluation in info.evaluations:
        metrics = []
        for key, value in strip_prefix(evaluation, evaluation.metrics).items():
            number = as_float(value)
            if number is not None:
                metrics.append({"type": key, "value": number, "name": key.replace("_", " ").title()})
        if not metrics:
            continue
        name = evaluation.name
        results.append(
            {
                "task": {"type": evaluation.title.lower().replace(" ", "-"), "name": evaluation.title},
                "dataset": {
                    "name": name.replace("_", " ").replace("-", " ") if name else "Unknown",
                    "type": name or "unknown",
                },
                "metrics": metrics,
            }
        )
    return [{"name": model_name(info), "results": results}] if results else []


def front_matter(info: RunInfo) -> str:
    """The ``---``-delimited YAML block at the top of the card."""
    data: dict[str, Any] = {}
    if info.language:
        data["language"] = [info.language] if isinstance(info.language, str) else list(info.language)
    if info.license:
        data["license"] = str(info.license)
    tags = ["sentence-transformers", "sentence-similarity", "feature-extraction", "embtune"]
    size = total_train_size(info)
    if size is not None:
        tags.append(f"dataset_size:{size}")
    tags += [f"loss:{name}" for name in loss_names(info)]
    tags += [str(t) for t in info.tags]
    data["tags"] = list(dict.fromkeys(tags))
    if base := hub_base_model(info):
        data["base_model"] = base
    if widget := widget_examples(info):
        data["widget"] = widget
    data["pipeline_tag"] = "sentence-similarity"
    data["library_name"] = "sentence-transformers"
    if index := model_index(info):
        keys = [m["type"] for result in index[0]["results"] for m in result["metrics"]]
        data["metrics"] = list(dict.fromkeys(keys))
        data["model-index"] = index
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
    return f"---\n{text}---"
