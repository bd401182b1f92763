"""torchrun-style DDP on CPU (gloo): 2 processes x 4 rows == 1 process x 8 rows, for MNRL and CoSENT."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from embtune import EmbeddingModel
from embtune.training.loop import train
from embtune.training.recipe import config_from_dict

pytestmark = pytest.mark.slow  # every test here takes seconds (subprocesses or the real model)

CHILD = """
import json, sys
from embtune.training.loop import train
from embtune.training.recipe import config_from_dict
train(config_from_dict(json.loads(sys.argv[1])))
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(cfg: dict, world_size: int) -> None:
    """Start ``world_size`` processes with the environment torchrun would give them."""
    port = _free_port()
    src = str(Path(__file__).resolve().parents[2] / "src")
    procs = []
    for rank in range(world_size):
        env = {**os.environ, "PYTHONPATH": src, "RANK": str(rank), "LOCAL_RANK": str(rank),
               "WORLD_SIZE": str(world_size), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
               "OMP_NUM_THREADS": "1"}
        procs.append(subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(cfg)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
    errors = []
    for p in procs:
        _, err = p.communicate(timeout=180)
        if p.returncode:
            errors.append(err.decode()[-3000:])
    assert not errors, errors


@pytest.mark.parametrize("loss", ["mnrl", "cosent"])
def test_two_gloo_processes_match_one_process(tiny_nodropout_dir, pairs_file, tmp_path, config_factory, loss):
    def cfg(out: Path, batch: int) -> dict:
        c = config_factory(tiny_nodropout_dir, pairs_file, out, max_steps=5, per_device_train_batch_size=batch,
                           save_strategy="no", logging_steps=1)
        if loss == "cosent":
            c["datasets"][0]["columns"]["label"] = "score"
        c["datasets"][0]["loss"] = {"name": loss}
        return c

    single = train(config_from_dict(cfg(tmp_path / "single", 8)))
    _launch(cfg(tmp_path / "ddp", 4), world_size=2)
    a = EmbeddingModel.load(single.model_path).state_dict()
    b = EmbeddingModel.load(tmp_path / "ddp").state_dict()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst <= 1e-5, worst
    start = EmbeddingModel.from_transformer(tiny_nodropout_dir, normalize=True).state_dict()
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-3  # it did train
    log = [json.loads(x) for x in (tmp_path / "ddp" / "training_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]
