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
        model = EmbeddingModel.load(saved_model)
        ids, types, _ = model.transformer.token_ids(TEXTS)  # the server sends what its HTTP process tokenized
        assert np.abs(encoder([(i, t, 0) for i, t in zip(ids, types, strict=True)]) - want).max() < 1e-6
        first = encoder.pid
        os.kill(first, signal.SIGKILL)
        with pytest.raises(RuntimeError, match="died"):  # the batch in flight fails (a 500), nothing hangs
            encoder(TEXTS)
        assert encoder.pid != first and np.abs(encoder(TEXTS) - want).max() < 1e-6
    finally:
        encoder.close()
    assert not encoder._process.is_alive()


def test_overlapping_calls_each_get_their_own_rows_and_a_death_fails_every_call_in_flight(saved_model):
    """Two callers at once (the batcher's two workers): answers come back to the right caller; when the child
    dies with both batches in it, both fail, one restart happens, and the next call works."""
    import threading

    model = EmbeddingModel.load(saved_model)
    batches = [[f"{t} number {i}" for t in TEXTS * (i + 1)] for i in range(8)]
    want = [model.encode(b, precision="fp32", convert_to="numpy") for b in batches]
    encoder = EncodeProcess({"name_or_path": str(saved_model)}, {"precision": "fp32", "prompt": ""})
    got: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        got[i] = encoder(batches[i])

    try:
        threads = [threading.Thread(target=call, args=(i,)) for i in range(len(batches))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert sorted(got) == list(range(len(batches)))
        assert all(np.abs(got[i] - want[i]).max() < 1e-6 for i in got)

        first = encoder.pid
        errors: list[BaseException] = []

        def doomed() -> None:
            try:
                encoder(TEXTS * 50)
            except RuntimeError as exc:
                errors.append(exc)

        os.kill(first, signal.SIGSTOP)  # it cannot answer: both calls send and wait
        threads = [threading.Thread(target=doomed) for _ in range(2)]
        for t in threads:
            t.start()
        import time

        time.sleep(0.5)
        os.kill(first, signal.SIGKILL)
        for t in threads:
            t.join(60)
        assert len(errors) == 2 and all("died" in str(e) for e in errors)
        assert encoder.pid not in (None, first)
        assert np.abs(encoder(TEXTS) - model.encode(TEXTS, precision="fp32", convert_to="numpy")).max() < 1e-6
    finally:
        encoder.close()


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
