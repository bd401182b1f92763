"""Saving never half-writes: a save killed midway, a full disk or a read-only folder leave the previous model
(or output file) intact and loadable, with one clear line for the user."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import SRC, assert_one_line_error, snapshot

from embtune.cli import main
from embtune.errors import EmbtuneError
from embtune.models.embedding_model import EmbeddingModel
from embtune.utils import atomic

pytestmark = pytest.mark.slow  # every test here takes seconds (subprocesses or the real model)

# Saves a model with a large Dense layer (32 x 400k floats = 51 MB) over TARGET. With HOOK=1 it stops for
# good right after the transformer files are written (a deterministic "killed mid-write").
CHILD = """
import os, sys, time
from embtune.models import st_format
from embtune.models.embedding_model import EmbeddingModel

model = EmbeddingModel.from_transformer(sys.argv[1], dense_dim=400_000, normalize=True)
if os.environ.get("HOOK") == "1":
    real = st_format.save_modules
    def stuck(folder, transformer, steps, config):
        transformer.save(folder)
        print("half", flush=True)
        time.sleep(600)
    st_format.save_modules = stuck
print("ready", flush=True)
model.save(sys.argv[2])
print("saved", flush=True)
"""


@pytest.fixture()
def previous(model_dir, tmp_path) -> tuple[Path, dict, np.ndarray]:
    """A copy of the tiny model at tmp_path/model, its file snapshot and its embedding of one text."""
    folder = EmbeddingModel.load(model_dir).save(tmp_path / "model")
    return folder, snapshot(folder), EmbeddingModel.load(folder).encode(["the red cat"], precision="fp32")


def _assert_intact(folder: Path, files: dict, emb: np.ndarray) -> None:
    assert snapshot(folder) == files
    np.testing.assert_allclose(EmbeddingModel.load(folder).encode(["the red cat"], precision="fp32"), emb)


@pytest.mark.parametrize("when", ["hook-mid-write", "just-after-start", "during-dense-write"])
def test_save_killed_midway_leaves_the_previous_model(when, tiny_bert_dir, previous, tmp_path):
    folder, files, emb = previous
    env = {**os.environ, "PYTHONPATH": str(SRC), "HOOK": "1" if when == "hook-mid-write" else "0"}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(tiny_bert_dir), str(folder)], env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout.readline().strip() == "ready", child.stderr.read()[-2000:]
    if when == "hook-mid-write":
        assert child.stdout.readline().strip() == "half"
    else:
        deadline = time.monotonic() + 60
        while not any(p.name.startswith(".model.tmp-") for p in tmp_path.iterdir()):
            assert time.monotonic() < deadline and child.poll() is None
            time.sleep(0.001)
        if when == "during-dense-write":
            dense = [p for p in tmp_path.glob(".model.tmp-*/*_Dense/model.safetensors")]
            while not dense and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.001)
                dense = [p for p in tmp_path.glob(".model.tmp-*/*_Dense/model.safetensors")]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    _assert_intact(folder, files, emb)

    # the next save cleans up what the dead writer left and succeeds
    EmbeddingModel.load(folder).save(folder)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def _fail_with(code: int):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))
    return fail


@pytest.mark.parametrize(("target", "code", "message"), [
    ("os.fsync", errno.ENOSPC, "disk is full"),  # where delayed allocation reports a full disk
    ("tempfile.mkdtemp", errno.EACCES, "permission denied"),  # a folder we may not write to
    ("atomic._exchange", errno.EROFS, "permission denied"),  # a read-only filesystem at the final swap
])
def test_save_on_a_full_disk_or_read_only_folder(target, code, message, previous, tmp_path, monkeypatch):
    folder, files, emb = previous
    model = EmbeddingModel.load(folder)
    module, name = target.split(".")
    monkeypatch.setattr({"os": os, "tempfile": tempfile, "atomic": atomic}[module], name, _fail_with(code))
    with pytest.raises(EmbtuneError, match=message) as info:
        model.save(folder)
    monkeypatch.undo()
    assert str(info.value).startswith(str(folder)) and "nothing was replaced" in str(info.value)
    _assert_intact(folder, files, emb)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temporary folder left


def test_failed_save_puts_preserved_entries_back(previous, tmp_path, monkeypatch):
    folder, _, _ = previous
    (folder / "checkpoints").mkdir()
    (folder / "checkpoints" / "marker").write_text("keep me")
    monkeypatch.setattr(atomic, "_exchange", _fail_with(errno.EIO))
    with pytest.raises(EmbtuneError, match="could not write"):
        EmbeddingModel.load(folder).save(folder, preserve=["checkpoints"])
    monkeypatch.undo()
    assert (folder / "checkpoints" / "marker").read_text() == "keep me"


def test_recover_puts_the_previous_version_back_after_a_kill_between_renames(previous, tmp_path):
    folder, files, emb = previous
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process id that has exited
    os.rename(folder, tmp_path / f".model.old-{pid}-abcd1234")  # the fallback path died after its first rename
    (tmp_path / f".model.tmp-{pid}-xyz").mkdir()
    atomic.recover(folder)
    _assert_intact(folder, files, emb)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_encode_on_a_full_disk_keeps_the_previous_output(model_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "emb.npy"
    np.save(out, np.zeros(2))
    before = out.read_bytes()
    (tmp_path / "in.txt").write_text("the cat\na dog\n")
    monkeypatch.setattr(os, "fsync", _fail_with(errno.ENOSPC))
    code = main(["encode", str(model_dir), "--input", str(tmp_path / "in.txt"), "--output", str(out), "--overwrite"])
    monkeypatch.undo()
    assert_one_line_error(code, capsys.readouterr().err, "emb.npy", "disk is full", "free some space")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.npy", "in.txt"]


def test_save_without_rename_exchange_failing_midway_restores_the_previous_model(previous, tmp_path, monkeypatch):
    """The fallback for filesystems without RENAME_EXCHANGE moves the old folder aside first; a failure of
    the second rename must put it back."""
    folder, files, emb = previous
    real_rename, calls = os.rename, []

    def second_fails(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError(errno.EIO, "I/O error")
        return real_rename(src, dst)

    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    monkeypatch.setattr(os, "rename", second_fails)
    with pytest.raises(EmbtuneError, match="could not write"):
        EmbeddingModel.load(folder).save(folder)
    monkeypatch.undo()
    _assert_intact(folder, files, emb)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
