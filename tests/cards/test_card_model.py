"""End to end with the tiny in-process BERT: the card's usage snippets really run on the saved folder."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
import yaml

from embtune.cards import DatasetInfo, RunInfo, save_card
from embtune.losses import build_loss
from embtune.models.embedding_model import EmbeddingModel
from embtune.training.run_info import eval_info, loss_info


def _python_blocks(card: str, heading: str) -> str:
    section = card.split(f"### {heading}\n")[1].split("\n### ")[0]
    return re.findall(r"```python\n(.*?)\n```", section, flags=re.S)[0]


@pytest.fixture(scope="module")
def saved(tiny_bert_dir, tmp_path_factory):
    model = EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True)
    folder = model.save(tmp_path_factory.mktemp("out") / "model")
    dataset = DatasetInfo(
        size=2,
        columns=["anchor", "positive"],
        samples=[{"anchor": "the cat", "positive": "a dog"}, {"anchor": "the sun", "positive": "the moon"}],
        loss=loss_info(build_loss("mnrl")),
    )
    info = RunInfo(
        base_model=str(tiny_bert_dir),
        architecture=model.architecture_repr(),
        max_seq_length=model.max_seq_length,
        embedding_dim=model.embedding_dim,
        model_id=str(folder),
        train_datasets=[dataset],
        log_rows=[{"epoch": 1.0, "step": 2, "training_loss": 0.5}],
    )
    readme = save_card(info, folder)
    return folder, readme.read_text(encoding="utf-8"), model


def test_card_describes_the_model(saved) -> None:
    _folder, card, model = saved
    assert f"- **Maximum Sequence Length:** {model.max_seq_length} tokens" in card
    assert f"- **Output Dimensionality:** {model.embedding_dim} dimensions" in card
    assert model.architecture_repr() in card
    meta = yaml.safe_load(card.split("---\n")[1])
    assert "base_model" not in meta  # a local path is no Hub id
    assert meta["widget"][0] == {"source_sentence": "the cat", "sentences": ["a dog", "the moon"]}


def _run(code: str) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<card snippet>", "exec"), {})  # the snippet is what users will run
    return out.getvalue().split("\n")[:2]


def test_embtune_snippet_runs_on_the_folder(saved) -> None:
    _folder, card, model = saved
    code = _python_blocks(card, "Direct Usage (embtune)")
    expected = re.findall(r"^# (\[.*\])$", code, flags=re.M)
    assert expected == [f"[3, {model.embedding_dim}]", "[3, 3]"]
    printed = _run(code)
    assert printed == [f"(3, {model.embedding_dim})", "torch.Size([3, 3])"]


def test_sentence_transformers_snippet_runs_on_the_folder(saved) -> None:
    pytest.importorskip("sentence_transformers")
    _folder, card, model = saved
    code = _python_blocks(card, "Direct Usage (Sentence Transformers)")
    printed = _run(code)
    assert printed[0] == f"(3, {model.embedding_dim})"
    assert printed[1] == "torch.Size([3, 3])"


def test_prepared_dataset_and_evaluator_fill_the_card(tiny_bert_dir, tmp_path) -> None:
    import warnings

    from transformers import AutoTokenizer

    from embtune.cards import render_card
    from embtune.cards.dataset_stats import dataset_info
    from embtune.data import ColumnRoles, DatasetSpec, prepare_dataset
    from embtune.data.sources import load_table
    from embtune.evaluation import TripletEvaluator

    path = tmp_path / "pairs.csv"
    path.write_text('q,p,n\nthe cat,a dog,the sea\nthe big dog,"a cat | here",red car\n', encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_dataset(
            DatasetSpec(path, ColumnRoles("q", "p", ["n"])), tokenizer, 16, cache_dir=tmp_path / "cache"
        )
    model = EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True)
    evaluator = TripletEvaluator(["the cat"], ["a dog"], ["red car"], name="dev")
    metrics = {f"eval_{k}": v for k, v in evaluator(model).items()}
    dataset = dataset_info(prepared, load_table(path).data.table, loss=loss_info(build_loss("mnrl")))
    card = render_card(
        RunInfo(train_datasets=[dataset], evaluations=[eval_info(evaluator, metrics, metrics)])
    )
    assert "#### pairs\n\n* Dataset: pairs\n* Source: `pairs.csv`\n* Size: 2 training samples" in card
    assert "* Columns: <code>q</code>, <code>p</code>, and <code>n</code>" in card
    assert "<li>min: " in card and " tokens</li>" in card
    assert "<code>a cat \\| here</code>" in card
    assert '"scale": 20.0' in card
    assert "#### Triplet" in card and "**max_accuracy**" in card  # TripletEvaluator.card_heading
    assert "| max_accuracy" not in card  # primary metric is bold in both tables
