"""The CLI sets the OpenMP wait policy before torch loads, and a user's own setting wins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from embtune.utils.threads import THREAD_ENV, configure_thread_env

SRC = Path(__file__).resolve().parents[1] / "src"

# Records the OpenMP variables at the moment torch is first imported, then runs `embtune info`.
PROBE = """
import importlib.abc, json, os, sys
seen = {}
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.update({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME")})
        return None
sys.meta_path.insert(0, Watch())
from embtune.cli import main
code = main(["info", sys.argv[1], "--json"])
print("PROBE" + json.dumps(seen))
sys.exit(code)
"""


def _probe(model_dir: Path, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in THREAD_ENV}
    full |= {"PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", **env}
    out = subprocess.run([sys.executable, "-c", PROBE, str(model_dir)], env=full, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return json.loads(out.split("PROBE", 1)[1])


def test_cli_sets_passive_waiting_before_torch_is_imported(tiny_bert_dir):
    assert _probe(tiny_bert_dir) == {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def test_a_user_setting_wins(tiny_bert_dir):
    assert _probe(tiny_bert_dir, OMP_WAIT_POLICY="ACTIVE")["OMP_WAIT_POLICY"] == "ACTIVE"


def test_configure_thread_env_on_a_given_mapping():
    env = {"KMP_BLOCKTIME": "200"}
    assert configure_thread_env(env) == {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "200"}
