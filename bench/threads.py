"""Encode under contention: one embtune process alone vs two at once, by OpenMP wait policy and thread count.

    .venv/bin/python bench/threads.py [--texts 4000]

Each child process loads bundled all-MiniLM-L6-v2, encodes 256 STS-B train sentences to warm up, then times
one encode of ``--texts`` texts (load and warm-up excluded). "pair" starts two identical children at the
same moment; their mean texts/s is reported. Rows: policy, batch size (8 = the HF eval default, 128 =
embtune's), torch threads at the start. Policies:

- ``embtune``: what ``embtune encode`` does (``utils/threads.configure_thread_env()`` before torch loads: a
  short spin, ``GOMP_SPINCOUNT=10000``; ``adapt_threads()`` between batches lowers the thread count while
  another process keeps the CPUs busy);
- ``spin``: libgomp's default waiting, fixed thread count (what a plain ``python`` process gets);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (embtune's CLI default before), fixed thread count.

Training rows (``--train-steps``): each child runs ``embtune train``'s loop (MNRL on STS-B train pairs, batch
32, bf16 where fast) and reports pairs/s after its first 3 steps. Writes bench/results/threads.json. Run
under ``flock -x /tmp/cpu.lock``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes

STSB = HERE.parent.parent / "shared" / "data" / "stsb" / "train.csv"
ROWS = [  # (policy, batch, threads)
    ("embtune", 128, 2), ("spin", 128, 2), ("passive", 128, 2),
    ("embtune", 8, 2), ("spin", 8, 2), ("passive", 8, 2), ("passive", 128, 1),
]
TRAIN_ROWS = [("embtune", 32, 2), ("spin", 32, 2), ("passive", 32, 2)]  # MNRL training, batch 32


def child(policy: str, batch: int, threads: int, n: int) -> None:
    if policy == "embtune":
        from embtune.utils.threads import configure_thread_env

        configure_thread_env()
    else:
        os.environ["EMBTUNE_ADAPTIVE_THREADS"] = "0"
        if policy == "passive":
            os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    import torch

    from embtune import EmbeddingModel

    torch.set_num_threads(threads)
    with open(STSB, encoding="utf-8") as fh:
        texts = [t for row in csv.DictReader(fh) for t in (row["sentence1"], row["sentence2"])]
    if n < 0:  # training: -n optimizer steps of MNRL on STS-B pairs, batch `batch`
        return train_child(texts, batch, -n)
    texts = texts[:n]
    model = EmbeddingModel.load("bundled:all-MiniLM-L6-v2")
    model.encode(texts[:256], batch_size=batch)
    start = time.perf_counter()
    model.encode(texts, batch_size=batch, show_progress_bar=False)
    print(json.dumps({"texts_per_s": round(n / (time.perf_counter() - start), 1)}))


def train_child(texts: list[str], batch: int, steps: int) -> None:
    """``embtune train``'s loop (training/loop.train) on bundled MiniLM, bf16 where fast; reports pairs/s over
    the steps after the first 3."""
    import tempfile

    from train import _stamp_optimizer_steps, _write_jsonl

    from embtune.models.bundled import bundled_model_path
    from embtune.training.loop import train
    from embtune.training.recipe import config_from_dict

    stamps = _stamp_optimizer_steps()
    with tempfile.TemporaryDirectory() as tmp:
        pairs = [{"anchor": a, "positive": b} for a, b in zip(texts[0::2], texts[1::2], strict=False)]
        data = _write_jsonl(Path(tmp) / "pairs.jsonl", pairs)
        train(config_from_dict({
            "model": {"name": str(bundled_model_path()), "max_seq_length": 128},
            "datasets": [{"name": "pairs", "path": data, "loss": "mnrl",
                          "columns": {"anchor": "anchor", "positive": "positive"}}],
            "args": {"output_dir": f"{tmp}/out", "cache_dir": f"{tmp}/cache", "max_steps": steps,
                     "per_device_train_batch_size": batch, "save_strategy": "no", "eval_strategy": "no",
                     "disable_tqdm": True, "learning_rate": 2e-5},
        }))
    print(json.dumps({"texts_per_s": round((len(stamps) - 3) * batch / (stamps[-1] - stamps[2]), 1)}))


def run(policy: str, batch: int, threads: int, n: int, copies: int) -> float:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT", "EMBTUNE_ADAPTIVE_THREADS")}
    cmd = [sys.executable, __file__, "--child", policy, str(batch), str(threads), "--texts", str(n)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    rates = [json.loads(p.communicate(timeout=900)[0].strip().splitlines()[-1])["texts_per_s"] for p in procs]
    return round(sum(rates) / len(rates), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=4000)
    parser.add_argument("--train-steps", type=int, default=40, help="steps of each training run (0: no training rows)")
    parser.add_argument("--child", nargs=3, metavar=("POLICY", "BATCH", "THREADS"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), args.texts)
        return
    results = []
    rows = [("encode", *r) for r in ROWS] + [("train", *r) for r in TRAIN_ROWS if args.train_steps > 0]
    for job, policy, batch, threads in rows:
        n = args.texts if job == "encode" else -args.train_steps
        solo = run(policy, batch, threads, n, 1)
        pair = run(policy, batch, threads, n, 2)
        row = {"job": job, "policy": policy, "batch_size": batch, "threads": threads, "solo_texts_per_s": solo,
               "pair_texts_per_s_each": pair, "pair_total_over_solo": round(2 * pair / solo, 2)}
        results.append(row)
        print(row, flush=True)
    out = HERE / "results" / "threads.json"
    command = f"flock -x /tmp/cpu.lock .venv/bin/python bench/threads.py --texts {args.texts} --train-steps {args.train_steps}"
    out.write_text(json.dumps({"texts": args.texts, "train_steps": args.train_steps, "rows": results,
                               "command": command, "unit": "texts/s (encode), pairs/s (train)"}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
