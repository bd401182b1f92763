"""model.freeze: frozen parameters do not change, are not in the optimizer; config shorthands and errors."""

from __future__ import annotations

import re

import pytest
import torch

from embtune import EmbeddingModel, EmbtuneError
from embtune.training.build import build_model
from embtune.training.config import FreezeCfg
from embtune.training.freeze import apply_freeze, find_layers
from embtune.training.loop import train
from embtune.training.optim import build_optimizer
from embtune.training.recipe import config_from_dict


def test_freeze_list_shorthand_and_mapping(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    raw = config_factory(tiny_bert_dir, pairs_file, tmp_path / "run")
    raw["model"]["freeze"] = ["embeddings"]
    assert config_from_dict(raw).model.freeze == FreezeCfg(embeddings=True, layers=0)
    raw["model"]["freeze"] = {"embeddings": True, "layers": 1}
    assert config_from_dict(raw).model.freeze == FreezeCfg(embeddings=True, layers=1)
    raw["model"]["freeze"] = {"layer": 1}
    with pytest.raises(EmbtuneError, match="model.freeze.layer.*did you mean 'model.freeze.layers'"):
        config_from_dict(raw)
    raw["model"]["freeze"] = {"layers": -1}
    with pytest.raises(EmbtuneError, match="model.freeze.layers must be >= 0"):
        config_from_dict(raw)


def test_too_many_frozen_layers_is_an_error(tiny_bert_dir):
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    with pytest.raises(EmbtuneError, match="model.freeze.layers: 3 but the model has 2 layers"):
        apply_freeze(model.transformer, FreezeCfg(layers=3))


def test_frozen_parameters_are_not_in_the_optimizer(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    cfg = config_from_dict(config_factory(tiny_bert_dir, pairs_file, tmp_path / "run"))
    cfg.model.freeze = FreezeCfg(embeddings=True, layers=1)
    model = build_model(cfg.model)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert any(".embeddings." in n for n in frozen) and any(re.search(r"\.layers?\.0\.", n) for n in frozen)
    assert not any(re.search(r"\.layers?\.1\.", n) for n in frozen)
    in_optimizer = {id(p) for g in build_optimizer(model, cfg.args).param_groups for p in g["params"]}
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[i] for i in in_optimizer} == {n for n in names.values() if n not in frozen}


def test_frozen_parameters_do_not_change_in_training(tiny_bert_dir, pairs_file, tmp_path, config_factory):
    raw = config_factory(tiny_bert_dir, pairs_file, tmp_path / "run", save_strategy="no", weight_decay=0.1)
    raw["model"]["freeze"] = {"embeddings": True, "layers": 1}
    result = train(config_from_dict(raw))
    before = dict(EmbeddingModel.from_transformer(tiny_bert_dir).named_parameters())
    changed = {n: not torch.equal(p, before[n]) for n, p in EmbeddingModel.load(result.model_path).named_parameters()}
    assert not any(v for n, v in changed.items() if ".embeddings." in n or re.search(r"\.layers?\.0\.", n))
    assert any(v for n, v in changed.items() if re.search(r"\.layers?\.1\.", n))


def test_find_layers_on_the_hugging_face_bert(tiny_bert_dir):
    model = EmbeddingModel.from_transformer(tiny_bert_dir, backend="hf")
    prefix, layers = find_layers(model.transformer)
    assert prefix == "auto_model.encoder.layer" and len(layers) == 2
    fast = EmbeddingModel.from_transformer(tiny_bert_dir, backend="fast")
    assert find_layers(fast.transformer)[0] == "auto_model.layers" and len(find_layers(fast.transformer)[1]) == 2
