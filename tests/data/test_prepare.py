"""prepare_dataset: tokenized once, cached on disk and reused."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from torch import Tensor
from transformers import AutoTokenizer

from embtune.data import ColumnRoles, DatasetSpec, DataWarning, prepare_dataset
from embtune.data.hashing import hash_texts
from embtune.errors import EmbtuneError
from embtune.roles import LabelSpec, RoleRequirements


class ScoredLoss:
    """Fake CoSENT-like loss: scored pairs with labels in [0, 1]."""

    name: ClassVar[str] = "FakeScoredLoss"
    required_roles: ClassVar[tuple[str, ...]] = ("anchor", "positive")
    max_negatives: ClassVar[int | None] = 0
    label: ClassVar[LabelSpec | None] = LabelSpec("float", 0.0, 1.0)
    citation: ClassVar[str] = ""

    def __call__(self, embeddings: dict[str, Tensor], labels: Tensor | None) -> Tensor:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {}


@pytest.fixture
def tokenizer(tiny_bert_dir: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_bert_dir)


def _csv(
    tmp_path: Path,
    text: str = "q,p,n,score\nthe cat,a dog,the sea,0\nthe big dog,a cat,red car,0.5\na cat,the sun,blue sky,1\n",
) -> Path:
    path = tmp_path / "train.csv"
    path.write_text(text)
    return path


def _quiet(spec: DatasetSpec, tokenizer: Any, max_seq_length: int, tmp_path: Path, **kwargs: Any):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return prepare_dataset(spec, tokenizer, max_seq_length, cache_dir=tmp_path / "cache", **kwargs)


def test_prepare_tokenizes_each_role_with_its_prompt(tmp_path: Path, tokenizer: Any) -> None:
    spec = DatasetSpec(_csv(tmp_path), ColumnRoles("q", "p", ["n"]), prompt={"anchor": "query: "})
    prepared = _quiet(spec, tokenizer, 16, tmp_path)
    assert prepared.name == "train" and prepared.num_rows == 3
    assert prepared.roles == ["anchor", "positive", "negative_1"]
    assert prepared.columns == {"anchor": "q", "positive": "p", "negative_1": "n"}
    assert prepared.tokens.features["anchor"].feature.dtype == "int32"
    expected = tokenizer(["query: the cat", "query: the big dog", "query: a cat"])["input_ids"]
    assert prepared.tokens["anchor"] == expected
    assert prepared.tokens["negative_1"] == tokenizer(["the sea", "red car", "blue sky"])["input_ids"]
    assert prepared.lengths.dtype == np.int32 and prepared.lengths.shape == (3, 3)
    assert prepared.lengths[:, 0].tolist() == [6, 7, 6]
    # row keys hash the rendered text without the prompt, so the sampler can compare roles
    assert prepared.row_keys[:, 0].tolist() == hash_texts(["the cat", "the big dog", "a cat"]).tolist()
    assert prepared.labels is None and prepared.truncated_count == 0


def test_second_prepare_hits_the_cache(
    tmp_path: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = DatasetSpec(_csv(tmp_path), ColumnRoles("q", "p", label="score"))
    first = _quiet(spec, tokenizer, 16, tmp_path, needs=RoleRequirements.of(ScoredLoss()))

    def not_called(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the tokenizer was called although the cache is valid")

    monkeypatch.setattr(type(tokenizer), "__call__", not_called)
    again = _quiet(spec, tokenizer, 16, tmp_path, needs=RoleRequirements.of(ScoredLoss()))
    assert again.cache_dir == first.cache_dir
    assert again.tokens["positive"] == first.tokens["positive"]
    np.testing.assert_array_equal(again.lengths, first.lengths)
    np.testing.assert_array_equal(again.labels, np.array([0, 0.5, 1], dtype=np.float32))
    assert again.labels.dtype == np.float32
    with pytest.raises(AssertionError, match="tokenizer was called"):  # a different key re-tokenizes
        _quiet(spec, tokenizer, 8, tmp_path)


def test_cache_key_changes_with_everything_that_changes_the_ids(tmp_path: Path, tokenizer: Any) -> None:
    path = _csv(tmp_path)
    base = DatasetSpec(path, ColumnRoles("q", "p"))
    entries = {
        _quiet(base, tokenizer, 16, tmp_path).cache_dir,
        _quiet(base, tokenizer, 12, tmp_path).cache_dir,
        _quiet(DatasetSpec(path, ColumnRoles("q", "p"), prompt="x: "), tokenizer, 16, tmp_path).cache_dir,
        _quiet(DatasetSpec(path, ColumnRoles("q", "n")), tokenizer, 16, tmp_path).cache_dir,
        _quiet(DatasetSpec(path, ColumnRoles("q", "p"), max_rows=2), tokenizer, 16, tmp_path).cache_dir,
    }
    assert len(entries) == 5
    assert _quiet(base, tokenizer, 16, tmp_path).cache_dir in entries  # and stays stable
    _csv(tmp_path, "q,p\nnew,rows\nmore,rows\n")
    changed = _quiet(base, tokenizer, 16, tmp_path)
    assert changed.cache_dir not in entries and changed.num_rows == 2


def test_truncation_and_duplicates_are_warned_with_counts(tmp_path: Path, tokenizer: Any) -> None:
    path = _csv(tmp_path, "q,p\nthe cat,a dog\nthe big dog and a cat,a dog\nthe cat,a dog\n")
    spec = DatasetSpec(path, ColumnRoles("q", "p"))
    with pytest.warns(DataWarning) as record:
        prepared = prepare_dataset(spec, tokenizer, 5, cache_dir=tmp_path / "cache")
    messages = [str(w.message) for w in record]
    assert any("1 of 6 texts are longer than max_seq_length=5" in m for m in messages)
    assert any("1 of 3 rows are exact duplicates" in m for m in messages)
    assert prepared.truncated_count == 1 and prepared.duplicate_count == 1
    assert (
        prepared.tokens["anchor"][1]
        == tokenizer("the big dog and a cat", truncation=True, max_length=5)["input_ids"]
    )
    assert prepared.lengths[:, 0].tolist() == [4, 5, 4]


def test_dict_records_render_through_the_template(tmp_path: Path, tokenizer: Any) -> None:
    rows = [
        {
            "a": {"page_name": "cat", "section_title": "food", "text": "the dog"},
            "b": {"page_name": "sea", "section_title": "x", "text": "a car"},
            "s": 1,
        },
        {
            "a": {"page_name": "sun", "section_title": "y", "text": "a bird"},
            "b": {"page_name": "sky", "section_title": "z", "text": "the moon"},
            "s": 0,
        },
    ]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = DatasetSpec(path, ColumnRoles("a", "b", label="s"), template="{page_name}: {text}", name="cbs")
    prepared = _quiet(spec, tokenizer, 16, tmp_path, needs=RoleRequirements.of(ScoredLoss()))
    assert prepared.name == "cbs"
    assert prepared.tokens["anchor"][0] == tokenizer("cat: the dog")["input_ids"]
    bad = DatasetSpec(
        path, ColumnRoles("a", "b", label="s"), template={"anchor": "{title}", "positive": "{text}"}
    )
    with pytest.raises(
        EmbtuneError,
        match=r"records.jsonl, data row 1 \(1-based\), column 'a'.*available keys: page_name, section_title, text",
    ):
        _quiet(bad, tokenizer, 16, tmp_path)


def test_prepare_checks_columns_loss_and_batch_size(tmp_path: Path, tokenizer: Any) -> None:
    path = _csv(tmp_path)
    with pytest.raises(
        EmbtuneError, match="no column for positive: 'answer'; available columns: q, p, n, score"
    ):
        _quiet(DatasetSpec(path, ColumnRoles("q", "answer")), tokenizer, 16, tmp_path)
    with pytest.raises(EmbtuneError, match="FakeScoredLoss needs a label column"):
        _quiet(DatasetSpec(path, ColumnRoles("q", "p")), tokenizer, 16, tmp_path, needs=RoleRequirements.of(ScoredLoss()))
    with pytest.raises(EmbtuneError, match=r"has 3 rows, fewer than one batch \(4\)"):
        _quiet(DatasetSpec(path, ColumnRoles("q", "p")), tokenizer, 16, tmp_path, batch_size=4)
    with pytest.raises(EmbtuneError, match="prompt: unknown role 'query'"):
        _quiet(DatasetSpec(path, ColumnRoles("q", "p"), prompt={"query": "q: "}), tokenizer, 16, tmp_path)
    with pytest.raises(EmbtuneError, match=r"data row 2 \(1-based\), column 'score': label 2 is outside"):
        bad = _csv(tmp_path, "q,p,score\nthe cat,a dog,0\nthe dog,a cat,2\n")
        _quiet(
            DatasetSpec(bad, ColumnRoles("q", "p", label="score")), tokenizer, 16, tmp_path, needs=RoleRequirements.of(ScoredLoss())
        )
