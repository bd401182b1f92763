"""No curve image: the Training Logs table carries every point a loss/metric curve would plot."""

from __future__ import annotations

from embtune.cards import EvalInfo, RunInfo, render_card, save_card

ROWS = [
    {"epoch": 0.5, "step": 10, "loss": 1.5, "learning_rate": 2e-5},
    {"epoch": 1.0, "step": 20, "loss": 1.0},
    {"epoch": 1.0, "step": 20, "eval_loss": 1.2, "eval_dev_cosine_accuracy": 0.7},
    {"epoch": 1.5, "step": 30, "loss": 0.6},
    {"epoch": 2.0, "step": 40, "loss": 0.4},
    {"epoch": 2.0, "step": 40, "eval_loss": 0.9, "eval_dev_cosine_accuracy": 0.8},
]


def _logs_table(card: str) -> list[list[str]]:
    lines = card.split("### Training Logs\n")[1].split("\n\n")[0].splitlines()
    return [[c.strip().strip("*") for c in line.strip("|").split("|")] for line in lines[:1] + lines[2:]]


def test_every_logged_loss_and_metric_is_in_the_table_at_its_step() -> None:
    evaluation = EvalInfo(name="dev", metrics={"dev_cosine_accuracy": 0.8}, primary_metric="dev_cosine_accuracy")
    header, *rows = _logs_table(render_card(RunInfo(log_rows=ROWS, evaluations=[evaluation])))
    assert header == ["Epoch", "Step", "Training Loss", "Validation Loss", "dev_cosine_accuracy"]
    assert rows == [
        ["0.5", "10", "1.5", "-", "-"],
        ["1.0", "20", "1.0", "1.2", "0.7"],
        ["1.5", "30", "0.6", "-", "-"],
        ["2.0", "40", "0.4", "0.9", "0.8"],
    ]


def test_save_card_writes_only_the_readme(tmp_path) -> None:
    readme = save_card(RunInfo(log_rows=ROWS), tmp_path)
    assert readme == tmp_path / "README.md"
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]
    assert "![" not in readme.read_text(encoding="utf-8")
