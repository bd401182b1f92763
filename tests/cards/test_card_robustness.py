"""Card generation never fails: broken inputs give a card that says what could not be computed."""

from __future__ import annotations

import yaml
from card_helpers import parse_headings

from embtune.cards import DatasetInfo, EvalInfo, RunInfo, render_card, save_card


def _boom() -> dict:
    raise RuntimeError("tokenizer exploded")


class BrokenModel:
    """Every fact read from it raises."""

    def __getattr__(self, name: str):
        raise AttributeError(f"no {name} here")

    def architecture_repr(self) -> str:
        raise ValueError("no architecture")


def test_statistics_that_raise_render_a_note() -> None:
    dataset = DatasetInfo(size=3, columns=["a", "b"], statistics=_boom, samples=lambda: 1 / 0)
    card = render_card(RunInfo(datasets=[dataset]))
    assert "*Statistics could not be computed: RuntimeError: tokenizer exploded*" in card
    assert "*Samples could not be computed: ZeroDivisionError: division by zero*" in card
    assert "## Citation" in card  # the rest of the card is still there


def test_malformed_statistics_and_samples_render_a_note() -> None:
    dataset = DatasetInfo(columns=["a"], statistics=["not", "a", "dict"], samples=[42])
    card = render_card(RunInfo(datasets=[dataset]))
    assert "*Statistics could not be computed: TypeError" in card
    assert "*Samples could not be computed:" in card


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


def test_broken_model_and_garbage_fields_still_render() -> None:
    run = RunInfo(
        model=BrokenModel(),
        evaluations=[EvalInfo(metrics={"acc": "n/a", "f1": None}, primary_metric="acc")],
        log_rows=[{"step": "x", "loss": object()}, "not a row", {"epoch": float("nan")}],  # type: ignore[list-item]
        hyperparameters_all={"weird": object()},
        framework_versions={"Python": None},  # type: ignore[dict-item]
        language=["en", "da"],
    )
    card = render_card(run)
    assert "- **Output Dimensionality:** not recorded" in card
    assert yaml.safe_load(card.split("---\n")[1])["language"] == ["en", "da"]
    assert "### Training Logs" in card


def test_a_section_that_raises_keeps_its_heading_and_says_why(monkeypatch) -> None:
    from embtune.cards import training

    def explode(info):
        raise KeyError("lr")

    monkeypatch.setattr(training, "hyperparameters", explode)
    card = render_card(RunInfo())
    assert "### Training Hyperparameters\n\n*This section could not be computed: KeyError: 'lr'*" in card


def test_unusable_input_gives_a_minimal_card() -> None:
    card = render_card(["not", "a", "run"])  # type: ignore[arg-type]
    assert card.startswith("---\n")
    assert "*The run information could not be read: TypeError" in card


def test_dict_with_wrong_shapes_is_converted_leniently() -> None:
    card = render_card({"datasets": {"size": 7, "columns": ["a"]}, "evaluations": [3], "log_rows": []})
    assert "* Size: 7 training samples" in card


def test_save_card_survives_an_unwritable_folder(tmp_path) -> None:
    missing = tmp_path / "does-not-exist"
    assert save_card(RunInfo(), missing) is None
