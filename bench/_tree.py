"""Imported first by every bench: run the working tree's embtune (``src/``), in this process and its children.

An editable install of another checkout (or an old wheel) would otherwise be measured without a word: it
happened once (a shared venv pointed at an old clone). Children inherit it through ``PYTHONPATH``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
if sys.path[:1] != [SRC]:
    sys.path.insert(0, SRC)
if os.environ.get("PYTHONPATH", "").split(os.pathsep)[:1] != [SRC]:
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
