"""Hub ids (offline here: a clear error; a pre-filled cache loads through the real Hub code) and atomic save."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from embtune.errors import EmbtuneError
from embtune.models import st_format
from embtune.models.embedding_model import EmbeddingModel


def test_unreachable_hub_gives_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EmbtuneError, match="pass its local folder path"):
        EmbeddingModel.load("some-org/some-model-that-is-not-cached", cache_dir=tmp_path)


def test_hub_cache_snapshot_loads_through_hub_code(tiny_bert_dir, tmp_path):
    # The layout huggingface_hub keeps: models--org--name/{refs/main, snapshots/<rev>/file -> ../../blobs/<hash>}
    saved = EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True).save(tmp_path / "src")
    repo = tmp_path / "cache" / "models--org--tiny"
    rev = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(rev)
    for i, f in enumerate(sorted(p for p in saved.rglob("*") if p.is_file())):
        blob = repo / "blobs" / f"blob{i}"
        blob.parent.mkdir(exist_ok=True)
        shutil.copy(f, blob)
        link = repo / "snapshots" / rev / f.relative_to(saved)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    model = EmbeddingModel.load("org/tiny", cache_dir=tmp_path / "cache")
    ref = EmbeddingModel.load(saved)
    np.testing.assert_allclose(model.encode(["a dog"], precision="fp32"), ref.encode(["a dog"], precision="fp32"))


def test_save_replaces_previous_model_atomically(tiny_bert_dir, tmp_path, monkeypatch):
    model = EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True)
    out = model.save(tmp_path / "m")
    before = EmbeddingModel.load(out).encode(["a cat"], precision="fp32")

    def crash(folder, *args, **kwargs):
        (folder / "config.json").write_text("{half")
        raise RuntimeError("simulated crash mid-save")

    monkeypatch.setattr(st_format, "save_modules", crash)
    with pytest.raises(RuntimeError):
        model.save(out)
    monkeypatch.undo()
    np.testing.assert_allclose(EmbeddingModel.load(out).encode(["a cat"], precision="fp32"), before)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind


def test_save_keeps_preserved_entries_and_refuses_foreign_folders(tiny_bert_dir, tmp_path):
    model = EmbeddingModel.from_transformer(tiny_bert_dir)
    out = model.save(tmp_path / "run")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "marker").write_text("x")
    model.save(out, preserve=["checkpoints"])
    assert (out / "checkpoints" / "marker").read_text() == "x"
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "cat.jpg").write_text("jpg")
    with pytest.raises(EmbtuneError, match="not a model folder"):
        model.save(foreign)
    assert (foreign / "cat.jpg").exists()


def test_saved_folder_has_normal_permissions(tiny_bert_dir, tmp_path):
    import os
    import stat

    out = EmbeddingModel.from_transformer(tiny_bert_dir).save(tmp_path / "perm")
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    assert stat.S_IMODE((out / "model.safetensors").stat().st_mode) == 0o666 & ~mask
