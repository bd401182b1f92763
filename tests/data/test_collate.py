"""collate: padded batches from the cache equal the tokenizer's own padded output."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from transformers import AutoTokenizer

from embtune.data import Batch, ColumnRoles, DatasetSpec, DataWarning, collate, prepare_dataset

ROWS = [
    ("the cat", "a dog is big and the cat is small", "the sea", 0.25),
    ("the big red car", "a bus", "blue sky and green tree", 1.0),
    ("a bird", "the fish in the river", "night", 0.5),
]


def test_collate_matches_tokenizer_padding(tmp_path: Path, tiny_bert_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    path = tmp_path / "t.tsv"
    path.write_text("q\tp\tn\ts\n" + "".join("\t".join(map(str, row)) + "\n" for row in ROWS))
    prompts = {"anchor": "query: ", "positive": "passage: "}
    spec = DatasetSpec(path, ColumnRoles("q", "p", ["n"], label="s"), prompt=prompts)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        prepared = prepare_dataset(spec, tokenizer, 8, cache_dir=tmp_path / "cache")
    indices = [2, 0, 2, 1]
    batch = collate(prepared, indices)
    assert isinstance(batch, Batch) and len(batch) == 4
    for role, column, prompt in (
        ("anchor", 0, "query: "),
        ("positive", 1, "passage: "),
        ("negative_1", 2, ""),
    ):
        texts = [prompt + ROWS[i][column] for i in indices]
        expected = tokenizer(texts, padding=True, truncation=True, max_length=8, return_tensors="pt")
        got = batch.features[role]
        assert set(got) == {"input_ids", "attention_mask", "token_type_ids"}
        for name in got:
            assert got[name].dtype == torch.long
            assert torch.equal(got[name], expected[name]), (role, name)
    assert torch.equal(batch.labels, torch.tensor([0.5, 0.25, 0.5, 1.0]))
    moved = batch.to("cpu")
    assert torch.equal(moved.features["anchor"]["input_ids"], batch.features["anchor"]["input_ids"])


def test_collate_without_labels_or_token_type_ids(tmp_path: Path, tiny_bert_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert_dir)
    tokenizer.model_input_names = ["input_ids", "attention_mask"]
    path = tmp_path / "t.csv"
    path.write_text("q,p\nthe cat,a dog\nred car,blue sky and a big green tree\n")
    prepared = prepare_dataset(
        DatasetSpec(path, ColumnRoles("q", "p")), tokenizer, 32, cache_dir=tmp_path / "c"
    )
    batch = collate(prepared, [1])
    assert batch.labels is None
    assert set(batch.features["positive"]) == {"input_ids", "attention_mask"}
    assert batch.features["positive"]["input_ids"].shape == (1, 9)  # 7 words + [CLS] [SEP]
    assert batch.features["positive"]["attention_mask"].all()
