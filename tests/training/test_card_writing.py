"""The loop writes the model card through one guard: a card bug costs the README, never the trained model."""

from __future__ import annotations

import logging

from embtune import EmbeddingModel
from embtune.cards import card
from embtune.training.loop import train
from embtune.training.recipe import config_from_dict


def _quick(tiny_bert_dir, pairs_file, out, config_factory):
    return config_from_dict(config_factory(tiny_bert_dir, pairs_file, out, max_steps=2, save_strategy="no"))


def test_the_card_describes_the_trained_model_and_data(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    out = tmp_path / "run"
    train(_quick(tiny_bert_dir, pairs_file, out, config_factory))
    model, readme = EmbeddingModel.load(out), (out / "README.md").read_text(encoding="utf-8")
    assert f"- **Maximum Sequence Length:** {model.max_seq_length} tokens" in readme
    assert f"- **Output Dimensionality:** {model.embedding_dim} dimensions" in readme
    assert model.architecture_repr() in readme
    block = readme.split("#### pairs\n", 1)[1].split("### Training Hyperparameters", 1)[0]
    assert "* Source: `pairs.jsonl`\n* Size: 48 training samples" in block
    assert "<li>min: " in block and "<code>the " in block  # statistics and samples from the source table
    assert "[<code>MultipleNegativesRankingLoss</code>]" in block


def test_a_failing_card_keeps_the_model_and_warns_in_one_line(
    tiny_bert_dir, pairs_file, tmp_path, config_factory, monkeypatch, caplog
):
    def explode(info):
        raise RuntimeError("template exploded\nsecond line")

    monkeypatch.setattr(card, "render_card", explode)
    out = tmp_path / "run"
    with caplog.at_level(logging.WARNING):
        result = train(_quick(tiny_bert_dir, pairs_file, out, config_factory))
    assert result.model_path == out
    assert EmbeddingModel.load(out).encode(["the red cat"]).shape == (1, 32)  # the trained model is saved
    assert not (out / "README.md").exists()
    (record,) = [r for r in caplog.records if "model card" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "RuntimeError: template exploded second line" in record.getMessage()
    assert "\n" not in record.getMessage()
