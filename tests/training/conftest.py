"""Fixtures for training tests: an easy pairs dataset in the tiny BERT's vocabulary and a config factory."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

WORDS = "cat dog bird fish car bus train plane house road city river lake sea sun moon star sky tree book".split()
COLOURS = "red blue green black white big small fast slow old new good bad happy sad hot cold".split()


def write_pairs(path: Path, n: int = 48, seed: int = 0) -> Path:
    """(anchor, positive, score) rows: a noun phrase and a reordered paraphrase of it (easy to learn)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        noun, colour, other = WORDS[i % len(WORDS)], rng.choice(COLOURS), rng.choice(WORDS)
        rows.append({
            "anchor": f"the {colour} {noun} and the {other}",
            "positive": f"a {noun} that is {colour} with a {other}",
            "score": round(rng.random(), 3),
        })
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("data") / "pairs.jsonl")


@pytest.fixture(scope="session")
def tiny_nodropout_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with dropout off (for bit-exact comparisons across process layouts)."""
    import shutil

    folder = tmp_path_factory.mktemp("tiny_nodrop") / "model"
    shutil.copytree(tiny_bert_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config["hidden_dropout_prob"] = config["attention_probs_dropout_prob"] = 0.0
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def make_config(model_dir: Path, data: Path, output_dir: Path, **args: Any) -> dict[str, Any]:
    """A plain-dict recipe for the tiny model (feed it to ``config_from_dict``)."""
    base_args = {
        "output_dir": str(output_dir),
        "max_steps": 6,
        "per_device_train_batch_size": 4,
        "learning_rate": 1e-3,
        "logging_steps": 2,
        "save_steps": 3,
        "bf16": False,
        "disable_tqdm": True,
        "seed": 7,
    }
    return {
        "model": {"name": str(model_dir), "pooling": "mean", "normalize": True, "max_seq_length": 16},
        "datasets": [{
            "name": "pairs",
            "path": str(data),
            "columns": {"anchor": "anchor", "positive": "positive"},
            "loss": {"name": "mnrl"},
        }],
        "args": {**base_args, **args},
    }


@pytest.fixture
def config_factory():
    return make_config
