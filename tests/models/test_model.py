"""EmbeddingModel on the tiny random BERT: compose, encode, save/load round trip, prompts, quantization."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.models.embedding_model import EmbeddingModel
from embtune.models.encode import encode_token_ids, quantize_embeddings

TEXTS = ["the cat runs fast", "a dog", "the big red bus goes to the city at night", "music", "the moon and the sun"]


@pytest.fixture()
def tiny(tiny_bert_dir):
    return EmbeddingModel.from_transformer(tiny_bert_dir, pooling="mean", normalize=True)


def manual_embeddings(model, texts):
    """Embed one text at a time with no padding at all: the reference for batched encode."""
    out = []
    with torch.no_grad():
        for t in texts:
            feats = model.transformer.tokenizer(t, return_tensors="pt", truncation=True, max_length=model.max_seq_length)
            out.append(model(dict(feats))[0])
    return torch.stack(out).numpy()


def test_encode_matches_unbatched_forward(tiny):
    emb = tiny.encode(TEXTS, batch_size=2, precision="fp32")
    assert emb.shape == (5, 32) and emb.dtype == np.float32
    np.testing.assert_allclose(emb, manual_embeddings(tiny, TEXTS), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_encode_token_ids_gives_the_rows_of_encode(tiny):
    ids, types, _ = tiny.transformer.token_ids(TEXTS)
    for precision in ("fp32", "bf16"):
        np.testing.assert_array_equal(encode_token_ids(tiny, ids, types, precision=precision),
                                      tiny.encode(TEXTS, precision=precision))
    assert encode_token_ids(tiny, []).shape == (0, 32)


def test_encode_token_ids_leaves_out_per_text_prompts_like_encode(tiny):
    tiny.pooling.include_prompt = False
    plain = tiny.encode(TEXTS[:2], precision="fp32")
    prompted = tiny.encode(TEXTS[2:], prompt="query: ", precision="fp32")
    ids, types, _ = tiny.transformer.token_ids(TEXTS[:2] + ["query: " + t for t in TEXTS[2:]])
    skip = [0, 0] + [len(tiny.transformer.token_ids(["query: "])[0][0]) - 1] * 3
    got = encode_token_ids(tiny, ids, types, precision="fp32", prompt_length=skip)
    np.testing.assert_allclose(got, np.concatenate([plain, prompted]), atol=1e-6)
    assert not np.allclose(got[2:], tiny.encode(["query: " + t for t in TEXTS[2:]], precision="fp32"), atol=1e-3)
    with pytest.raises(EmbtuneError, match="one per text"):
        encode_token_ids(tiny, ids, types, prompt_length=[1])
    np.testing.assert_array_equal(encode_token_ids(tiny, ids, types, precision="fp32", prompt_length=np.int64(2)),
                                  encode_token_ids(tiny, ids, types, precision="fp32", prompt_length=[2] * 5))


def test_encode_and_encode_token_ids_make_the_heap_reuse_freed_blocks(tiny, monkeypatch):
    import embtune.models.encode as encode

    calls = []
    monkeypatch.setattr(encode, "reuse_freed_blocks", lambda: calls.append(1))
    tiny.encode(TEXTS)
    encode_token_ids(tiny, tiny.transformer.token_ids(TEXTS)[0])
    assert calls == [1, 1]


def test_encode_single_string_and_torch_output(tiny):
    one = tiny.encode("a dog", precision="fp32")
    assert one.shape == (32,)
    t = tiny.encode(["a dog"], convert_to="torch", precision="fp32")
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(one, t[0].numpy(), atol=1e-6)


def test_empty_input_gives_empty_array(tiny):
    assert tiny.encode([]).shape == (0, 32)


def test_non_string_input_is_a_clear_error(tiny):
    with pytest.raises(EmbtuneError, match="input 1 is int"):
        tiny.encode(["ok", 3])


def test_bf16_close_to_fp32(tiny):
    a = tiny.encode(TEXTS, precision="fp32")
    b = tiny.encode(TEXTS, precision="bf16")
    assert b.dtype == np.float32
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() >= 0.999


def test_bf16_copy_follows_weight_updates(tiny):
    before = tiny.encode(TEXTS, precision="bf16")
    with torch.no_grad():
        for p in tiny.parameters():
            p.add_(0.05)
    after = tiny.encode(TEXTS, precision="bf16")
    fp32_after = tiny.encode(TEXTS, precision="fp32")
    assert not np.allclose(before, after, atol=1e-3)
    cos = (after * fp32_after).sum(1)
    assert cos.min() >= 0.999


@pytest.mark.parametrize("write", ["data-row", "fused-adamw"])
def test_bf16_copy_follows_writes_that_keep_version_counters(tiny, write):
    """Writes through ``.data`` (here: one embedding row only, as a row-wise update) and fused AdamW steps do
    not bump version counters; the copy must still be rebuilt."""
    before = tiny.encode(TEXTS, precision="bf16")
    if write == "data-row":
        row = tiny.transformer.token_ids([TEXTS[0]])[0][0][1]  # a token of the first text
        table = tiny.transformer.auto_model.get_input_embeddings().weight
        table.data[row] += 0.5
    else:
        params = [p for p in tiny.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=1e-2, fused=True)
        for p in params:
            p.grad = torch.ones_like(p)
        optimizer.step()
    after = tiny.encode(TEXTS, precision="bf16")
    assert not np.allclose(before[0], after[0], atol=1e-4)
    np.testing.assert_allclose(after, tiny.encode(TEXTS, precision="fp32"), atol=0.05)


def test_encode_runs_in_eval_mode_and_restores_training(tiny):
    ref = tiny.encode(TEXTS, precision="fp32")
    tiny.train()
    tiny.transformer.auto_model.embeddings.dropout.p = 0.5
    np.testing.assert_array_equal(tiny.encode(TEXTS, precision="fp32"), ref)  # no dropout while encoding
    assert tiny.training and all(m.training for m in tiny.modules())
    tiny.eval()
    tiny.transformer.auto_model.embeddings.dropout.train()  # a submodule left in training under an eval model
    np.testing.assert_array_equal(tiny.encode(TEXTS, precision="fp32"), ref)


def test_truncation_warns_with_count(tiny, caplog):
    tiny.max_seq_length = 8
    with caplog.at_level("WARNING"):
        tiny.encode(["the cat " * 20, "a dog", "the sun " * 30])
    assert "2 of 3 texts were longer than max_seq_length=8" in caplog.text


def test_prompts_are_prepended(tiny):
    tiny.prompts = {"query": "query: "}
    a = tiny.encode(["a dog"], prompt_name="query", precision="fp32")
    b = tiny.encode(["query: a dog"], precision="fp32")
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(EmbtuneError, match="unknown prompt_name"):
        tiny.encode(["a dog"], prompt_name="passage")


def test_truncate_dim_and_normalize(tiny):
    emb = tiny.encode(TEXTS, truncate_dim=8, normalize=True, precision="fp32")
    assert emb.shape == (5, 8)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)


def test_quantization_shapes_and_order():
    emb = np.array([[-1.0, 0.0, 1.0, 0.5, -0.5, 0.2, 0.1, -0.1, 2.0]], dtype=np.float32)
    emb = np.vstack([emb, -emb])
    ub = quantize_embeddings(emb, "ubinary")
    assert ub.dtype == np.uint8 and ub.shape == (2, 2)
    assert ub[0, 0] == int("00110110", 2)
    b = quantize_embeddings(emb, "binary")
    assert b.dtype == np.int8 and int(b[0, 0]) == int("00110110", 2) - 128
    q = quantize_embeddings(emb, "int8")
    assert q.dtype == np.int8 and q.min() >= -128 and q.max() <= 127
    assert q[0, 0] == -128 and q[1, 0] == 127  # per-dimension min -> -128, max -> 127


def test_similarity_uses_model_function(tiny):
    emb = tiny.encode(TEXTS[:2], precision="fp32")
    s = tiny.similarity(emb, emb)
    assert s.shape == (2, 2)
    torch.testing.assert_close(torch.diagonal(s), torch.ones(2), atol=1e-5, rtol=0)
    tiny.similarity_fn_name = "euclidean"
    assert float(tiny.similarity(emb, emb)[0, 0]) == pytest.approx(0.0, abs=1e-5)
    pair = tiny.similarity_pairwise(emb, emb[::-1].copy())
    assert pair.shape == (2,)


def test_save_load_round_trip(tiny, tmp_path):
    tiny.prompts = {"query": "query: ", "passage": "passage: "}
    tiny.default_prompt_name = "query"
    tiny.similarity_fn_name = "dot"
    out = tiny.save(tmp_path / "m")
    names = sorted(p.name for p in out.iterdir())
    for expected in ["1_Pooling", "2_Normalize", "config.json", "config_sentence_transformers.json",
                     "model.safetensors", "modules.json", "sentence_bert_config.json", "tokenizer.json"]:
        assert expected in names
    modules = json.loads((out / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    pool_cfg = json.loads((out / "1_Pooling" / "config.json").read_text())
    assert pool_cfg["pooling_mode_mean_tokens"] is True and pool_cfg["word_embedding_dimension"] == 32
    loaded = EmbeddingModel.load(out)
    assert loaded.prompts == tiny.prompts and loaded.default_prompt_name == "query"
    assert loaded.similarity_fn_name == "dot"
    np.testing.assert_allclose(
        loaded.encode(TEXTS, prompt="", precision="fp32"), tiny.encode(TEXTS, prompt="", precision="fp32"), atol=1e-6
    )


def test_dense_module_round_trip(tiny_bert_dir, tmp_path):
    model = EmbeddingModel.from_transformer(tiny_bert_dir, pooling="cls", dense_dim=16, normalize=True)
    assert model.embedding_dim == 16
    emb = model.encode(TEXTS, precision="fp32")
    loaded = EmbeddingModel.load(model.save(tmp_path / "dense"))
    np.testing.assert_allclose(loaded.encode(TEXTS, precision="fp32"), emb, atol=1e-6)
    assert (tmp_path / "dense" / "2_Dense" / "model.safetensors").is_file()


def test_plain_hf_folder_loads_with_mean_pooling_and_warning(tiny_bert_dir, caplog):
    with caplog.at_level("WARNING"):
        model = EmbeddingModel.load(tiny_bert_dir)
    assert model.pooling.modes == ["mean"] and not model.normalizes
    assert "using mean pooling" in caplog.text


def test_bundled_alias_missing_or_loads(minilm_dir):
    model = EmbeddingModel.load("bundled:all-MiniLM-L6-v2")
    assert model.embedding_dim == 384 and model.max_seq_length == 256 and model.normalizes


@pytest.mark.parametrize("fused", [False, True])
def test_bf16_copy_follows_optimizer_steps_that_do_not_bump_versions(tiny, fused):
    # Fused AdamW (and writes through .data) change weights without bumping their version counters.
    before = tiny.encode(TEXTS, precision="bf16")
    opt = torch.optim.AdamW(tiny.parameters(), lr=0.05, fused=fused)
    for p in tiny.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    after = tiny.encode(TEXTS, precision="bf16")
    fp32_after = tiny.encode(TEXTS, precision="fp32")
    assert not np.allclose(before, after, atol=1e-3)
    assert (after * fp32_after).sum(1).min() >= 0.999
    with torch.no_grad():
        for p in tiny.parameters():
            p.data.mul_(0.5)
    np.testing.assert_allclose(
        tiny.encode(TEXTS, precision="bf16"), tiny.encode(TEXTS, precision="fp32"), atol=0.05
    )
