"""fast_weights.load_fast: safetensors straight into a FastEncoder, equal to loading through Hugging Face."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from test_fast_encoder import ARCHS, _batch, _pad_id, _tiny

from embtune.errors import EmbtuneError
from embtune.models.embedding_model import EmbeddingModel
from embtune.models.fast_encoder import FastEncoder
from embtune.models.fast_weights import from_hf, hf_state_dict, load_fast


def _config(folder):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(folder)


def _via_hf(folder, **kwargs) -> FastEncoder:
    from transformers import AutoModel

    return from_hf(AutoModel.from_pretrained(folder, **kwargs))


def _assert_same(ours: FastEncoder, theirs: FastEncoder) -> None:
    a, b = hf_state_dict(ours), hf_state_dict(theirs)
    assert set(a) == set(b)
    for key in a:
        assert a[key].dtype == b[key].dtype, key
        assert torch.equal(a[key], b[key]), key
    assert ours.hf_class == theirs.hf_class and ours.spec == theirs.spec
    assert ours.config.dtype == theirs.config.dtype
    assert all(p.requires_grad for p in ours.parameters())


@pytest.mark.parametrize("arch", ARCHS)
def test_direct_load_equals_loading_through_hugging_face(arch, tmp_path):
    hf = _tiny(arch).eval()
    hf.save_pretrained(tmp_path)
    ours = load_fast(tmp_path, _config(tmp_path))
    assert ours is not None
    _assert_same(ours, _via_hf(tmp_path))
    features = _batch([5, 9, 2], _pad_id(hf))
    mask = features["attention_mask"].bool()
    with torch.no_grad():
        out = ours.eval()(features["input_ids"], features["attention_mask"])
        ref = hf(**features).last_hidden_state
    assert (out[mask] - ref[mask]).abs().max() <= 1e-5


def test_sharded_weights_load_directly(tmp_path):
    hf = _tiny("bert")
    hf.save_pretrained(tmp_path, max_shard_size="20KB")
    assert (tmp_path / "model.safetensors.index.json").is_file() and not (tmp_path / "model.safetensors").exists()
    ours = load_fast(tmp_path, _config(tmp_path))
    assert ours is not None
    _assert_same(ours, _via_hf(tmp_path))


def test_a_shard_outside_the_folder_is_refused(tmp_path):
    hf = _tiny("bert")
    hf.save_pretrained(tmp_path / "model", max_shard_size="20KB")
    index = tmp_path / "model" / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    first = next(iter(data["weight_map"]))
    data["weight_map"][first] = "../outside.safetensors"
    index.write_text(json.dumps(data))
    with pytest.raises(EmbtuneError, match=r"model.safetensors.index.json: shard names must be files inside"):
        load_fast(tmp_path / "model", _config(tmp_path / "model"))


@pytest.mark.parametrize("stored", [torch.float32, torch.bfloat16])
def test_dtype_follows_the_folder_unless_given(stored, tmp_path):
    _tiny("bert").to(stored).save_pretrained(tmp_path)
    ours = load_fast(tmp_path, _config(tmp_path))
    assert {p.dtype for p in ours.parameters()} == {stored}
    _assert_same(ours, _via_hf(tmp_path))
    other = torch.float32 if stored == torch.bfloat16 else torch.bfloat16
    cast = load_fast(tmp_path, _config(tmp_path), other)
    assert {p.dtype for p in cast.parameters()} == {other}
    _assert_same(cast, _via_hf(tmp_path, dtype=other))


def test_weights_without_the_pooler_load_directly_and_save_without_it(tmp_path):
    from transformers import AutoModel

    _tiny("bert").save_pretrained(tmp_path / "src")
    state = load_file(str(tmp_path / "src" / "model.safetensors"))
    save_file({k: v for k, v in state.items() if not k.startswith("pooler.")}, str(tmp_path / "src" / "model.safetensors"),
              metadata={"format": "pt"})
    ours = load_fast(tmp_path / "src", _config(tmp_path / "src"))
    assert ours is not None and ours.extra_weights == {}
    from embtune.models.fast_weights import save_fast

    save_fast(ours, tmp_path / "out")
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert set(saved) == {k for k in state if not k.startswith("pooler.")}
    _, info = AutoModel.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["unexpected_keys"] and all(k.startswith("pooler.") for k in info["missing_keys"])


@pytest.mark.parametrize("change", ["prefixed", "missing", "mis-shaped", "head"])
def test_other_weight_sets_are_left_to_hugging_face(change, tiny_bert_dir, tmp_path):
    """Names, shapes or extras the base model does not have: load_fast declines, and loading the folder goes
    through Hugging Face's loader (which maps a prefix, and reports what is missing or mis-shaped)."""
    tmp_path = Path(shutil.copytree(tiny_bert_dir, tmp_path / "model"))
    path = tmp_path / "model.safetensors"
    state = load_file(str(path))
    key = "encoder.layer.1.output.dense.weight"
    if change == "prefixed":
        state = {f"bert.{k}": v for k, v in state.items()}
    elif change == "missing":
        del state[key]
    elif change == "mis-shaped":
        state[key] = state[key][:, :-1].contiguous()
    else:
        state["cls.predictions.bias"] = torch.zeros(3)
    save_file(state, str(path), metadata={"format": "pt"})
    assert load_fast(tmp_path, _config(tmp_path)) is None
    if change == "prefixed":
        model = EmbeddingModel.load(tmp_path)
        assert model.transformer.backend == "fast"
        reference = {k.removeprefix("bert."): v for k, v in state.items()}
        loaded = hf_state_dict(model.transformer.auto_model)
        assert all(torch.equal(loaded[k], reference[k]) for k in loaded)
    elif change != "head":
        with pytest.raises(EmbtuneError, match="config.json does not match"):
            EmbeddingModel.load(tmp_path)


def test_loading_a_model_builds_no_hugging_face_model(tiny_bert_dir):
    """The point of load_fast: the modeling code (and torch._dynamo, via meta-device init) is never imported."""
    code = (
        "import sys\n"
        "from embtune.models.embedding_model import EmbeddingModel\n"
        f"m = EmbeddingModel.load({str(tiny_bert_dir)!r})\n"
        "m.encode(['a short text'])\n"
        "print(m.transformer.backend, 'transformers.models.bert.modeling_bert' in sys.modules, "
        "'torch._dynamo' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.split() == ["fast", "False", "False"]
