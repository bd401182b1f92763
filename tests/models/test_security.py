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


# --- symlinked files, nested module paths, malformed modules.json and module configs, remote code -------


@pytest.mark.parametrize("inner", ["model.safetensors", "tokenizer.json", "config.json"])
def test_symlinked_top_level_file_pointing_outside_is_refused(saved, tmp_path, inner):
    outside = tmp_path / f"outside-{inner}"
    shutil.move(saved / inner, outside)
    os.symlink(outside, saved / inner)
    with pytest.raises(EmbtuneError, match="outside the model folder"):
        EmbeddingModel.load(saved)


@pytest.fixture()
def saved_dense(tiny_bert_dir, tmp_path):
    return EmbeddingModel.from_transformer(tiny_bert_dir, dense_dim=8, normalize=True).save(tmp_path / "dense")


def test_symlinked_dense_weights_pointing_outside_are_refused(saved_dense, tmp_path):
    weights = saved_dense / "2_Dense" / "model.safetensors"
    shutil.move(weights, tmp_path / "elsewhere.safetensors")
    os.symlink(tmp_path / "elsewhere.safetensors", weights)
    with pytest.raises(EmbtuneError, match="outside the model folder"):
        EmbeddingModel.load(saved_dense)


def test_nested_module_path_through_a_symlinked_folder_is_refused(saved_dense, tmp_path):
    (tmp_path / "elsewhere").mkdir()
    shutil.move(saved_dense / "2_Dense", tmp_path / "elsewhere" / "2_Dense")
    os.symlink(tmp_path / "elsewhere", saved_dense / "nested")
    modules = json.loads((saved_dense / "modules.json").read_text())
    modules[2]["path"] = "nested/2_Dense"
    (saved_dense / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EmbtuneError, match="outside the model folder"):
        EmbeddingModel.load(saved_dense)


@pytest.mark.parametrize("module_type", [
    "sentence_transformers.models.Dense.__init__.os",  # an allowed name, then more
    "evil.sentence_transformers.models.Dense",
    "torch.nn.Linear",
    "sentence_transformers.models.CNN",
    "builtins.eval",
])
def test_nested_dense_entry_with_a_type_outside_the_allow_list_is_refused(saved_dense, module_type):
    modules = json.loads((saved_dense / "modules.json").read_text())
    modules[2]["type"] = module_type
    (saved_dense / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EmbtuneError, match="not supported"):
        EmbeddingModel.load(saved_dense)


@pytest.mark.parametrize("modules", [
    [{"idx": 0, "path": "", "type": None}],
    [{"idx": 0, "path": "", "type": 7}],
    [{"idx": 0, "path": "", "type": ["sentence_transformers.models.Transformer"]}],
    [{"idx": 0, "path": ""}],
    [{"idx": "first", "path": "", "type": "sentence_transformers.models.Transformer"}],
    [{"idx": {"a": 1}, "path": "", "type": "sentence_transformers.models.Transformer"}],
    [{"idx": 0, "path": {"x": 1}, "type": "sentence_transformers.models.Transformer"}],
    [{"idx": 0, "path": "", "type": "sentence_transformers.models.Transformer"},
     {"idx": 1, "path": "1_Pooling", "type": "sentence_transformers.models.Transformer"}],
    [{"idx": 0, "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}],
    {"0": "sentence_transformers.models.Transformer"},
    [],
    "modules",
    None,
])
def test_malformed_modules_json_is_a_clear_error(saved, modules):
    (saved / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EmbtuneError, match="modules.json") as info:
        EmbeddingModel.load(saved)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("folder", "config"), [
    ("2_Dense", {"in_features": "thirty-two", "out_features": 8}),
    ("2_Dense", {"in_features": 32, "out_features": -8}),
    ("2_Dense", {"in_features": 32, "out_features": 8, "activation_function": "builtins.eval"}),
    ("2_Dense", {"in_features": 32, "out_features": 8, "activation_function": None}),
    ("2_Dense", ["in_features", 32]),
    ("2_Dense", {"in_features": 16, "out_features": 8}),  # does not match the weights
    ("1_Pooling", {"word_embedding_dimension": 32, "pooling_mode": "evil"}),
    ("1_Pooling", ["pooling_mode_mean_tokens"]),
    ("1_Pooling", {"word_embedding_dimension": "x", "pooling_mode_mean_tokens": True}),
])
def test_malformed_module_config_is_a_clear_error(saved_dense, folder, config):
    (saved_dense / folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(EmbtuneError) as info:
        EmbeddingModel.load(saved_dense)
    assert "\n" not in str(info.value)


def test_remote_code_in_tokenizer_config_never_runs(saved, tmp_path):
    marker = tmp_path / "pwned"
    (saved / "evil_tokenizer.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((saved / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": ["evil_tokenizer.EvilTokenizer", None]}
    (saved / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(EmbtuneError):
        EmbeddingModel.load(saved)
    assert not marker.exists()


def test_remote_code_in_config_never_runs(saved, tmp_path):
    marker = tmp_path / "pwned"
    (saved / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((saved / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "modeling_evil.EvilConfig", "AutoModel": "modeling_evil.EvilModel"}
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(EmbtuneError, match="trust_remote_code=True"):
        EmbeddingModel.load(saved)
    assert not marker.exists()
