"""Long-run memory check (not in CI): >= 20,000 training steps of the tiny BERT with evaluation and checkpoints.

RSS (VmRSS from /proc/self/status) is sampled at every log row; the script prints RSS after warm-up and at
the end, and whether the end is within 10 % of after-warm-up, and writes bench/results/long_run.json.

    .venv/bin/python bench/long_run.py                 # 20,000 steps (about 10 minutes on 2 CPU cores)
    .venv/bin/python bench/long_run.py --steps 2000    # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes

sys.path.insert(0, str(ROOT / "tests"))  # the tiny random BERT builder the tests use

from conftest import make_tiny_bert  # noqa: E402

import embtune.training.loop as loop  # noqa: E402
from embtune.training.recipe import config_from_dict  # noqa: E402

WORDS = "cat dog bird fish car bus train plane house road city river lake sea sun moon star sky tree book".split()
COLOURS = "red blue green black white big small fast slow old new good bad happy sad hot cold".split()


def rss_mb() -> float:
    """Resident set size of this process in MB, from /proc/self/status."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def write_data(folder: Path, n: int, seed: int, name: str) -> Path:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        noun, colour, other = WORDS[i % len(WORDS)], rng.choice(COLOURS), rng.choice(WORDS)
        rows.append({"anchor": f"the {colour} {noun} and the {other}", "positive": f"a {noun} that is {colour}",
                     "score": round(rng.random(), 3)})
    path = folder / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=1_000, help="steps before the after-warm-up RSS sample")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "long_run.json"))
    opts = parser.parse_args()
    torch.set_num_threads(1)  # tiny matrices: more threads only add synchronisation (80x slower on a busy 2-core box)

    samples: list[tuple[int, float]] = []
    real_log = loop.JsonlLogger.log

    def log_with_rss(self, row):  # every log row also records the process's RSS at that step
        samples.append((int(row["step"]), rss_mb()))
        return real_log(self, row)

    loop.JsonlLogger.log = log_with_rss
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["EMBTUNE_CACHE"] = str(tmp / "cache")
        model = make_tiny_bert(tmp / "tiny")
        train = write_data(tmp, 2_000, 0, "train.jsonl")
        dev = write_data(tmp, 200, 1, "dev.jsonl")
        sts = write_data(tmp, 100, 2, "sts.jsonl")
        every = max(opts.steps // 10, 1)
        cfg = config_from_dict({
            "model": {"name": str(model), "pooling": "mean", "normalize": True, "max_seq_length": 16},
            "datasets": [{"name": "pairs", "path": str(train), "eval_path": str(dev),
                          "columns": {"anchor": "anchor", "positive": "positive"}, "loss": {"name": "mnrl"}}],
            "eval": {"evaluators": [{"kind": "sts", "name": "sts", "path": str(sts),
                                     "columns": {"sentences1": "anchor", "sentences2": "positive", "scores": "score"}}]},
            "args": {"output_dir": str(tmp / "run"), "max_steps": opts.steps, "per_device_train_batch_size": 8,
                     "learning_rate": 1e-4, "warmup_ratio": 0.01, "logging_steps": 100, "eval_strategy": "steps",
                     "eval_steps": every, "save_steps": every, "save_total_limit": 2, "bf16": False,
                     "disable_tqdm": True, "seed": 0},
        })
        started = time.perf_counter()
        result = loop.train(cfg)
        seconds = time.perf_counter() - started
        checkpoints = sorted(p.name for p in (tmp / "run" / "checkpoints").iterdir())
    loop.JsonlLogger.log = real_log

    after_warmup = next(rss for step, rss in samples if step >= opts.warmup)
    end = samples[-1][1]
    growth = (end - after_warmup) / after_warmup
    report = {
        "steps": result.metrics["global_step"],
        "seconds": round(seconds, 1),
        "steps_per_s": round(result.metrics["global_step"] / seconds, 1),
        "rss_after_warmup_mb": round(after_warmup, 1),
        "rss_end_mb": round(end, 1),
        "rss_peak_mb": round(max(r for _, r in samples), 1),
        "growth_pct": round(100 * growth, 2),
        "flat": abs(growth) <= 0.10,
        "warmup_step": opts.warmup,
        "eval_and_save_every": every,
        "checkpoints_kept": checkpoints,
        "final_metrics": result.metrics["final"],
        "rss_by_step": [(s, round(r, 1)) for s, r in samples[:: max(len(samples) // 50, 1)]],
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count()},
    }
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{report['steps']} steps in {report['seconds']} s ({report['steps_per_s']} steps/s)")
    print(f"RSS after warm-up (step {opts.warmup}): {report['rss_after_warmup_mb']} MB")
    print(f"RSS at the end: {report['rss_end_mb']} MB (peak {report['rss_peak_mb']} MB, {report['growth_pct']:+} %)")
    print(f"end within 10 % of after-warm-up: {'yes' if report['flat'] else 'NO'}  -> {opts.out}")


if __name__ == "__main__":
    main()
