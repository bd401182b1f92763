"""Damaged checkpoints and a full disk while checkpointing: one line naming the file or folder and the fix.

Corrupt files (truncated, empty, a planted pickle, the wrong contents) are refused with the earlier
checkpoint to resume from, and a pickle is never executed (``weights_only=True``). A disk that fills up
during a checkpoint, on a real small tmpfs when we may mount one and through an injected write error
otherwise, leaves the previous checkpoint intact and resumable.
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from reliability_helpers import assert_one_line_error, pair_rows, write_recipe

from embtune.cli import main
from embtune.training.checkpoint import list_checkpoints

ARGS = {"max_steps": 4, "save_steps": 2, "logging_steps": 1, "learning_rate": 1e-3}


@pytest.fixture(scope="module")
def finished(model_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A finished 4-step run with checkpoints 2 and 4: (its folder, its recipe)."""
    root = tmp_path_factory.mktemp("damaged")
    data = root / "pairs.csv"
    data.write_text("anchor,positive\n" + pair_rows(16, score=False))
    recipe = write_recipe(root, model_dir, data, args=ARGS)
    assert main(["train", str(recipe)]) == 0
    return root, recipe


class _Payload:
    """Unpickling this would create a file: proof that no full unpickler ever reads a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _damage(kind: str, ckpt: Path, marker: Path) -> str:
    """Damage ``ckpt`` one way; return the file the error must name."""
    if kind == "truncated optimizer.pt":
        data = (ckpt / "optimizer.pt").read_bytes()
        (ckpt / "optimizer.pt").write_bytes(data[: len(data) // 2])
        return "optimizer.pt"
    if kind == "empty trainer_state.json":
        (ckpt / "trainer_state.json").write_text("")
        return "trainer_state.json"
    if kind == "trainer_state.json with a list":
        (ckpt / "trainer_state.json").write_text("[1, 2]")
        return "trainer_state.json"
    if kind == "pickle in rng_state.pt":
        with open(ckpt / "rng_state.pt", "wb") as fh:
            pickle.dump([_Payload(marker)], fh)
        return "rng_state.pt"
    if kind == "torch pickle in rng_state.pt":
        torch.save([_Payload(marker)], ckpt / "rng_state.pt")
        return "rng_state.pt"
    if kind == "scheduler.pt holds a tensor":
        torch.save(torch.zeros(3), ckpt / "scheduler.pt")
        return "scheduler.pt"
    if kind == "optimizer of another model":
        state = torch.load(ckpt / "optimizer.pt", weights_only=True)
        state["param_groups"][0]["params"] = state["param_groups"][0]["params"][:3]
        torch.save(state, ckpt / "optimizer.pt")
        return "optimizer.pt"
    if kind == "truncated model.safetensors":
        weights = next(ckpt.rglob("model.safetensors"))
        weights.write_bytes(weights.read_bytes()[:100])
        return str(ckpt)
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", [
    "truncated optimizer.pt", "empty trainer_state.json", "trainer_state.json with a list", "pickle in rng_state.pt",
    "torch pickle in rng_state.pt", "scheduler.pt holds a tensor", "optimizer of another model",
    "truncated model.safetensors",
])
def test_damaged_checkpoint_is_one_line_naming_the_file_and_an_earlier_checkpoint(
    kind, finished, tmp_path, capsys
):
    root, recipe = finished
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    marker = tmp_path / "pwned"
    named = _damage(kind, out / "checkpoints" / "checkpoint-4", marker)
    code = main(["train", str(recipe), f"args.output_dir={out}", "args.resume_from_checkpoint=last"])
    earlier = out / "checkpoints" / "checkpoint-2"
    assert_one_line_error(code, capsys.readouterr().err, named, "checkpoint is damaged",
                          f"resume from an earlier checkpoint (resume_from_checkpoint: {earlier})")
    assert not marker.exists()  # the planted pickle never ran

    # the fix the message gives works
    assert main(["train", str(recipe), f"args.output_dir={out}", f"args.resume_from_checkpoint={earlier}"]) == 0


def test_damaged_only_checkpoint_says_to_start_again(finished, tmp_path, capsys):
    root, recipe = finished
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")
    (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").write_text("{")
    code = main(["train", str(recipe), f"args.output_dir={out}", "args.resume_from_checkpoint=last"])
    assert_one_line_error(code, capsys.readouterr().err, "trainer_state.json", "no earlier checkpoint",
                          "overwrite_output_dir: true")


# --- a full disk while checkpointing -------------------------------------------------------------------


def _check_disk_full(code: int, err: str, out: Path) -> None:
    assert_one_line_error(code, err, str(out / "checkpoints" / "checkpoint-4"), "disk is full",
                          "free some space", "resume_from_checkpoint: last", "checkpoint-2 is intact")
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2"]
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]  # no temporaries


def test_disk_full_inside_torch_save_is_one_line(finished, tmp_path, capsys, monkeypatch):
    """torch's zip writer reports a full disk as ``RuntimeError: [enforce fail at inline_container.cc]``
    with the OSError only as its context; inject exactly that at checkpoint 4's optimizer.pt."""
    root, recipe = finished
    real = torch.save

    def full(obj, f, *args, **kwargs):
        if "checkpoint-4" in str(getattr(f, "name", f)) and str(getattr(f, "name", f)).endswith("optimizer.pt"):
            try:
                raise OSError(errno.ENOSPC, "No space left on device")
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534") from None
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full)
    out = tmp_path / "out"
    code = main(["train", str(recipe), f"args.output_dir={out}"])
    _check_disk_full(code, capsys.readouterr().err, out)


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True)
    return done.returncode == 0


def test_disk_full_on_a_real_small_filesystem(finished, tmp_path, capsys):
    root, recipe = finished
    mount = tmp_path / "small"
    one = sum(p.stat().st_size for p in (root / "out" / "checkpoints" / "checkpoint-2").rglob("*") if p.is_file())
    # room for one checkpoint and the log, not for two (nor for the final model next to them)
    if not _mount_tmpfs(mount, f"{int(one * 1.5) // 1024}k"):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected-error test covers the message")
    try:
        out = mount / "out"
        code = main(["train", str(recipe), f"args.output_dir={out}"])
        _check_disk_full(code, capsys.readouterr().err, out)
    finally:
        subprocess.run(["umount", str(mount)], check=False)
