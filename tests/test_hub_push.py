"""embtune push: only model files, dry-run list, one-line errors offline / without token / network blocked."""

from __future__ import annotations

import socket

import pytest

from embtune.cli import main
from embtune.errors import EmbtuneError
from embtune.hub_push import model_files, push_to_hub


@pytest.fixture
def trained_folder(tiny_bert_dir, tmp_path):
    """A saved model plus everything a training run leaves beside it."""
    from embtune.models.embedding_model import EmbeddingModel

    folder = EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True).save(tmp_path / "run")
    (folder / "README.md").write_text("# card")
    for junk in ("checkpoints/checkpoint-3/model.safetensors", "checkpoints/checkpoint-3/optimizer.pt",
                 ".cache/x.arrow", "runs/events.out.tfevents.1", "mlruns/0/meta.yaml", "__pycache__/a.pyc"):
        (folder / junk).parent.mkdir(parents=True, exist_ok=True)
        (folder / junk).write_text("x")
    (folder / "training_log.jsonl").write_text("{}\n")
    (folder / "train.lock").write_text("1")
    (folder / ".embtune-tmp").write_text("1")
    (folder / "onnx").mkdir()
    (folder / "onnx" / "model.onnx").write_bytes(b"onnx")
    (folder / "link.safetensors").symlink_to(tmp_path)  # a symlink out of the folder is never followed
    return folder


def test_only_model_files_are_uploaded(trained_folder):
    files = model_files(trained_folder)
    assert {"modules.json", "config.json", "model.safetensors", "tokenizer.json", "README.md",
            "1_Pooling/config.json", "onnx/model.onnx"} <= set(files)
    for name in files:
        assert not name.startswith(("checkpoints/", ".cache/", "runs/", "mlruns/", "__pycache__/"))
        assert name not in ("training_log.jsonl", "train.lock", ".embtune-tmp", "link.safetensors")


def test_cli_dry_run_lists_the_files_and_needs_no_token(trained_folder, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    assert main(["push", str(trained_folder), "me/tiny", "--dry-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "model.safetensors" in out and "onnx/model.onnx" in out
    assert not any("checkpoint" in line for line in out)
    assert out[-1].startswith("dry run: would upload") and "me/tiny" in out[-1]


def one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_offline_is_one_line_exit_2(trained_folder, capsys, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert "offline" in one_line_error(capsys, ["push", str(trained_folder), "me/tiny"])


def test_no_token_is_one_line_exit_2(trained_folder, capsys, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    assert "no Hugging Face token" in one_line_error(capsys, ["push", str(trained_folder), "me/tiny"])


def test_network_blocked_is_one_line_exit_2(trained_folder, capsys, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_not_a_real_token")
    calls = []

    def blocked(*args, **kwargs):
        calls.append(args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket, "getaddrinfo", blocked)
    monkeypatch.setattr(socket.socket, "connect", blocked)
    err = one_line_error(capsys, ["push", str(trained_folder), "me/tiny", "--private"])
    assert "could not push" in err and "me/tiny" in err
    assert calls  # huggingface_hub really tried to reach the network (name lookup or connect)


def test_bad_arguments(trained_folder, tmp_path):
    with pytest.raises(EmbtuneError, match="not valid"):
        push_to_hub(trained_folder, "a/b/c", dry_run=True)
    with pytest.raises(EmbtuneError, match="not a model folder"):
        push_to_hub(tmp_path / "run" / "checkpoints", "me/x", dry_run=True)


def test_recipe_push_to_hub_needs_hub_model_id(tiny_bert_dir, tmp_path):
    from embtune.training.recipe import config_from_dict

    raw = {"model": {"name": str(tiny_bert_dir)}, "datasets": [], "args": {"push_to_hub": True}}
    with pytest.raises(EmbtuneError, match="hub_model_id"):
        config_from_dict(raw)
