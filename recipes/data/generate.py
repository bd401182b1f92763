"""Write the recipes' data files: ``python recipes/data/generate.py [FOLDER]`` (default: this folder).

Our own made-up texts, deterministic: ``catalogue.py`` (the demo's product catalogue, ``pairs_*``/``sts_*``)
and ``seed_shapes.py`` (the shapes of the five seed runs). The recipes name the files relative to
themselves (``path: data/pairs_train.jsonl``); ``make demo`` runs this script first. Each file is written
atomically, so a concurrent reader never sees half of one.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # catalogue.py and seed_shapes.py sit next to this file

from catalogue import catalogue_files  # noqa: E402
from seed_shapes import seed_files  # noqa: E402

from embtune.utils.atomic import atomic_write_text  # noqa: E402


def all_files(seed: int = 0) -> dict[str, list[dict]]:
    """Every data file of the shipped recipes: file name -> rows."""
    return {**catalogue_files(seed=seed), **seed_files(seed=seed)}


HERE = Path(__file__).resolve().parent


def write_all(folder: str | os.PathLike[str] = HERE, seed: int = 0) -> dict[str, Path]:
    """Write every file into ``folder`` as JSON lines; return file name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, rows in all_files(seed).items():
        out[name] = folder / name
        atomic_write_text(out[name], "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return out


if __name__ == "__main__":
    for name, path in write_all(*sys.argv[1:2]).items():
        print(f"{name}: {sum(1 for _ in open(path, encoding='utf-8'))} rows -> {path}")
