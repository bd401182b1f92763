"""Adding an evaluator is one class + one registry line: config validation, files and the CLI pick it up."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest

from embtune.cli import build_parser, main
from embtune.errors import EmbtuneError
from embtune.evaluation import EVALUATORS, Encoder, default_columns, evaluator_from_file
from embtune.models.embedding_model import EmbeddingModel
from embtune.training.config import EvaluatorCfg


class NormEvaluator:
    """A new evaluator, written only for this test: the mean L2 norm of the embeddings of ``texts``."""

    greater_is_better = True
    file_columns: ClassVar[dict[str, str]] = {"texts": "text"}

    def __init__(self, texts: list[str], name: str = "") -> None:
        self.texts, self.name = list(texts), name
        self.primary_metric = f"{name}_mean_norm" if name else "mean_norm"

    def __call__(self, model: Encoder) -> dict[str, float]:
        emb = np.asarray(model.encode(self.texts, batch_size=8))
        return {self.primary_metric: float(np.linalg.norm(emb, axis=1).mean())}


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(EVALUATORS, "norm", NormEvaluator)  # the one registry line
    return NormEvaluator


def test_config_accepts_a_registered_evaluator_and_rejects_others(registered) -> None:
    assert EvaluatorCfg(kind="norm", path="dev.csv").kind == "norm"
    with pytest.raises(EmbtuneError, match="'nrom' is not one of .*norm"):
        EvaluatorCfg(kind="nrom", path="dev.csv")


def test_unregistered_evaluator_is_refused_by_config() -> None:
    with pytest.raises(EmbtuneError, match="'norm' is not one of"):
        EvaluatorCfg(kind="norm", path="dev.csv")


def test_cli_help_lists_the_registered_evaluator(registered) -> None:
    eval_parser = build_parser()._subparsers._group_actions[0].choices["eval"]  # type: ignore[union-attr]
    assert "norm" in eval_parser.format_help()


def test_file_columns_and_cli_run_use_the_class(registered, tiny_bert_dir, tmp_path, capsys) -> None:
    assert default_columns("norm") == {"texts": "text"}
    data = tmp_path / "dev.csv"
    data.write_text("text\na cat\nthe road is long\n", encoding="utf-8")
    model_dir = EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True).save(tmp_path / "m")
    ev = evaluator_from_file("norm", data, name="dev")
    assert isinstance(ev, NormEvaluator) and ev.texts == ["a cat", "the road is long"]
    assert main(["eval", str(model_dir), "--data", str(data), "--evaluator", "norm", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == pytest.approx({"mean_norm": 1.0}, abs=1e-4)  # normalize=True: every embedding has norm 1
