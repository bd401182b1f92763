"""What can be checked before the training loop is checked there: evaluators report their metric keys
without running (so a misspelt ``metric_for_best_model`` fails in setup), a Dense layer that does not fit the
encoder fails at load (``embtune info`` too), and every loss runs once on a first batch before any step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import assert_one_line_error, pair_rows, snapshot, write_recipe

from embtune.cli import main
from embtune.evaluation import (
    BinaryClassificationEvaluator,
    EmbeddingSimilarityEvaluator,
    InformationRetrievalEvaluator,
    TripletEvaluator,
)
from embtune.models.dense import Dense
from embtune.models.embedding_model import EmbeddingModel
from embtune.models.pooling import Pooling

TEXTS = ["a", "b", "c", "d"]


class RandomModel:
    def encode(self, texts, batch_size=32, prompt=None, show_progress_bar=False):
        rng = np.random.default_rng(len(texts))
        return rng.normal(size=(len(texts), 4)).astype(np.float32)


@pytest.mark.parametrize("evaluator", [
    EmbeddingSimilarityEvaluator(TEXTS, TEXTS[::-1], [0.1, 0.5, 0.2, 0.9], name="sts"),
    EmbeddingSimilarityEvaluator(TEXTS, TEXTS[::-1], [0.1, 0.5, 0.2, 0.9], similarity_fn_names=["cosine", "dot"]),
    TripletEvaluator(TEXTS, TEXTS[::-1], TEXTS[1:] + TEXTS[:1], name="tri"),
    TripletEvaluator(TEXTS, TEXTS[::-1], TEXTS[1:] + TEXTS[:1], similarity_fn_names=["cosine", "euclidean"]),
    BinaryClassificationEvaluator(TEXTS, TEXTS[::-1], [0, 1, 0, 1], name="bin"),
    BinaryClassificationEvaluator(TEXTS, TEXTS[::-1], [0, 1, 0, 1], similarity_fn_names=["dot"]),
    InformationRetrievalEvaluator({"q1": "a", "q2": "b"}, {"d1": "c", "d2": "d", "d3": "a"},
                                  {"q1": {"d1"}, "q2": {"d2", "d3"}}, name="ir", ndcg_at_k=[1, 3], map_at_k=[2]),
], ids=lambda e: type(e).__name__)
def test_metric_names_are_exactly_the_keys_the_evaluator_returns(evaluator):
    names = evaluator.metric_names()
    assert names == list(evaluator(RandomModel()))
    assert evaluator.primary_metric in names


def test_misspelt_metric_fails_in_setup_not_after_the_first_evaluation(model_dir, tmp_path, capsys, monkeypatch):
    import embtune.training.loop as loop

    data = tmp_path / "pairs.csv"
    data.write_text("anchor,positive\n" + pair_rows(16, score=False))
    recipe = write_recipe(tmp_path, model_dir, data, args={
        "eval_strategy": "steps", "eval_steps": 1, "metric_for_best_model": "eval_pairs_los"})
    recipe.write_text(recipe.read_text().replace(f"path: {data}", f"path: {data}\n  eval_path: {data}"))
    evaluations = []
    monkeypatch.setattr(loop, "_evaluate", lambda *a, **k: evaluations.append(1) or {})
    code = main(["train", str(recipe)])
    assert_one_line_error(code, capsys.readouterr().err, "args.metric_for_best_model", "did you mean 'pairs_loss'")
    assert evaluations == []  # found before even the base model's evaluation


@pytest.fixture()
def misfit_dense(tiny_bert_dir: Path, tmp_path: Path) -> Path:
    """A model folder whose Dense takes 16 features while the encoder (and pooling) give 32."""
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    model.steps.append(Dense(16, 8))  # its weights fit its own config: only the chain is wrong
    return model.save(tmp_path / "misfit")


def test_dense_that_does_not_fit_the_encoder_fails_in_info(misfit_dense, capsys):
    code = main(["info", str(misfit_dense)])
    dense_dir = json.loads((misfit_dense / "modules.json").read_text())[-1]["path"]
    assert_one_line_error(code, capsys.readouterr().err, str(misfit_dense / dense_dir / "config.json"),
                          "in_features is 16", "outputs 32 features")


def test_dense_that_does_not_fit_fails_train_before_anything_is_written(misfit_dense, tmp_path, capsys):
    data = tmp_path / "pairs.csv"
    data.write_text("anchor,positive\n" + pair_rows(8, score=False))
    recipe = write_recipe(tmp_path, misfit_dense, data)
    before = snapshot(tmp_path)
    code = main(["train", str(recipe)])
    assert_one_line_error(code, capsys.readouterr().err, "in_features is 16")
    assert snapshot(tmp_path) == before


def test_a_loss_that_cannot_run_on_the_model_fails_in_setup(model_dir, tmp_path, capsys):
    """Matryoshka dims larger than the embedding: found on a first batch, before any step or file."""
    data = tmp_path / "pairs.csv"
    data.write_text("anchor,positive\n" + pair_rows(8, score=False))
    recipe = write_recipe(tmp_path, model_dir, data, loss={
        "name": "matryoshka", "loss": {"name": "mnrl"}, "matryoshka_dims": [64, 16]})
    before = snapshot(tmp_path)
    code = main(["train", str(recipe)])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "dataset 'pairs'")
    assert snapshot(tmp_path) == before


def test_pooling_and_dense_of_a_good_model_still_load(model_dir, tiny_bert_dir, tmp_path):
    model = EmbeddingModel.from_transformer(tiny_bert_dir, dense_dim=8)
    folder = model.save(tmp_path / "good")
    assert EmbeddingModel.load(folder).embedding_dim == 8
    two_modes = EmbeddingModel(model.transformer, [Pooling(32, ["mean", "max"]), Dense(64, 8)])
    assert EmbeddingModel.load(two_modes.save(tmp_path / "two")).embedding_dim == 8
