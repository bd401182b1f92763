"""Untrusted model folders: pickle weights, remote code, paths out of the folder, unknown module types."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from embtune.errors import EmbtuneError
from embtune.models.embedding_model import EmbeddingModel


@pytest.fixture()
def saved(tiny_bert_dir, tmp_path):
    return EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True).save(tmp_path / "model")


def test_pickle_only_folder_is_refused_unless_opted_in(tiny_bert_dir, tmp_path):
    from transformers import AutoModel

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_bert_dir, folder)
    (folder / "model.safetensors").unlink()
    AutoModel.from_pretrained(tiny_bert_dir).save_pretrained(folder, safe_serialization=False)
    if not (folder / "pytorch_model.bin").exists():  # newer transformers always write safetensors
        pytest.skip("this transformers version cannot write pickle weights")
    (folder / "model.safetensors").unlink(missing_ok=True)
    with pytest.raises(EmbtuneError, match="allow_pickle=True"):
        EmbeddingModel.load(folder)
    assert EmbeddingModel.load(folder, allow_pickle=True).embedding_dim == 32


def test_fake_pickle_file_alone_is_refused(saved):
    (saved / "model.safetensors").rename(saved / "pytorch_model.bin")
    with pytest.raises(EmbtuneError, match="pickle"):
        EmbeddingModel.load(saved)


def test_remote_code_is_refused(saved):
    config = json.loads((saved / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(EmbtuneError, match="trust_remote_code=True"):
        EmbeddingModel.load(saved)


@pytest.mark.parametrize("bad_path", ["../outside", "/etc", "1_Pooling/../../x"])
def test_module_paths_leaving_the_folder_are_refused(saved, bad_path):
    modules = json.loads((saved / "modules.json").read_text())
    modules[1]["path"] = bad_path
    (saved / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EmbtuneError, match="leaves the model folder"):
        EmbeddingModel.load(saved)


def test_symlink_out_of_the_folder_is_refused(saved, tmp_path):
    outside = tmp_path / "elsewhere"
    shutil.move(saved / "1_Pooling", outside)
    os.symlink(outside, saved / "1_Pooling")
    with pytest.raises(EmbtuneError, match="outside the model folder"):
        EmbeddingModel.load(saved)


def test_unknown_module_type_is_refused(saved):
    modules = json.loads((saved / "modules.json").read_text())
    modules[1]["type"] = "evil_package.RunMe"
    (saved / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EmbtuneError, match="not supported"):
        EmbeddingModel.load(saved)


def test_malformed_config_is_a_clear_error(saved):
    (saved / "1_Pooling" / "config.json").write_text("{not json")
    with pytest.raises(EmbtuneError, match="not valid JSON"):
        EmbeddingModel.load(saved)


def test_missing_weights_is_a_clear_error(saved):
    (saved / "model.safetensors").unlink()
    with pytest.raises(EmbtuneError, match="no model weights"):
        EmbeddingModel.load(saved)


def test_corrupted_safetensors_is_a_clear_error(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 3])
    with pytest.raises(EmbtuneError):
        EmbeddingModel.load(saved)


def test_not_a_model_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(EmbtuneError, match="not a model folder"):
        EmbeddingModel.load(tmp_path)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(EmbtuneError, match="no such model folder"):
        EmbeddingModel.load(str(tmp_path / "nope"))
