"""Loss/metric curves: a hand-written SVG without matplotlib, a PNG with it, linked from the card."""

from __future__ import annotations

import importlib.util
import xml.etree.ElementTree as ET

import pytest

from embtune.cards import RunInfo, plot_curves, save_card, write_curves
from embtune.cards.curves import curve_series

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
ROWS = [
    {"epoch": 0.5, "step": 10, "training_loss": 1.5},
    {"epoch": 1.0, "step": 20, "training_loss": 1.0, "validation_loss": 1.2, "dev_cosine_accuracy": 0.7},
    {"epoch": 1.5, "step": 30, "loss": 0.6},
    {"epoch": 2.0, "step": 40, "training_loss": 0.4, "validation_loss": 0.9, "dev_cosine_accuracy": 0.8},
]
SVG = "{http://www.w3.org/2000/svg}"


def test_series_split_losses_from_metrics() -> None:
    losses, metrics = curve_series(ROWS)
    assert losses["Training Loss"] == [(10, 1.5), (20, 1.0), (30, 0.6), (40, 0.4)]
    assert losses["Validation Loss"] == [(20, 1.2), (40, 0.9)]
    assert metrics == {"dev_cosine_accuracy": [(20, 0.7), (40, 0.8)]}


def test_svg_is_well_formed_with_one_line_per_series(tmp_path) -> None:
    path = tmp_path / "curves.svg"
    assert plot_curves(ROWS, path)
    root = ET.fromstring(path.read_text(encoding="utf-8"))
    assert root.tag == f"{SVG}svg"
    assert len(root.findall(f"{SVG}polyline")) == 3
    texts = {t.text for t in root.iter(f"{SVG}text")}
    assert {"Loss", "Metrics", "Training Loss", "Validation Loss", "dev_cosine_accuracy"} <= texts


def test_constant_and_single_point_series_do_not_divide_by_zero(tmp_path) -> None:
    assert plot_curves([{"step": 5, "training_loss": 1.0}], tmp_path / "one.svg")
    assert "circle" in (tmp_path / "one.svg").read_text()


def test_nothing_to_plot_writes_nothing(tmp_path) -> None:
    assert not plot_curves([], tmp_path / "empty.svg")
    assert not plot_curves([{"step": 1, "epoch": 0.1}], tmp_path / "empty.svg")
    assert not plot_curves(ROWS, tmp_path / "curves.gif")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(HAS_MATPLOTLIB, reason="checks the fallback when matplotlib is missing")
def test_without_matplotlib_png_is_refused_and_svg_is_written(tmp_path) -> None:
    assert not plot_curves(ROWS, tmp_path / "curves.png")
    assert write_curves(ROWS, tmp_path) == "training_curves.svg"
    assert (tmp_path / "training_curves.svg").is_file()


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="needs matplotlib (embtune[plots])")
def test_with_matplotlib_a_png_is_written(tmp_path) -> None:
    assert write_curves(ROWS, tmp_path) == "training_curves.png"
    assert (tmp_path / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_save_card_writes_the_curve_and_links_it(tmp_path) -> None:
    readme = save_card(RunInfo(log_rows=ROWS), tmp_path)
    assert readme == tmp_path / "README.md"
    card = readme.read_text(encoding="utf-8")
    image = "training_curves.png" if HAS_MATPLOTLIB else "training_curves.svg"
    assert f"![Training loss and metric curves]({image})" in card
    assert (tmp_path / image).is_file()


def test_save_card_without_logs_links_no_curve(tmp_path) -> None:
    card = save_card({"base_model": "org/m"}, tmp_path).read_text(encoding="utf-8")
    assert "training_curves" not in card
    assert not list(tmp_path.glob("training_curves.*"))
