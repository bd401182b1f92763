"""Model cards: ``render_card(RunInfo) -> str`` (the README.md of a trained model) and ``save_card``.

The trainer fills a ``RunInfo`` (``embtune.training.run_info``) and, after writing the model folder, calls
``save_card(info, folder)``.
"""

from __future__ import annotations

from .card import render_card, save_card
from .run_info import ColumnStats, DatasetInfo, EvalInfo, LossInfo, RunInfo, framework_versions

__all__ = ["ColumnStats", "DatasetInfo", "EvalInfo", "LossInfo", "RunInfo", "framework_versions", "render_card",
           "save_card"]
