"""The cached bf16 copy of a model's weights: same names and shapes, float tensors in bf16, loads in transformers."""

from __future__ import annotations

import shutil

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from embtune.models.low_precision import bf16_weights_folder, needs_bf16_copy


def _tensors(path):
    with safe_open(str(path), framework="pt") as handle:
        return {k: handle.get_tensor(k) for k in handle.keys()}  # noqa: SIM118


def test_copy_has_every_tensor_in_bf16_and_loads_in_transformers(tiny_bert_dir, tmp_path):
    from transformers import AutoModel

    cache = tmp_path / "cache"
    copy = bf16_weights_folder(tiny_bert_dir, cache)
    assert copy != tiny_bert_dir and copy.is_relative_to(cache / "bf16-weights")
    source, converted = _tensors(tiny_bert_dir / "model.safetensors"), _tensors(copy / "model.safetensors")
    assert source.keys() == converted.keys()
    for key, tensor in source.items():
        expected = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
        assert converted[key].dtype == expected.dtype and torch.equal(converted[key], expected), key
    assert not needs_bf16_copy(copy)
    model = AutoModel.from_pretrained(copy, dtype=torch.bfloat16)
    reference = AutoModel.from_pretrained(tiny_bert_dir, dtype=torch.bfloat16)
    for (name, a), (_, b) in zip(model.state_dict().items(), reference.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_copy_is_reused_and_remade_when_the_source_changes(tiny_bert_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, folder)
    cache = tmp_path / "cache"
    first = bf16_weights_folder(folder, cache)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert bf16_weights_folder(folder, cache) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp  # not rewritten
    weights = load_file(folder / "model.safetensors")
    name = next(k for k, v in weights.items() if v.is_floating_point())
    weights[name] = weights[name] + 1.0
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    second = bf16_weights_folder(folder, cache)
    assert second != first
    assert torch.equal(_tensors(second / "model.safetensors")[name], weights[name].to(torch.bfloat16))


def test_bf16_weights_need_no_copy(tiny_bert_dir, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_bert_dir, folder)
    weights = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v)
               for k, v in load_file(folder / "model.safetensors").items()}
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    assert bf16_weights_folder(folder, tmp_path / "cache") == folder
    assert not (tmp_path / "cache").exists()


def test_large_tensors_are_converted_in_row_slices_with_the_same_bytes(tmp_path, monkeypatch):
    """Tensors bigger than one read (an embedding matrix) are read in slices of rows; the copy is unchanged."""
    import embtune.models.low_precision as low_precision

    monkeypatch.setattr(low_precision, "_CHUNK_BYTES", 100)  # every matrix below takes several slices
    tensors = {"emb": torch.randn(50, 7), "cube": torch.randn(3, 4, 9), "vec": torch.randn(40), "one": torch.tensor(2.5),
               "ids": torch.arange(12), "empty": torch.zeros(0, 3)}
    save_file(tensors, tmp_path / "m.safetensors")
    low_precision._write_bf16(tmp_path / "m.safetensors", tmp_path / "bf16.safetensors")
    converted = load_file(tmp_path / "bf16.safetensors")
    for key, tensor in tensors.items():
        expected = tensor.to(torch.bfloat16) if tensor.is_floating_point() else tensor
        assert converted[key].dtype == expected.dtype and torch.equal(converted[key], expected), key
