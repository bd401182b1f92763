"""A trained dataset as the card describes it: size, columns, statistics and sample rows.

Computed once, when the card is written, from the ``PreparedDataset`` (token counts as the model saw them:
rendered, prompt and special tokens included, truncated; the labels) and the source table the training
handed over (column types, the sample rows rendered with the dataset's template, prompts not applied).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from ..data.prepare import PreparedDataset
from ..data.render import PerRole, column_kind, for_role, render_column
from .run_info import ColumnStats, DatasetInfo, LossInfo

STATISTICS_ROWS = 1000  # the card describes the first 1000 rows, as sentence-transformers does
SAMPLE_ROWS = 3


def column_statistics(
    prepared: PreparedDataset, source: pa.Table, max_rows: int = STATISTICS_ROWS
) -> list[ColumnStats]:
    """Per source column over the first ``max_rows`` rows: type and min/mean/max (mean rounded to 2 decimals).

    Text columns count tokens; the label column summarises its values.
    """
    n = min(max_rows, prepared.num_rows)
    stats = [
        _summary(prepared.columns[role], source, prepared.lengths[:n, j], tokens=True)
        for j, role in enumerate(prepared.roles)
    ]
    if prepared.labels is not None:
        stats.append(_summary(prepared.columns["label"], source, prepared.labels[:n], tokens=False))
    return stats


def sample_rows(
    prepared: PreparedDataset, source: pa.Table, template: PerRole = None, n: int = SAMPLE_ROWS
) -> list[dict[str, object]]:
    """The first ``n`` rows as column -> rendered text (templates applied, prompts not) or label value."""
    head = source.slice(0, n)
    rows: list[dict[str, object]] = [{} for _ in range(head.num_rows)]
    for role in prepared.roles:
        column = prepared.columns[role]
        texts = render_column(head.column(column), column=column, template=for_role(template, role),
                              path=prepared.path)
        for row, text in zip(rows, texts, strict=True):
            row[column] = text
    if "label" in prepared.columns:
        label = prepared.columns["label"]
        for row, value in zip(rows, head.column(label).to_pylist(), strict=True):
            row[label] = value
    return rows


def dataset_info(
    prepared: PreparedDataset, source: pa.Table, template: PerRole = None, loss: LossInfo | None = None
) -> DatasetInfo:
    """The card's DatasetInfo for a prepared dataset, its source table and the loss trained on it."""
    return DatasetInfo(
        name=prepared.name,
        source=Path(str(prepared.path)).name,
        size=prepared.num_rows,
        columns=[prepared.columns[role] for role in [*prepared.roles, "label"] if role in prepared.columns],
        statistics=column_statistics(prepared, source),
        samples=sample_rows(prepared, source, template),
        loss=loss,
    )


def _summary(column: str, source: pa.Table, values: np.ndarray, tokens: bool) -> ColumnStats:
    kind = column_kind(source.schema.field(column).type)
    if values.size == 0:
        return ColumnStats(column, kind, None, None, None, tokens)
    flat = values.astype(np.float64).ravel()
    low, high, mean = flat.min(), flat.max(), round(float(flat.mean()), 2)
    if tokens:
        return ColumnStats(column, kind, int(low), mean, int(high), tokens)
    return ColumnStats(column, kind, float(low), mean, float(high), tokens)
