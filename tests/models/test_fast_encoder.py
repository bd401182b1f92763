"""FastEncoder == the Hugging Face forward and backward, on tiny random models of every supported architecture."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from embtune.errors import EmbtuneError
from embtune.models.embedding_model import EmbeddingModel
from embtune.models.fast_encoder import FastEncoder
from embtune.models.fast_weights import from_hf, hf_state_dict, name_map, save_fast
from embtune.models.pooling import Pooling

VOCAB, HIDDEN, HEADS, LAYERS, FFN = 99, 32, 4, 2, 37


def _tiny(arch: str, dropout: float = 0.0):
    """A tiny random Hugging Face model of ``arch`` (dropout probabilities set to ``dropout``)."""
    import transformers as tf

    torch.manual_seed(0)
    common = {"vocab_size": VOCAB, "max_position_embeddings": 80}
    if arch == "bert":
        config = tf.BertConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                               intermediate_size=FFN, hidden_dropout_prob=dropout,
                               attention_probs_dropout_prob=dropout, **common)
        return tf.BertModel(config)
    if arch == "xlm-roberta":
        config = tf.XLMRobertaConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                     intermediate_size=FFN, hidden_dropout_prob=dropout, pad_token_id=1,
                                     attention_probs_dropout_prob=dropout, type_vocab_size=1, **common)
        return tf.XLMRobertaModel(config)
    if arch == "mpnet":
        config = tf.MPNetConfig(hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                                intermediate_size=FFN, hidden_dropout_prob=dropout,
                                attention_probs_dropout_prob=dropout, **common)
        return tf.MPNetModel(config)
    config = tf.DistilBertConfig(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN, dropout=dropout,
                                 attention_dropout=dropout, **common)
    return tf.DistilBertModel(config)


ARCHS = ["bert", "xlm-roberta", "mpnet", "distilbert"]


def _batch(lengths: list[int], pad_id: int, token_types: bool = False, seed: int = 1) -> dict[str, torch.Tensor]:
    """Right-padded random ids (never the pad id, as a tokenizer's real tokens) with the given lengths."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.randint(3, VOCAB, (len(lengths), width), generator=g)
    mask = (torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = ids.masked_fill(mask == 0, pad_id)
    features = {"input_ids": ids, "attention_mask": mask}
    if token_types:
        features["token_type_ids"] = torch.randint(0, 2, ids.shape, generator=g) * mask
    return features


def _hf_hidden(hf, features):
    inputs = {k: v for k, v in features.items() if k != "token_type_ids" or "token_type_ids" in features}
    return hf(**inputs).last_hidden_state


def _pad_id(hf) -> int:
    return 1 if type(hf).__name__ in ("MPNetModel", "XLMRobertaModel") else 0


# varied (MPNet's log buckets start at distance 8), unpadded, and all short (the packed rows are the token matrix)
LENGTHS = [[7, 3, 12, 1, 40], [16, 16, 16], [7, 3, 12, 1, 9, 14]]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("lengths", LENGTHS, ids=["padded", "no-padding", "short"])
@pytest.mark.parametrize("mode", ["eval", "train", "train-explicit", "grouped", "packed", "packed-train"])
@pytest.mark.parametrize("kernels", ["fused", "eager"])
def test_fp32_outputs_and_gradients_match_hugging_face(arch, lengths, mode, kernels, monkeypatch):
    """``train-explicit``: a dropout too small to drop anything sends training attention down the explicit
    scores/softmax/mask path; ``grouped``: no packing and free extra groups, so attention runs in up to 3
    length groups; ``packed``: narrow packed rows, so short sequences share rows (several per row). Each with
    the fused training kernels and with their eager fallback."""
    import embtune.models.fast_encoder as fe
    from embtune.models import fused

    if kernels == "eager":  # as without a C compiler (``fused.py``): the same math as torch ops
        monkeypatch.setattr(fused, "_lib", None)
        monkeypatch.setattr(fused, "_tried", True)
    mask = _batch(lengths, 0)["attention_mask"]
    if mode == "grouped":
        monkeypatch.setattr(fe, "GROUP_OVERHEAD", 0)
        monkeypatch.setattr(fe, "PACK_MAX", 0)
        assert len(fe._Layout(mask).groups) == (3 if len(set(lengths)) > 1 else 1)
    if mode.startswith("packed"):
        monkeypatch.setattr(fe, "PACK_WIDTH", 16)
        monkeypatch.setattr(fe, "PACK_MAX", 16)
        layout = fe._Layout(mask)
        if max(lengths) == 40:  # [1, 3, 7] share a row, 12 gets one, 40 is a group of its own
            assert [(g.rows, g.width) for g in layout.groups] == [(2, 16), (1, 40)]
        if max(lengths) == 14:  # [14, 1], [12, 3], [9, 7]: one packed group, resident in the layers
            assert [(g.rows, g.width) for g in layout.groups] == [(3, 16)] and layout.make_resident() is not None
    if mode == "packed-train":
        mode = "train-explicit"
    hf = _tiny(arch, dropout=1e-9 if mode == "train-explicit" else 0.0)
    fast = from_hf(copy.deepcopy(hf))
    mode = "train" if mode.startswith("train") else "eval"
    hf.train(mode == "train")
    fast.train(mode == "train")
    features = _batch(lengths, _pad_id(hf), token_types=arch == "bert")
    mask = features["attention_mask"].bool()
    theirs = _hf_hidden(hf, features)
    ours = fast(features["input_ids"], features["attention_mask"], features.get("token_type_ids"))
    assert ours.shape == theirs.shape
    assert (ours[mask] - theirs[mask]).abs().max() <= 1e-5
    assert bool((ours[~mask] == 0).all())

    pool = Pooling(HIDDEN, ["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"])
    weights = torch.randn(pool.output_dimension, generator=torch.Generator().manual_seed(3))
    p_ours, p_theirs = pool(ours, features["attention_mask"]), pool(theirs, features["attention_mask"])
    assert (p_ours - p_theirs).abs().max() <= 1e-5
    (p_ours * weights).sum().backward()
    (p_theirs * weights).sum().backward()
    hf_params = dict(hf.named_parameters())
    for name, param in fast.named_parameters():
        expected = torch.cat([hf_params[n].grad for n in name_map(fast)[name]])
        scale = expected.abs().max().clamp(min=1e-12)
        assert param.grad is not None, name
        assert ((param.grad - expected).abs().max() / scale) <= 1e-4, name


@pytest.mark.parametrize("arch", ARCHS)
def test_saved_weights_are_hugging_face_names_and_load_back(arch, tmp_path):
    from transformers import AutoModel

    hf = _tiny(arch).eval()
    fast = from_hf(copy.deepcopy(hf))
    with torch.no_grad():  # change the weights so a stale copy would show
        for p in fast.parameters():
            p.add_(0.01)
    state = hf_state_dict(fast)
    assert set(state) == set(hf.state_dict())
    save_fast(fast, tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded).__name__ == type(hf).__name__
    features = _batch([5, 9, 2], _pad_id(hf))
    mask = features["attention_mask"].bool()
    with torch.no_grad():
        ours = fast.eval()(features["input_ids"], features["attention_mask"])
        theirs = _hf_hidden(loaded, features)
    assert (ours[mask] - theirs[mask]).abs().max() <= 1e-5


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("activation", ["gelu", "gelu_new", "relu"])
def test_bf16_inference_fused_epilogues_match_the_unfused_layers(arch, activation, monkeypatch):
    """bf16 inference runs qkv/attn_out/ffn as oneDNN matmuls with fused bias (+residual / activation); the result
    equals the separate ops up to bf16 rounding and stays within cosine 0.999 of fp32 at every token."""
    import embtune.models.fast_encoder as fe

    if not fe._HAS_ONEDNN:
        pytest.skip("no oneDNN bf16 matmul in this torch build or on this CPU (it needs AVX-512)")
    hf = _tiny(arch).eval()
    fast = from_hf(copy.deepcopy(hf)).eval()
    for layer in fast.layers:
        layer.act, layer.fused_act = fe.ACTIVATIONS[activation], fe.ONEDNN_ACTIVATIONS[activation]
    low = copy.deepcopy(fast).to(torch.bfloat16)
    features = _batch([7, 3, 12, 1, 40, 40], _pad_id(hf))
    mask = features["attention_mask"].bool()
    calls = []
    real = fe.EncoderLayer._fused_rest
    monkeypatch.setattr(fe.EncoderLayer, "_fused_rest", lambda self, *a: calls.append(1) or real(self, *a))
    with torch.inference_mode():
        ref = fast(features["input_ids"], features["attention_mask"])[mask]
        fused = low(features["input_ids"], features["attention_mask"])[mask].float()
        assert len(calls) == LAYERS
        monkeypatch.setattr(fe, "_HAS_ONEDNN", False)
        plain = low(features["input_ids"], features["attention_mask"])[mask].float()
    assert len(calls) == LAYERS  # the second forward took the separate ops
    assert float(torch.nn.functional.cosine_similarity(fused, ref).min()) >= 0.999
    assert float(torch.nn.functional.cosine_similarity(fused, plain).min()) >= 0.999


def test_dropout_is_active_in_training_and_off_in_eval():
    fast = from_hf(_tiny("bert", dropout=0.3))
    features = _batch([6, 9], 0)
    args = (features["input_ids"], features["attention_mask"])
    fast.train()
    torch.manual_seed(0)
    a = fast(*args)
    b = fast(*args)
    assert not torch.allclose(a, b)
    fast.eval()
    assert torch.equal(fast(*args), fast(*args))


@pytest.mark.parametrize("p", [0.0, 0.1])
def test_gradient_checkpointing_gives_the_same_gradients(p):
    """With dropout, the recomputed layers draw the same masks (checkpoint restores torch's RNG state)."""
    hf = _tiny("bert", dropout=p)
    plain, ckpt = from_hf(copy.deepcopy(hf)).train(), from_hf(copy.deepcopy(hf)).train()
    ckpt.gradient_checkpointing_enable()
    features = _batch([7, 3, 12], 0)
    for model in (plain, ckpt):
        torch.manual_seed(11)
        model(features["input_ids"], features["attention_mask"]).pow(2).sum().backward()
    for (name, a), (_, b) in zip(plain.named_parameters(), ckpt.named_parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-7, msg=name)


def test_embed_roles_in_one_forward_equals_one_forward_per_role(tiny_bert_dir):
    model = EmbeddingModel.from_transformer(tiny_bert_dir, pooling="mean")
    assert model.transformer.backend == "fast"
    features = {
        "anchor": model.tokenize(["the cat", "a dog runs in the city at night"]),
        "positive": model.tokenize(["the big red bus", "a"]),
        "negative": model.tokenize(["music and books and films and games", "sun"]),
    }
    together = model.embed_roles(features)
    for role, feats in features.items():
        torch.testing.assert_close(together[role], model(feats), rtol=0, atol=1e-6)


def test_backend_choice(tiny_bert_dir, tmp_path):
    from transformers import BertConfig, BertModel

    fast = EmbeddingModel.from_transformer(tiny_bert_dir)
    hf = EmbeddingModel.from_transformer(tiny_bert_dir, backend="hf")
    assert isinstance(fast.transformer.auto_model, FastEncoder)
    assert type(hf.transformer.auto_model).__name__ == "BertModel"
    assert fast.describe()["architecture"] == hf.describe()["architecture"] == "BertModel"
    texts = ["the cat sat", "a long text about the river and the sea " * 4]
    np.testing.assert_allclose(fast.encode(texts, precision="fp32"), hf.encode(texts, precision="fp32"), atol=1e-5)
    # an architecture variant the fast path does not implement: auto keeps Hugging Face, fast refuses
    config = BertConfig.from_pretrained(tiny_bert_dir)
    config.position_embedding_type = "relative_key"
    BertModel(config).save_pretrained(tmp_path / "rel")
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (tiny_bert_dir / name).is_file():
            (tmp_path / "rel" / name).write_bytes((tiny_bert_dir / name).read_bytes())
    assert EmbeddingModel.from_transformer(tmp_path / "rel").transformer.backend == "hf"
    with pytest.raises(EmbtuneError, match="backend 'fast' does not support"):
        EmbeddingModel.from_transformer(tmp_path / "rel", backend="fast")
    with pytest.raises(EmbtuneError, match="unknown backend"):
        EmbeddingModel.from_transformer(tiny_bert_dir, backend="onnx")


def test_switching_back_to_hf_keeps_trained_weights(tiny_bert_dir):
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    with torch.no_grad():
        model.transformer.auto_model.layers[0].qkv.weight.mul_(1.5)
    before = model.encode(["the cat sat on the road"], precision="fp32")
    model.transformer.use_backend("hf")
    assert model.transformer.backend == "hf"
    np.testing.assert_allclose(model.encode(["the cat sat on the road"], precision="fp32"), before, atol=1e-5)


@pytest.mark.slow
def test_bundled_model_fast_equals_hf_and_bf16_is_close(minilm_dir):
    fast = EmbeddingModel.load(minilm_dir)
    hf = EmbeddingModel.load(minilm_dir, backend="hf")
    assert fast.transformer.backend == "fast"
    base = ["A man is playing a guitar.", "Ein Mann spielt Gitarre.", "日本語の文です。", "a", "?",
            "numbers 3.14159 and 2,718", "Norsk: Fjerne trapp i mur utvendig"]
    texts = [f"{base[i % len(base)]} " + "word " * (i % 41) for i in range(120)] + ["long text " * 200]
    a, b = fast.encode(texts, precision="fp32"), hf.encode(texts, precision="fp32")
    assert np.abs(a - b).max() <= 1e-5
    c = fast.encode(texts, precision="bf16")
    cosine = (a * c).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(c, axis=1)
    assert cosine.min() >= 0.9999


def test_recipe_model_backend_is_validated_and_reaches_the_model(tiny_bert_dir):
    from embtune.training.build import build_model
    from embtune.training.recipe import config_from_dict

    raw = {"model": {"name": str(tiny_bert_dir), "backend": "hf"}, "datasets": [{"path": "x.jsonl"}]}
    assert build_model(config_from_dict(raw).model).transformer.backend == "hf"
    raw["model"]["backend"] = "auto"
    assert build_model(config_from_dict(raw).model).transformer.backend == "fast"
    raw["model"]["backend"] = "onnx"
    with pytest.raises(EmbtuneError, match="model.backend"):
        config_from_dict(raw)


def test_bf16_token_rows_are_rounded_up_without_changing_outputs_or_gradients(monkeypatch):
    """Under bf16 autocast the token matrix gets spare rows (a bounded set of oneDNN matmul shapes); they must
    not change any real token's output or any gradient."""
    import embtune.models.fast_encoder as fe

    hf = _tiny("bert")
    features = _batch([7, 3, 12, 1, 40], 0)
    seen = []
    real_pad = torch.nn.functional.pad

    def spy(x, pad, *args, **kwargs):
        seen.append((x.shape[0], pad))
        return real_pad(x, pad, *args, **kwargs)

    runs = {}
    for rows in (fe.TOKEN_ROWS, 1):
        monkeypatch.setattr(fe, "TOKEN_ROWS", rows)
        fast = from_hf(copy.deepcopy(hf)).train()
        monkeypatch.setattr(fe.F, "pad", spy)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = fast(features["input_ids"], features["attention_mask"])
        monkeypatch.setattr(fe.F, "pad", real_pad)
        out.float().sum().backward()
        runs[rows] = (out.float(), {n: p.grad.clone() for n, p in fast.named_parameters()})
    assert seen == [(63, (0, 0, 0, 1))]  # 63 real tokens -> 64 rows; with TOKEN_ROWS=1 no padding at all
    (a, grads_a), (b, grads_b) = runs[fe.TOKEN_ROWS], runs[1]
    assert (a - b).abs().max() <= 2e-2 * b.abs().max()  # bf16 rounding only
    for name, grad in grads_a.items():
        scale = grads_b[name].abs().max().clamp(min=1e-6)
        assert (grad - grads_b[name]).abs().max() / scale <= 5e-2, name


@pytest.mark.parametrize("lengths", [[13] * 40 + [12] * 10, [10] * 30 + [11] * 60, list(range(1, 33)) * 3],
                         ids=["12-13", "10-11", "many-lengths"])
def test_packed_rows_hold_every_sequence_once_and_fill_rows(lengths):
    import embtune.models.fast_encoder as fe

    rows_of, offsets, rows = fe._pack_rows(lengths, 64)
    taken = set()
    for length, row, offset in zip(lengths, rows_of, offsets, strict=True):
        cells = {(row, offset + j) for j in range(length)}
        assert 0 <= row < rows and offset + length <= 64 and not cells & taken
        taken |= cells
    if len(set(lengths)) <= fe.PATTERN_LENGTHS:  # 13+13+13+13+12 = 64; 10+10+11+11+11+11 = 64: every row full
        assert rows == sum(lengths) // 64 == len(taken) // 64


@pytest.mark.parametrize("lengths", [[7, 3, 12, 1, 40, 40, 70], [5, 9, 13, 2], [300, 4]],
                         ids=["mixed", "short", "longer-than-256"])
def test_bf16_inference_attends_inside_each_sequence_in_place(lengths, monkeypatch):
    """On an AVX512-BF16 CPU, bf16 inference runs attention per sequence on the token rows (fused kernel): the
    same hidden states as torch's fused attention on the packed/padded groups, up to bf16 rounding."""
    import transformers as tf

    import embtune.models.fast_encoder as fe
    from embtune.models import fused

    lib = fused.kernels()
    if lib is None or not lib.sequence_attention_native():
        pytest.skip("the sequence attention kernel needs AVX512-BF16 and a C compiler")
    torch.manual_seed(0)
    config = tf.BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=FFN, max_position_embeddings=320)
    fast = from_hf(tf.BertModel(config)).eval().to(torch.bfloat16)  # heads of 32 values, as MiniLM and e5-small
    features = _batch(lengths, 0)
    mask = features["attention_mask"].bool()
    calls = []
    real = fused.sequence_attention
    monkeypatch.setattr(fused, "sequence_attention", lambda *a: calls.append(a[1].clone()) or real(*a))
    with torch.inference_mode():
        ours = fast(features["input_ids"], features["attention_mask"])[mask].float()
        monkeypatch.setattr(fe.fused, "can_attend_sequences", lambda *a: False)
        theirs = fast(features["input_ids"], features["attention_mask"])[mask].float()
    if max(lengths) > fused.SEQUENCE_ATTENTION_MAX:
        assert not calls  # torch's fused attention for long sequences
        return
    assert len(calls) == 2  # once per layer; segments: every sequence in ascending length, then the spare rows
    segments = calls[0]
    assert segments[1][segments[1] > 0].tolist() == sorted(lengths)
    assert int(segments[1].abs().sum()) % fe.TOKEN_ROWS == 0
    assert float(torch.nn.functional.cosine_similarity(ours, theirs).min()) >= 0.9999


@pytest.mark.parametrize("arch", ["bert", "xlm-roberta", "distilbert"])
def test_training_attention_kernel_with_vector_heads_matches_hugging_face(arch, monkeypatch):
    """Heads of 32 values (MiniLM, e5-small) take the training kernel's AVX-512 path where the CPU has it (the
    tiny configs above, heads of 8, take its plain loops): fp32 outputs 1e-5, gradients 1e-4 relative."""
    import transformers as tf

    from embtune.models import fused

    if fused.kernels() is None:
        pytest.skip("no C compiler: the kernels cannot be built")
    torch.manual_seed(0)
    common = {"vocab_size": VOCAB, "max_position_embeddings": 80}  # training mode, dropout off: the same function
    bert_like = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": FFN,
                 "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0, **common}
    if arch == "bert":
        hf = tf.BertModel(tf.BertConfig(**bert_like))
    elif arch == "xlm-roberta":
        hf = tf.XLMRobertaModel(tf.XLMRobertaConfig(pad_token_id=1, type_vocab_size=1, **bert_like))
    else:
        hf = tf.DistilBertModel(tf.DistilBertConfig(dim=64, n_layers=2, n_heads=2, hidden_dim=FFN, dropout=0.0,
                                                    attention_dropout=0.0, **common))
    fast = from_hf(copy.deepcopy(hf)).train()
    hf.train()
    calls = []
    real = fused.sequence_attention_train
    monkeypatch.setattr(fused, "sequence_attention_train", lambda *a, **k: calls.append(1) or real(*a, **k))
    features = _batch([7, 3, 12, 1, 40, 33], _pad_id(hf))
    mask = features["attention_mask"].bool()
    ours = fast(features["input_ids"], features["attention_mask"])
    theirs = _hf_hidden(hf, features)
    assert len(calls) == 2
    assert (ours[mask] - theirs[mask]).abs().max() <= 1e-5
    weights = torch.randn(64, generator=torch.Generator().manual_seed(3))
    ((ours * mask[..., None]).sum(1) @ weights).sum().backward()
    ((theirs * mask[..., None]).sum(1) @ weights).sum().backward()
    hf_params = dict(hf.named_parameters())
    for name, param in fast.named_parameters():
        expected = torch.cat([hf_params[n].grad for n in name_map(fast)[name]])
        scale = expected.abs().max().clamp(min=1e-12)
        assert ((param.grad - expected).abs().max() / scale) <= 1e-4, name


@pytest.mark.parametrize("arch", ARCHS)
def test_fp32_inference_attends_in_place_and_matches_hugging_face(arch, monkeypatch):
    """float32 inference runs the training kernel's forward pass on the token rows in place (no packing)."""
    from embtune.models import fused

    if fused.kernels() is None:
        pytest.skip("no C compiler: the kernels cannot be built")
    hf = _tiny(arch).eval()
    fast = from_hf(copy.deepcopy(hf)).eval()
    calls = []
    real = fused.sequence_attention_train
    monkeypatch.setattr(fused, "sequence_attention_train", lambda *a, **k: calls.append(1) or real(*a, **k))
    features = _batch([7, 3, 12, 1, 40, 9], _pad_id(hf))
    mask = features["attention_mask"].bool()
    with torch.inference_mode():
        ours = fast(features["input_ids"], features["attention_mask"])
        theirs = _hf_hidden(hf, features)
    assert len(calls) == (0 if arch == "mpnet" else LAYERS)  # MPNet's position bias: torch's attention
    assert (ours[mask] - theirs[mask]).abs().max() <= 1e-5
