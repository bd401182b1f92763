"""Helpers for the reliability tests: recipe files, folder snapshots, one-line-error checks."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

SRC = Path(__file__).resolve().parents[2] / "src"


def pair_rows(n: int, score: bool = True) -> str:
    """``n`` CSV rows of (anchor, positive[, score]) in the tiny model's vocabulary, all distinct."""
    return "".join(
        f"the red cat {i},a dog that is red {i}" + (f",0.{i % 10}" if score else "") + "\n" for i in range(n)
    )


GOOD_CSV = "anchor,positive,score\n" + pair_rows(8)


def write_recipe(
    folder: Path,
    model: Path | str,
    data: Path,
    *,
    loss: Any = "mnrl",
    columns: dict[str, Any] | None = None,
    args: dict[str, Any] | None = None,
    text: str | None = None,
) -> Path:
    """A recipe YAML for a 2-step run of the tiny model on ``data``, written to ``folder/recipe.yaml``."""
    recipe = folder / "recipe.yaml"
    if text is not None:
        recipe.write_text(text, encoding="utf-8")
        return recipe
    cfg = {
        "model": {"name": str(model), "max_seq_length": 16},
        "datasets": [{
            "path": str(data),
            "columns": columns or {"anchor": "anchor", "positive": "positive"},
            "loss": loss,
        }],
        "args": {
            "output_dir": str(folder / "out"),
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "save_steps": 1,
            "logging_steps": 1,
            "bf16": False,
            "disable_tqdm": True,
            **(args or {}),
        },
    }
    recipe.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return recipe


def snapshot(folder: Path) -> dict[str, str] | None:
    """Relative path -> SHA-256 of every file under ``folder`` (None when it does not exist)."""
    if not folder.exists():
        return None
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    """Exit code 2, exactly one line on stderr starting with ``embtune: error:``, no traceback, fragments."""
    assert code == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), err
    assert lines[0].startswith("embtune: error: "), err
    for fragment in fragments:
        assert fragment in err, f"{fragment!r} not in {err!r}"


def run_embtune(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m embtune ...`` in a fresh process (proves what a user sees: no traceback)."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "embtune", *argv], capture_output=True, text=True, env=env,
                          timeout=timeout)
