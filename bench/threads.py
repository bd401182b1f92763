"""Encode under contention: one embtune process alone vs two at once, OpenMP spinning vs passive waiting.

    .venv/bin/python bench/threads.py [--texts 1500]

Each child process does what ``embtune encode`` does (utils/threads.configure_thread_env() before torch
loads, unless the row says "spin"), loads bundled all-MiniLM-L6-v2, encodes STS-B train sentences once to
warm up, then times one encode of ``--texts`` texts (load and warm-up excluded). "pair" starts two identical
children at the same moment; their mean texts/s is reported. Rows: wait policy (spin = libgomp's default,
passive = embtune's CLI), batch size (8 = the HF eval default, 128 = embtune's), torch threads.
Writes bench/results/threads.json. Run under ``flock -x /tmp/cpu.lock``.
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
    ("spin", 128, 2), ("passive", 128, 2), ("spin", 8, 2), ("passive", 8, 2), ("passive", 128, 1),
]


def child(policy: str, batch: int, threads: int, n: int) -> None:
    if policy == "passive":
        from embtune.utils.threads import configure_thread_env

        configure_thread_env()
    import torch

    from embtune import EmbeddingModel

    torch.set_num_threads(threads)
    with open(STSB, encoding="utf-8") as fh:
        texts = [t for row in csv.DictReader(fh) for t in (row["sentence1"], row["sentence2"])][:n]
    model = EmbeddingModel.load("bundled:all-MiniLM-L6-v2")
    model.encode(texts[:256], batch_size=batch)
    start = time.perf_counter()
    model.encode(texts, batch_size=batch, show_progress_bar=False)
    print(json.dumps({"texts_per_s": round(n / (time.perf_counter() - start), 1)}))


def run(policy: str, batch: int, threads: int, n: int, copies: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "GOMP_SPINCOUNT")}
    cmd = [sys.executable, __file__, "--child", policy, str(batch), str(threads), "--texts", str(n)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    rates = [json.loads(p.communicate(timeout=900)[0].strip().splitlines()[-1])["texts_per_s"] for p in procs]
    return round(sum(rates) / len(rates), 1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=1500)
    parser.add_argument("--child", nargs=3, metavar=("POLICY", "BATCH", "THREADS"))
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]), int(args.child[2]), args.texts)
        return
    results = []
    for policy, batch, threads in ROWS:
        solo = run(policy, batch, threads, args.texts, 1)
        pair = run(policy, batch, threads, args.texts, 2)
        row = {"policy": policy, "batch_size": batch, "threads": threads, "solo_texts_per_s": solo,
               "pair_texts_per_s_each": pair, "pair_total_over_solo": round(2 * pair / solo, 2)}
        results.append(row)
        print(row, flush=True)
    out = HERE / "results" / "threads.json"
    out.write_text(json.dumps({"texts": args.texts, "rows": results}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
