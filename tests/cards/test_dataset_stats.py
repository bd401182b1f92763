"""Dataset statistics and samples for the card, from a prepared dataset and its source table."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from embtune.cards import ColumnStats
from embtune.cards.dataset_stats import column_statistics, dataset_info, sample_rows
from embtune.data import ColumnRoles, DatasetSpec, DataWarning, prepare_dataset
from embtune.data.sources import load_table


@pytest.fixture
def tokenizer(tiny_bert_dir: Path):
    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def _prepare(spec: DatasetSpec, tokenizer, tmp_path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        prepared = prepare_dataset(spec, tokenizer, 16, cache_dir=tmp_path / "cache")
    return prepared, load_table(spec.path).data.table


def test_statistics_and_samples_on_a_hand_checked_dataset(tmp_path: Path, tokenizer) -> None:
    path = tmp_path / "train.csv"
    path.write_text("q,p,n,score\nthe cat,a dog,the sea,0\nthe big dog,a cat,red car,0.5\na cat,the sun,blue sky,1\n")
    prepared, source = _prepare(DatasetSpec(path, ColumnRoles("q", "p", label="score")), tokenizer, tmp_path)
    # "the cat" / "the big dog" / "a cat" -> 2, 3, 2 words + [CLS] [SEP]
    assert column_statistics(prepared, source) == [
        ColumnStats("q", "string", 4, 4.33, 5),
        ColumnStats("p", "string", 4, 4.0, 4),
        ColumnStats("score", "float", 0.0, 0.5, 1.0, tokens=False),
    ]
    assert column_statistics(prepared, source, max_rows=1)[0].max == 4
    assert sample_rows(prepared, source, n=2) == [
        {"q": "the cat", "p": "a dog", "score": 0.0},
        {"q": "the big dog", "p": "a cat", "score": 0.5},
    ]
    info = dataset_info(prepared, source)
    assert (info.name, info.source, info.size, info.columns) == ("train", "train.csv", 3, ["q", "p", "score"])
    assert len(info.samples) == 3


def test_dict_records_are_counted_and_shown_as_rendered(tmp_path: Path, tokenizer) -> None:
    rows = [
        {"a": {"page_name": "cat", "text": "the dog"}, "b": {"page_name": "sea", "text": "a car"}, "s": 1},
        {"a": {"page_name": "sun", "text": "a bird"}, "b": {"page_name": "sky", "text": "the moon"}, "s": 0},
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    template = "{page_name}: {text}"
    spec = DatasetSpec(path, ColumnRoles("a", "b", label="s"), template=template, prompt="x: ")
    prepared, source = _prepare(spec, tokenizer, tmp_path)
    assert sample_rows(prepared, source, template, n=1) == [{"a": "cat: the dog", "b": "sea: a car", "s": 1}]
    stats = column_statistics(prepared, source)
    # on the rendered text with its prompt: "x : cat : the dog" = 6 tokens + [CLS] [SEP]
    assert stats[0] == ColumnStats("a", "dict", 8, 8.0, 8)
    assert stats[2].kind == "int"
