"""Teacher and guide losses end to end: targets computed once per dataset, cached, and fed as labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from embtune.losses import build_loss
from embtune.teachers import attach_teacher_targets, compute_targets
from embtune.training.loop import train
from embtune.training.recipe import config_from_dict


@pytest.fixture(scope="module")
def triplets_file(tmp_path_factory, pairs_file: Path) -> Path:
    rows = [json.loads(line) for line in pairs_file.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["negative"] = rows[(i + 5) % len(rows)]["positive"]
    path = tmp_path_factory.mktemp("triplets") / "triplets.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def cross_encoder_dir(tmp_path_factory, tiny_bert_dir: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("cross_encoder")
    torch.manual_seed(3)
    config = BertConfig.from_pretrained(tiny_bert_dir, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(folder)
    return folder


CASES = [
    ("mse", {"teacher": "{model}"}, ["anchor", "positive"]),
    ("margin_mse", {"teacher": "{model}"}, ["anchor", "positive", "negative"]),
    ("margin_mse", {"teacher": "{cross}"}, ["anchor", "positive", "negative"]),
    ("distill_kl_div", {"teacher": "{cross}"}, ["anchor", "positive", "negative"]),
    ("gist", {"guide": "{model}"}, ["anchor", "positive"]),
    ("cached_gist", {"guide": "{model}", "mini_batch_size": 2}, ["anchor", "positive", "negative"]),
]


@pytest.mark.parametrize(("loss", "params", "columns"), CASES)
def test_teacher_loss_trains_and_caches_targets(
    loss, params, columns, tiny_bert_dir, cross_encoder_dir, triplets_file, tmp_path, config_factory
):
    params = {k: v.format(model=tiny_bert_dir, cross=cross_encoder_dir) if isinstance(v, str) else v
              for k, v in params.items()}
    cfg = config_factory(tiny_bert_dir, triplets_file, tmp_path / "run", max_steps=3, logging_steps=1,
                         save_strategy="no", cache_dir=str(tmp_path / "cache"))
    roles = {"anchor": "anchor", "positive": "positive"}
    if "negative" in columns:
        roles["negatives"] = ["negative"]
    cfg["datasets"][0].update(columns=roles, loss={"name": loss, **params})
    result = train(config_from_dict(cfg))
    losses = [json.loads(x)["loss"] for x in result.log_path.read_text().splitlines()]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    cached = list((tmp_path / "cache" / "teachers").glob("*.npy"))
    assert len(cached) == 1
    before = cached[0].stat().st_mtime_ns
    cfg["args"]["output_dir"] = str(tmp_path / "run2")
    train(config_from_dict(cfg))
    assert cached[0].stat().st_mtime_ns == before  # reused, not recomputed


def test_targets_equal_the_teacher_run_directly(tiny_bert_dir, triplets_file, tmp_path):
    from embtune import EmbeddingModel
    from embtune.data import ColumnRoles, DatasetSpec, prepare_dataset

    teacher = EmbeddingModel.load(tiny_bert_dir)
    spec = DatasetSpec(triplets_file, ColumnRoles("anchor", "positive", ["negative"]))
    loss = build_loss("margin_mse", teacher=str(tiny_bert_dir))
    prepared = prepare_dataset(spec, teacher.tokenizer, 16, loss, cache_dir=tmp_path)
    assert attach_teacher_targets(prepared, loss, tmp_path)  # no template: plain columns
    rows = [json.loads(line) for line in triplets_file.read_text().splitlines()]
    a = teacher.encode([r["anchor"] for r in rows], precision="fp32", convert_to="torch")
    p = teacher.encode([r["positive"] for r in rows], precision="fp32", convert_to="torch")
    n = teacher.encode([r["negative"] for r in rows], precision="fp32", convert_to="torch")
    expected = torch.stack([teacher.similarity_pairwise(a, p), teacher.similarity_pairwise(a, n)], dim=1)
    np.testing.assert_allclose(prepared.labels, expected.numpy(), atol=1e-6)
    guide = compute_targets(str(tiny_bert_dir), "role_embeddings", {"anchor": ["the cat"], "positive": ["a dog"]})
    assert guide.shape == (1, 2, 32)


def test_cross_encoder_teacher_refuses_embedding_losses(tiny_bert_dir, cross_encoder_dir):
    from embtune.errors import EmbtuneError

    with pytest.raises(EmbtuneError, match="cross-encoder gives scores"):
        compute_targets(str(cross_encoder_dir), "anchor_embeddings", {"anchor": ["x"]})
