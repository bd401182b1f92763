"""Card sections under "## Training Details": datasets, hyperparameters, training logs, framework versions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .front_matter import resolve_samples
from .markdown import (
    code_block,
    escape_cell,
    format_number,
    indent,
    join_names,
    make_table,
    note,
    sample_value,
)
from .run_info import DatasetInfo, RunInfo, framework_versions

SBERT_LOSS_DOCS = "https://sbert.net/docs/package_reference/sentence_transformer/losses.html"
STATISTICS_ROWS = 1000  # the rows PreparedDataset.statistics() covers by default
TEXT_TYPES = {"string", "str", "dict", "text"}


def guarded(what: str, fn: Callable[[], str]) -> str:
    """``fn()``, or a note saying ``what`` could not be computed (and why)."""
    try:
        return fn()
    except Exception as err:  # the card must render whatever the inputs
        return note(f"{what} could not be computed: {type(err).__name__}: {err}")


def _columns(dataset: DatasetInfo, stats: dict[str, Any] | None = None) -> list[str]:
    if dataset.columns:
        return [str(c) for c in dataset.columns]
    return [str(c) for c in (stats or {})]


def _details(column_stats: dict[str, Any]) -> str:
    kind = str(column_stats.get("type", ""))
    is_text = column_stats.get("role", "label") != "label" if "role" in column_stats else kind in TEXT_TYPES
    unit = " tokens" if is_text else ""
    items = []
    for key in ("min", "mean", "max"):
        value = column_stats.get(key)
        if value is None:
            continue
        items.append(f"<li>{key}: {format_number(value)}{unit}</li>")
    return f"<ul>{''.join(items) or '<li></li>'}</ul>"


def statistics_table(dataset: DatasetInfo) -> str:
    stats = dataset.statistics() if callable(dataset.statistics) else dataset.statistics
    if not stats:
        return note("Statistics were not recorded.")
    if not isinstance(stats, dict):
        raise TypeError(f"statistics must be a dict of column -> stats, got {type(stats).__name__}")
    columns = [c for c in _columns(dataset, stats) if c in stats] or list(stats)
    type_row = {"": "type", **{escape_cell(c): escape_cell(str(stats[c].get("type", ""))) for c in columns}}
    detail_row = {"": "details", **{escape_cell(c): _details(stats[c]) for c in columns}}
    return indent(make_table([type_row, detail_row]))


def samples_table(dataset: DatasetInfo) -> str:
    rows = resolve_samples(dataset)
    if not rows:
        return note("No samples were recorded.")
    columns = [c for c in _columns(dataset) if any(c in row for row in rows)]
    columns += [str(k) for row in rows for k in row if str(k) not in columns]
    columns = list(dict.fromkeys(columns))
    table_rows = [{escape_cell(c): sample_value(row[c]) if c in row else "" for c in columns} for row in rows]
    return indent(make_table(table_rows, columns=[escape_cell(c) for c in columns]))


def loss_line(dataset: DatasetInfo) -> str:
    from ..losses import LOSSES

    name = dataset.loss_name
    if not name:
        return "* Loss: " + note("not recorded")
    known = {cls.name for cls in LOSSES.values() if hasattr(cls, "name")}
    label = f"<code>{escape_cell(name)}</code>"
    link = f"[{label}]({SBERT_LOSS_DOCS}#{name.lower()})" if name in known else label
    if dataset.loss_config is None:
        return f"* Loss: {link}"
    config = json.dumps(dataset.loss_config, indent=4, default=str)
    return f"* Loss: {link} with these parameters:\n{indent(code_block(config, 'json'))}"


def _statistics_rows(dataset: DatasetInfo) -> str:
    if dataset.statistics_rows:
        return str(dataset.statistics_rows)
    if isinstance(dataset.size, int):
        return str(min(dataset.size, STATISTICS_ROWS))
    return str(STATISTICS_ROWS)


def dataset_block(dataset: DatasetInfo, kind: str) -> str:
    """One "#### <name>" block: size, columns, statistics, samples, loss."""
    lines = [f"#### {escape_cell(dataset.name) if dataset.name else 'Unnamed Dataset'}", ""]
    if dataset.name:
        lines.append(f"* Dataset: {escape_cell(dataset.name)}")
    if dataset.source:
        lines.append(f"* Source: `{escape_cell(dataset.source)}`")
    if isinstance(dataset.size, int):
        lines.append(f"* Size: {dataset.size:,} {kind} samples")
    columns = _columns(dataset)
    if columns:
        lines.append(f"* Columns: {join_names([f'<code>{escape_cell(c)}</code>' for c in columns])}")
    lines.append(f"* Approximate statistics based on the first {_statistics_rows(dataset)} samples:")
    lines.append(guarded("Statistics", lambda: statistics_table(dataset)))
    lines.append("* Samples:")
    lines.append(guarded("Samples", lambda: samples_table(dataset)))
    lines.append(guarded("The loss description", lambda: loss_line(dataset)))
    return "\n".join(lines)


def datasets_section(datasets: list[DatasetInfo], kind: str) -> str:
    """### Training Dataset(s) / ### Evaluation Dataset(s); more than 3 datasets fold into <details>."""
    heading = f"### {kind.title()} Dataset{'s' if len(datasets) > 1 else ''}"
    blocks = []
    for dataset in datasets:
        block = guarded(f"The {kind} dataset description", lambda d=dataset: dataset_block(d, kind))
        if len(datasets) > 3:
            summary = escape_cell(dataset.name) if dataset.name else "Unnamed Dataset"
            block = f"<details><summary>{summary}</summary>\n\n{block}\n\n</details>"
        blocks.append(block)
    return "\n\n".join([heading, *blocks])


def hyperparameters(info: RunInfo) -> str:
    def listing(params: dict[str, Any]) -> str:
        return "\n".join(f"- `{escape_cell(str(k))}`: {escape_cell(str(v))}" for k, v in params.items())

    lines = ["### Training Hyperparameters", "#### Non-Default Hyperparameters", ""]
    if info.hyperparameters_non_default:
        lines.append(listing(dict(info.hyperparameters_non_default)))
    else:
        lines.append(note("Every hyperparameter kept its default value."))
    lines += ["", "#### All Hyperparameters", "<details><summary>Click to expand</summary>", ""]
    if info.hyperparameters_all:
        lines.append(listing(dict(info.hyperparameters_all)))
    else:
        lines.append(note("The hyperparameters were not recorded."))
    lines += ["", "</details>"]
    return "\n".join(lines)


def versions(info: RunInfo) -> str:
    found = info.framework_versions if info.framework_versions is not None else framework_versions()
    lines = [f"- {escape_cell(str(k))}: {escape_cell(str(v))}" for k, v in dict(found).items()]
    return "### Framework Versions\n" + ("\n".join(lines) or note("not recorded"))
