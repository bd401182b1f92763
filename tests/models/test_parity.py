"""Parity with sentence-transformers on the bundled all-MiniLM-L6-v2, and folder round trips both ways."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from embtune.models.embedding_model import EmbeddingModel

st = pytest.importorskip("sentence_transformers")

pytestmark = pytest.mark.slow  # every test here takes seconds (subprocesses or the real model)


def varied_texts() -> list[str]:
    base = [
        "A man is playing a guitar.", "Ein Mann spielt Gitarre.", "Un homme joue de la guitare.",
        "日本語の文です。", "Emoji 😀 and symbols ∑ ≤ ≥", "   leading and trailing spaces   ", "UPPER lower MiXeD",
        "numbers 3.14159 and 2,718 and 1e10", "tabs\tand\nnewlines", "a", "?", "Sinhala: ගොවිතැන",
        "Dansk: Økonomisk ansvarlighed og grøn omstilling", "Norsk: Fjerne trapp i mur utvendig",
    ]
    texts = []
    for i in range(210):
        t = base[i % len(base)]
        texts.append(t if i < len(base) else f"{t} #{i} " + "word " * (i % 37))
    texts += ["a very long text " * 200, "lang tekst " * 400]  # beyond max_seq_length=256
    return texts


@pytest.fixture(scope="module")
def pair(minilm_dir):
    return EmbeddingModel.load(minilm_dir), st.SentenceTransformer(str(minilm_dir), device="cpu")


def test_fp32_embeddings_equal_sentence_transformers(pair):
    ours, theirs = pair
    texts = varied_texts()
    assert len(texts) >= 200
    a = ours.encode(texts, precision="fp32")
    b = theirs.encode(texts, batch_size=32)
    assert np.abs(a - b).max() <= 1e-5


def test_bf16_embeddings_close_to_fp32(pair):
    ours, _ = pair
    texts = varied_texts()
    a, b = ours.encode(texts, precision="fp32"), ours.encode(texts, precision="bf16")
    assert ((a * b).sum(1)).min() >= 0.999  # both normalized


def test_sentence_transformers_loads_our_folder(tiny_bert_dir, tmp_path, pair):
    ours, _ = pair
    texts = varied_texts()[:40]
    for name, model in [("tiny", EmbeddingModel.from_transformer(tiny_bert_dir, pooling=["mean", "max"], normalize=True)),
                        ("minilm", ours)]:
        folder = model.save(tmp_path / name)
        loaded = st.SentenceTransformer(str(folder), device="cpu")
        np.testing.assert_allclose(loaded.encode(texts), model.encode(texts, precision="fp32"), atol=1e-5)


def test_we_load_a_folder_saved_by_sentence_transformers_6(pair, tmp_path):
    _, theirs = pair
    theirs.save(str(tmp_path / "st6"))
    ours = EmbeddingModel.load(tmp_path / "st6")
    texts = varied_texts()[:60]
    np.testing.assert_allclose(ours.encode(texts, precision="fp32"), theirs.encode(texts), atol=1e-5)
    assert ours.max_seq_length == theirs.max_seq_length


def test_plain_transformers_loads_our_folder(pair, tmp_path):
    # transformers only warns on missing or unexpected weight names (and then starts from random weights), so
    # compare outputs: mean pooling + L2 normalization of its hidden states must give our embeddings.
    from transformers import AutoModel, AutoTokenizer

    ours, _ = pair
    folder = ours.save(tmp_path / "hf")
    hf, tokenizer = AutoModel.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)
    texts = varied_texts()[:24]
    batch = tokenizer(texts, padding=True, truncation=True, max_length=ours.max_seq_length, return_tensors="pt")
    with torch.no_grad():
        hidden = hf(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    theirs = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    np.testing.assert_allclose(theirs.numpy(), ours.encode(texts, precision="fp32"), atol=1e-5)


def test_stsb_spearman_matches_mteb(pair, shared_data):
    from scipy.stats import spearmanr

    path = shared_data / "stsb" / "test.csv"
    if not path.is_file():
        pytest.skip("STS-B test.csv absent")
    with open(path, encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    ours, _ = pair
    a = ours.encode([r["sentence1"] for r in rows], precision="fp32")
    b = ours.encode([r["sentence2"] for r in rows], precision="fp32")
    cos = ours.similarity_pairwise(a, b).numpy()
    rho = spearmanr(cos, [float(r["score"]) for r in rows]).statistic
    assert abs(rho - 0.8203) <= 0.001, rho
