"""The encoder child process: same embeddings as encode, restarted when it dies, clear error when it cannot load."""

from __future__ import annotations

import json
import os
import signal
import urllib.request

import numpy as np
import pytest

from embtune.errors import EmbtuneError
from embtune.models.embedding_model import EmbeddingModel
from embtune.serve.encode_process import EncodeProcess

TEXTS = ["a cat sits on the mat", "dogs run", "the quick brown fox jumps over the lazy dog"]


@pytest.fixture(scope="module")
def saved_model(tiny_bert_dir, tmp_path_factory):
    return EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True).save(tmp_path_factory.mktemp("m") / "model")


def test_child_embeddings_equal_encode_and_a_dead_child_is_replaced(saved_model):
    want = EmbeddingModel.load(saved_model).encode(TEXTS, precision="fp32", convert_to="numpy")
    encoder = EncodeProcess({"name_or_path": str(saved_model)}, {"precision": "fp32", "prompt": ""})
    try:
        got = encoder(TEXTS)
        assert got.dtype == np.float32 and np.abs(got - want).max() < 1e-6
        first = encoder.pid
        os.kill(first, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="died"):  # the batch in flight fails (a 500), nothing hangs
            encoder(TEXTS)
        assert encoder.pid != first and np.abs(encoder(TEXTS) - want).max() < 1e-6
    finally:
        encoder.close()
    assert not encoder._process.is_alive()


def test_a_model_that_cannot_load_is_one_clear_error(tmp_path):
    with pytest.raises(EmbtuneError, match="encoder process could not load the model"):
        EncodeProcess({"name_or_path": str(tmp_path / "missing")}, {})


def test_server_with_an_encoder_process_answers_like_encode(saved_model, start_server):
    model = EmbeddingModel.load(saved_model)
    want = model.encode(TEXTS, precision="fp32", convert_to="numpy")
    with start_server(model, encode_process=True) as url:
        req = urllib.request.Request(url + "/v1/embeddings", data=json.dumps({"input": TEXTS}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=60) as resp:
            body = json.loads(resp.read())
    got = np.array([row["embedding"] for row in body["data"]], dtype=np.float32)
    assert np.abs(got - want).max() < 1e-6
