"""The CLI sets a short OpenMP spin before torch loads (a user's own setting wins), and the thread governor
gives CPUs back while other processes keep them busy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from embtune.utils import threads
from embtune.utils.threads import THREAD_ENV, ThreadGovernor, configure_thread_env

SRC = Path(__file__).resolve().parents[1] / "src"

# Records the OpenMP variables at the moment torch is first imported, then runs `embtune info`.
PROBE = """
import importlib.abc, json, os, sys
seen = {}
class Watch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.update({k: os.environ.get(k) for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")})
        return None
sys.meta_path.insert(0, Watch())
from embtune.cli import main
code = main(["info", sys.argv[1], "--json"])
print("PROBE" + json.dumps(seen))
sys.exit(code)
"""


def _probe(model_dir: Path, **env: str) -> dict:
    full = {k: v for k, v in os.environ.items() if k not in (*THREAD_ENV, "OMP_WAIT_POLICY")}
    full |= {"PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", **env}
    out = subprocess.run([sys.executable, "-c", PROBE, str(model_dir)], env=full, capture_output=True, text=True,
                         timeout=120, check=True).stdout
    return json.loads(out.split("PROBE", 1)[1])


def test_cli_sets_a_short_spin_before_torch_is_imported(tiny_bert_dir):
    assert _probe(tiny_bert_dir) == {"OMP_WAIT_POLICY": None, "GOMP_SPINCOUNT": "10000"}


def test_a_user_setting_wins(tiny_bert_dir):
    assert _probe(tiny_bert_dir, OMP_WAIT_POLICY="PASSIVE") == {"OMP_WAIT_POLICY": "PASSIVE", "GOMP_SPINCOUNT": None}
    assert _probe(tiny_bert_dir, GOMP_SPINCOUNT="500")["GOMP_SPINCOUNT"] == "500"


def test_configure_thread_env_on_a_given_mapping():
    assert configure_thread_env({}) == {"GOMP_SPINCOUNT": "10000"}
    assert configure_thread_env({"OMP_WAIT_POLICY": "ACTIVE"}) == {"OMP_WAIT_POLICY": "ACTIVE"}


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _governor(tmp_path, monkeypatch, cpus=(0, 1)):
    """A governor on a fake /proc/stat with CPUs ``cpus``, a fake wall clock and a fake own-CPU clock."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(cpus))
    stat = tmp_path / "stat"
    wall, own = _Clock(), _Clock()
    gov = ThreadGovernor(interval=0.5, stat_path=str(stat), clock=wall, cpu_clock=own)
    ticks = {c: 0 for c in range(4)}

    def advance(seconds: float, own_cores: float, other_cores: float) -> None:
        """``seconds`` pass; this process keeps ``own_cores`` busy, others ``other_cores`` (spread evenly)."""
        wall.now += seconds
        own.now += own_cores * seconds
        for c in cpus:
            ticks[c] += round((own_cores + other_cores) / len(cpus) * seconds * 100)
        lines = ["cpu  0 0 0 0 0 0 0 0 0 0"]
        lines += [f"cpu{c} {ticks[c]} 0 0 1000 0 0 0 0 0 0" for c in range(4)]
        stat.write_text("\n".join(lines + ["intr 0"]) + "\n")

    advance(0.0, 0.0, 0.0)
    gov.tick_s = 0.01  # the fake file counts in 1/100 s
    return gov, advance


@pytest.fixture
def threads_restored():
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_governor_gives_a_cpu_back_under_contention_and_takes_it_again(tmp_path, monkeypatch, threads_restored):
    threads_restored(2)
    gov, advance = _governor(tmp_path, monkeypatch)
    assert gov.tick() is None  # first sample
    advance(0.6, 2.0, 0.0)
    assert gov.tick() is None and torch.get_num_threads() == 2  # alone: keep both threads
    advance(0.2, 1.0, 1.0)
    assert gov.tick() is None  # within the interval: not even measured
    advance(0.4, 1.0, 1.0)
    assert gov.tick() == 1 and torch.get_num_threads() == 1  # another process took a core
    advance(0.6, 1.0, 1.0)
    assert gov.tick() is None and torch.get_num_threads() == 1
    advance(0.6, 1.0, 0.1)
    assert gov.tick() == 2 and torch.get_num_threads() == 2  # it left


def test_governor_respects_the_users_thread_count(tmp_path, monkeypatch, threads_restored):
    threads_restored(1)
    gov, advance = _governor(tmp_path, monkeypatch)
    gov.tick()
    advance(0.6, 1.0, 0.0)
    assert gov.tick() is None and torch.get_num_threads() == 1  # never above what the user set


def test_governor_off_linux_or_switched_off(tmp_path, monkeypatch):
    gov = ThreadGovernor(stat_path=str(tmp_path / "missing"))
    assert gov.tick() is None and gov.others() is None
    monkeypatch.setenv("EMBTUNE_ADAPTIVE_THREADS", "0")
    monkeypatch.setattr(threads, "_GOVERNOR", None)
    assert threads.adapt_threads() is None and threads._GOVERNOR is None


def test_encode_asks_the_thread_governor_before_every_batch(tiny_bert_dir, monkeypatch):
    import embtune.models.encode as encode
    from embtune import EmbeddingModel

    calls = []
    monkeypatch.setattr(encode, "adapt_threads", lambda: calls.append(1))
    EmbeddingModel.load(tiny_bert_dir).encode([f"text {i}" for i in range(10)], batch_size=4)
    assert len(calls) == 3
