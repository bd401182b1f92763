"""Model cards: ``render_card(RunInfo | dict) -> str`` (the README.md of a trained model) and helpers.

The trainer fills a RunInfo (or a dict with the same field names) and, after ``model.save(folder)``, calls
``save_card(info, folder)``, which also writes the loss/metric curve image the card links to.
"""

from __future__ import annotations

from .card import render_card, save_card
from .curves import plot_curves, write_curves
from .run_info import DatasetInfo, EvalInfo, RunInfo, framework_versions

__all__ = [
    "DatasetInfo",
    "EvalInfo",
    "RunInfo",
    "framework_versions",
    "plot_curves",
    "render_card",
    "save_card",
    "write_curves",
]
