"""Cards from sparse or odd inputs: every fixed section is there, odd values render, a failed write is clear."""

from __future__ import annotations

import pytest
import yaml
from card_helpers import parse_headings

from embtune.cards import ColumnStats, DatasetInfo, EvalInfo, RunInfo, render_card, save_card
from embtune.errors import EmbtuneError


def test_empty_run_info_renders_every_fixed_section() -> None:
    card = render_card(RunInfo())
    headings = parse_headings(card)
    for heading in [
        (1, "SentenceTransformer"),
        (2, "Model Details"),
        (3, "Full Model Architecture"),
        (2, "Usage"),
        (2, "Training Details"),
        (3, "Training Hyperparameters"),
        (3, "Framework Versions"),
        (2, "Citation"),
        (4, "Sentence Transformers"),
    ]:
        assert heading in headings
    assert "*The model architecture was not recorded.*" in card
    assert "*The training data was not recorded.*" in card


def test_nan_inf_and_missing_values_still_render() -> None:
    nan, inf = float("nan"), float("inf")
    run = RunInfo(
        train_datasets=[DatasetInfo(columns=["a"], statistics=[ColumnStats("a", "string", None, None, None)])],
        evaluations=[EvalInfo(metrics={"acc": nan, "f1": 0.5}, metrics_base={"f1": 0.25}, primary_metric="acc")],
        log_rows=[{"step": 1, "loss": nan}, {"step": 2, "eval_acc": inf}, {"epoch": 0.5}],
        framework_versions={},
        language=["en", "da"],
    )
    card = render_card(run)
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["language"] == ["en", "da"]
    assert [m["type"] for m in meta["model-index"][0]["results"][0]["metrics"]] == ["f1"]  # no NaN in metadata
    assert "| f1      | 0.25       | 0.5        | +0.2500 |" in card
    assert "| **acc** | -          | **nan**    | -       |" in card
    assert "<ul><li></li></ul>" in card and "* Samples:\n*No samples were recorded.*" in card
    logs = card.split("### Training Logs\n")[1]
    assert "nan" in logs.splitlines()[2] and "inf" in logs.splitlines()[3]
    assert "### Framework Versions\n*not recorded*" in card


def test_save_card_into_a_missing_folder_is_a_clear_error(tmp_path) -> None:
    missing = tmp_path / "does-not-exist"
    with pytest.raises(EmbtuneError, match="does-not-exist"):
        save_card(RunInfo(), missing)
