"""EmbtuneEncoder on a local Ray cluster (2 CPU workers) equals plain encode; and as a plain callable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from embtune import EmbeddingModel
from embtune.errors import EmbtuneError
from embtune.integrations.ray import EmbtuneEncoder

TEXTS = [f"the {a} {b} by the river" for a in ("red", "blue", "big", "old") for b in ("cat", "dog", "house", "car", "bus")]


@pytest.fixture(scope="module")
def model_dir(tiny_bert_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("st") / "model"
    EmbeddingModel.from_transformer(tiny_bert_dir, pooling="mean", normalize=True).save(folder)
    return folder


def test_callable_on_numpy_and_pandas_batches(model_dir):
    encoder = EmbtuneEncoder(str(model_dir), precision="fp32", keep_columns=["id"])
    expected = EmbeddingModel.load(model_dir).encode(TEXTS[:6], precision="fp32")
    out = encoder({"id": np.arange(6), "text": np.array(TEXTS[:6], dtype=object)})
    assert set(out) == {"id", "embedding"} and np.array_equal(out["embedding"], expected)
    frame = encoder(pd.DataFrame({"id": range(6), "text": TEXTS[:6]}))
    assert np.array_equal(np.stack(frame["embedding"].to_list()), expected)
    with pytest.raises(EmbtuneError, match="no column 'text'.*set text_column"):
        encoder({"body": np.array(TEXTS[:2])})


@pytest.mark.slow
def test_ray_map_batches_with_two_workers_equals_plain_encode(model_dir):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    try:
        ds = ray.data.from_items([{"id": i, "text": t} for i, t in enumerate(TEXTS)])
        ds = ds.map_batches(
            EmbtuneEncoder,
            fn_constructor_kwargs={"model": str(model_dir), "precision": "fp32", "batch_size": 1, "threads": 1},
            batch_size=4,
            concurrency=2,
            num_cpus=1,
        )
        rows = sorted(ds.take_all(), key=lambda r: r["id"])
    finally:
        ray.shutdown()
    got = np.stack([r["embedding"] for r in rows])
    # batch_size 1 inside encode: each text's embedding does not depend on which rows Ray batched with it
    expected = EmbeddingModel.load(model_dir).encode(TEXTS, precision="fp32", batch_size=1)
    assert [r["id"] for r in rows] == list(range(len(TEXTS)))
    assert np.array_equal(got, expected)
