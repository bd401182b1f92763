"""LoRA adapters (peft): recipe keys, merged and adapter-only outputs loaded by sentence-transformers, exact
resume, the card's adapter line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from embtune import EmbeddingModel
from embtune.errors import EmbtuneError
from embtune.training.checkpoint import list_checkpoints
from embtune.training.loop import train
from embtune.training.recipe import config_from_dict

pytest.importorskip("peft")
from embtune.models.adapters import attach_lora, default_targets, is_lora, load_lora  # noqa: E402

TEXTS = ["the red cat and the dog", "a big house by the river", "fast train to the city at night"]
LORA = {"r": 4, "alpha": 8, "dropout": 0.0}


def _lora_config(factory, model_dir, data, out, adapter=None, **args):
    cfg = factory(model_dir, data, out, **args)
    cfg["model"]["adapter"] = {**LORA, **(adapter or {})}
    return cfg


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in EmbeddingModel.load(folder).state_dict().items()}


@pytest.mark.slow
def test_lora_trains_only_adapters_and_merged_output_loads_in_sentence_transformers(
    tiny_nodropout_dir, pairs_file, tmp_path, config_factory
):
    st = pytest.importorskip("sentence_transformers")
    result = train(config_from_dict(_lora_config(config_factory, tiny_nodropout_dir, pairs_file, tmp_path / "run")))
    out = result.model_path
    assert not (out / "adapter_config.json").exists() and (out / "model.safetensors").is_file()
    base = EmbeddingModel.from_transformer(tiny_nodropout_dir, pooling="mean", normalize=True, backend="hf")
    tuned = EmbeddingModel.load(out, backend="hf")  # Hugging Face's parameter names, as the saved folder has
    assert not is_lora(tuned)
    before, after = base.state_dict(), tuned.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # LoRA adapts query/key/value/dense weights only: embeddings, LayerNorms and biases stay the base's
    assert changed and all(k.endswith("weight") and any(t in k for t in ("query", "key", "value", "dense"))
                           for k in changed), changed
    assert not any("pooler" in k for k in changed)
    ours = tuned.encode(TEXTS, precision="fp32")
    theirs = st.SentenceTransformer(str(out), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    card = (out / "README.md").read_text()
    trainable = sum(p.numel() for n, p in _lora_model(tiny_nodropout_dir).named_parameters() if p.requires_grad)
    assert "LoRA adapter" in card and f"{trainable:,} trainable" in card and "merged into the weights" in card


def _lora_model(folder: Path) -> EmbeddingModel:
    model = EmbeddingModel.from_transformer(folder, pooling="mean", normalize=True)
    attach_lora(model, r=4, alpha=8, dropout=0.0)
    return model


@pytest.mark.slow
def test_adapter_only_output_loads_in_sentence_transformers_both_ways(
    tiny_nodropout_dir, pairs_file, tmp_path, config_factory
):
    st = pytest.importorskip("sentence_transformers")
    cfg = _lora_config(config_factory, tiny_nodropout_dir, pairs_file, tmp_path / "run", adapter={"save": "adapter"})
    out = train(config_from_dict(cfg)).model_path
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    assert not (out / "model.safetensors").exists()  # the adapter alone, beside the ST config
    assert (out / "modules.json").is_file()
    base_name = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert Path(base_name) == tiny_nodropout_dir.resolve()

    ours_model = EmbeddingModel.from_transformer(tiny_nodropout_dir, pooling="mean", normalize=True)
    load_lora(ours_model, out, trainable=False)
    ours = ours_model.encode(TEXTS, precision="fp32")
    base_only = EmbeddingModel.from_transformer(tiny_nodropout_dir, pooling="mean", normalize=True)
    assert not np.allclose(ours, base_only.encode(TEXTS, precision="fp32"), atol=1e-4)  # the adapter matters

    direct = st.SentenceTransformer(str(out), device="cpu").encode(TEXTS)
    np.testing.assert_allclose(ours, direct, atol=1e-5)
    plain = EmbeddingModel.from_transformer(tiny_nodropout_dir, pooling="mean", normalize=True)
    plain.save(tmp_path / "base_st")
    loaded = st.SentenceTransformer(str(tmp_path / "base_st"), device="cpu")
    loaded.load_adapter(str(out))
    np.testing.assert_allclose(ours, loaded.encode(TEXTS), atol=1e-5)
    assert "saved as the adapter alone" in (out / "README.md").read_text()


@pytest.mark.slow
def test_resume_with_adapters_equals_an_uninterrupted_run(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    common = {"max_steps": 10, "save_steps": 4, "gradient_accumulation_steps": 2, "warmup_steps": 2}
    adapter = {"dropout": 0.1}  # dropout on: the RNG state must be restored too
    full = train(config_from_dict(_lora_config(config_factory, tiny_bert_dir, pairs_file, tmp_path / "full",
                                               adapter, **common)))
    part = tmp_path / "part"
    train(config_from_dict(_lora_config(config_factory, tiny_bert_dir, pairs_file, part, adapter, **common)))
    for ckpt in list_checkpoints(part):
        if ckpt.name != "checkpoint-4":
            shutil.rmtree(ckpt)
    assert (part / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors").is_file()
    resumed = train(config_from_dict(_lora_config(config_factory, tiny_bert_dir, pairs_file, part, adapter,
                                                  resume_from_checkpoint="last", **common)))
    a, b = _weights(full.model_path), _weights(resumed.model_path)
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    log_a = [json.loads(x)["loss"] for x in full.log_path.read_text().splitlines()]
    log_b = [json.loads(x)["loss"] for x in resumed.log_path.read_text().splitlines()]
    assert log_a == pytest.approx(log_b, abs=1e-6)
    base = EmbeddingModel.from_transformer(tiny_bert_dir, pooling="mean", normalize=True).state_dict()
    assert any(not torch.equal(base[k], a[k]) for k in base)  # training did move the (merged) weights


def test_default_targets_per_architecture(tiny_bert_dir):
    from transformers import XLMRobertaConfig, XLMRobertaModel

    bert = EmbeddingModel.from_transformer(tiny_bert_dir, pooling="mean", backend="hf")
    assert default_targets(bert.transformer.auto_model) == ["query", "key", "value", "dense"]
    xlmr = XLMRobertaModel(XLMRobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                            num_attention_heads=2, intermediate_size=20))
    assert default_targets(xlmr) == ["query", "key", "value", "dense"]

    class Layer(torch.nn.Module):  # the layer names of embtune's own fast encoder (models/fast_encoder.py)
        def __init__(self) -> None:
            super().__init__()
            self.qkv, self.attn_out = torch.nn.Linear(8, 24), torch.nn.Linear(8, 8)
            self.ffn_in, self.ffn_out = torch.nn.Linear(8, 16), torch.nn.Linear(16, 8)

    assert default_targets(torch.nn.ModuleList([Layer()])) == ["qkv", "attn_out", "ffn_in", "ffn_out"]
    with pytest.raises(EmbtuneError, match="no default LoRA target modules.*set model.adapter.target_modules"):
        default_targets(torch.nn.Sequential(torch.nn.Linear(4, 4)))


def test_adapter_recipe_errors(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    cfg = _lora_config(config_factory, tiny_bert_dir, pairs_file, tmp_path / "a", adapter={"alpah": 4})
    with pytest.raises(EmbtuneError, match=r"model\.adapter\.alpah.*did you mean .model\.adapter\.alpha"):
        config_from_dict(cfg)
    cfg = _lora_config(config_factory, tiny_bert_dir, pairs_file, tmp_path / "b", adapter={"save": "both"})
    with pytest.raises(EmbtuneError, match=r"model\.adapter\.save: .both. is not one of merged, adapter"):
        config_from_dict(cfg)
    cfg = _lora_config(config_factory, tiny_bert_dir, pairs_file, tmp_path / "c", adapter={"target_modules": ["qq"]})
    with pytest.raises(EmbtuneError, match=r"target_modules: \['qq'\] match no Linear"):
        train(config_from_dict(cfg))


@pytest.mark.slow
def test_lora_two_gloo_processes_match_one_process(tiny_nodropout_dir, pairs_file, tmp_path, config_factory):
    from test_ddp import _launch  # the torchrun-environment launcher of the DDP tests

    def cfg(out: Path, batch: int) -> dict:
        return _lora_config(config_factory, tiny_nodropout_dir, pairs_file, out, max_steps=4,
                            per_device_train_batch_size=batch, save_strategy="no", logging_steps=1)

    single = train(config_from_dict(cfg(tmp_path / "single", 8)))
    _launch(cfg(tmp_path / "ddp", 4), world_size=2)
    a, b = _weights(single.model_path), _weights(tmp_path / "ddp")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    start = EmbeddingModel.from_transformer(tiny_nodropout_dir, normalize=True).state_dict()
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-4  # it did train


def test_bf16_base_keeps_frozen_linear_and_embedding_weights_in_bf16(tiny_nodropout_dir):
    from embtune.training.build import build_model
    from embtune.training.config import AdapterCfg, ModelCfg

    cfg = ModelCfg(name=str(tiny_nodropout_dir), pooling="mean", normalize=True, adapter=AdapterCfg(**LORA))
    model = build_model(cfg, None, torch.bfloat16)  # base_dtype auto follows a bf16 run
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert all(d == torch.float32 for n, d in dtypes.items() if "lora_" in n)
    assert all(d == torch.float32 for n, d in dtypes.items() if "LayerNorm" in n)
    frozen_linear = [n for n in dtypes if n.endswith("base_layer.weight") or "word_embeddings" in n]
    assert frozen_linear and all(dtypes[n] == torch.bfloat16 for n in frozen_linear)
    assert all(p.dtype == torch.float32 for p in build_model(cfg, None, None).parameters())  # fp32 run: fp32
    fixed = ModelCfg(name=str(tiny_nodropout_dir), adapter=AdapterCfg(**LORA, base_dtype="fp32"))
    assert all(p.dtype == torch.float32 for p in build_model(fixed, None, torch.bfloat16).parameters())
    with pytest.raises(EmbtuneError, match="base_dtype"):
        AdapterCfg(base_dtype="int4")


@pytest.mark.slow
def test_bf16_base_run_merges_into_the_float32_base_weights(tiny_nodropout_dir, pairs_file, tmp_path, config_factory):
    st = pytest.importorskip("sentence_transformers")
    cfg = _lora_config(config_factory, tiny_nodropout_dir, pairs_file, tmp_path / "run", bf16=True,
                       cache_dir=str(tmp_path / "cache"))
    out = train(config_from_dict(cfg)).model_path
    copies = list((tmp_path / "cache" / "bf16-weights").glob("*/model.safetensors"))
    assert len(copies) == 1  # the base was loaded from its bf16 copy, made once in the run's cache
    base = EmbeddingModel.from_transformer(tiny_nodropout_dir, pooling="mean", normalize=True, backend="hf")
    tuned = EmbeddingModel.load(out, backend="hf")
    before, after = base.state_dict(), tuned.state_dict()
    assert all(v.dtype == torch.float32 for v in after.values() if v.is_floating_point())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # bit-equal where LoRA does not adapt (embeddings, norms, biases): the float32 originals, not bf16 copies
    assert changed and all(k.endswith("weight") and any(t in k for t in ("query", "key", "value", "dense"))
                           for k in changed), changed
    for k in changed:  # the merged delta is a small low-rank update, not bf16 rounding of every weight
        delta = after[k] - before[k]
        assert torch.linalg.matrix_rank(delta.double(), rtol=1e-3) <= LORA["r"], k  # float32 rounding aside
    np.testing.assert_allclose(tuned.encode(TEXTS, precision="fp32"),
                               st.SentenceTransformer(str(out), device="cpu").encode(TEXTS), atol=1e-5)


def test_lora_runs_hand_free_heap_back_every_few_layers(tiny_nodropout_dir, monkeypatch):
    """A LoRA model trims the C heap after every TRIM_EVERY_LAYERS-th encoder layer forward (utils/memory.py)."""
    from embtune.training.build import build_model
    from embtune.training.config import AdapterCfg, ModelCfg
    from embtune.utils import memory

    if memory._libc() is None:
        pytest.skip("glibc only (malloc_trim)")
    calls = []
    monkeypatch.setattr(memory, "release_free_heap", lambda min_free: calls.append(min_free) or False)
    monkeypatch.setattr(memory.trim_between_layers, "__defaults__", (1, memory.TRIM_MIN_FREE))
    model = build_model(ModelCfg(name=str(tiny_nodropout_dir), adapter=AdapterCfg(**LORA)), None, None)
    layers = model.transformer.auto_model.config.num_hidden_layers
    model.encode(["one text", "and another one"], precision="fp32")
    assert len(calls) == layers and set(calls) == {memory.TRIM_MIN_FREE}
    full = build_model(ModelCfg(name=str(tiny_nodropout_dir)), None, None)  # full fine-tuning: no hooks
    calls.clear()
    full.encode(["one text"], precision="fp32")
    assert calls == []
