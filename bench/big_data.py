"""Training data bigger than memory (not a test): peak RSS and preparation speed at 1M and 5M pairs.

Data: generated (anchor, positive) pairs of made-up words (~100 characters per text), written as Parquet shards
of 250,000 rows into a temporary folder. Model: the bundled all-MiniLM-L6-v2 (max_seq_length 128).

For each size, in fresh subprocesses (peak RSS = the child's ru_maxrss from os.wait4):
- prepare: ``prepare_dataset`` on the shard folder (parse to memory-mapped Arrow, tokenize in 1,000-row chunks,
  lengths and text hashes to memory-mapped .npy), cold cache; rows/s;
- train: ``embtune.train`` for 100 steps at batch 32 with ``batch_sampler: no_duplicates`` and length grouping
  on the prepared (cached) data, data report included; peak RSS;
- datasets: the same shards through ``datasets.load_dataset("parquet")`` + ``.map(tokenizer, batched=True)``
  (the usual way with the Hugging Face stack), cold cache; rows/s.
Targets: peak RSS < 2.5 GiB and growth < 10 % from the small to the large size.

    flock -x /tmp/cpu.lock python bench/big_data.py                     # 1M and 5M, bench/results/big_data.json
    flock -x /tmp/cpu.lock python bench/big_data.py --sizes 200000 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes

SHARD_ROWS = 250_000


def generate(folder: Path, rows: int, seed: int = 0) -> None:
    """Pairs of random made-up words; one shard of SHARD_ROWS rows at a time in memory."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    syllables = np.array(["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "da", "fo", "gu", "hi", "jo"])
    vocab = np.array(["".join(rng.choice(syllables, size=rng.integers(1, 4))) for _ in range(20000)])
    folder.mkdir(parents=True)
    for start in range(0, rows, SHARD_ROWS):
        n = min(SHARD_ROWS, rows - start)
        words = vocab[rng.integers(0, len(vocab), size=(n, 2, 16))]
        anchor = [" ".join(w) for w in words[:, 0]]
        positive = [" ".join(w) for w in words[:, 1]]
        pq.write_table(pa.table({"anchor": anchor, "positive": positive}), folder / f"part-{start // SHARD_ROWS:04d}.parquet")


def worker(spec: dict) -> None:
    start = time.perf_counter()
    if spec["kind"] == "prepare":
        from embtune.data.columns import ColumnRoles
        from embtune.data.prepare import DatasetSpec, prepare_dataset
        from embtune.models.embedding_model import EmbeddingModel

        tok = EmbeddingModel.load("bundled:all-MiniLM-L6-v2").tokenizer
        t0 = time.perf_counter()
        prepared = prepare_dataset(DatasetSpec(spec["data"], ColumnRoles("anchor", "positive"), name="big"), tok, 128,
                                   cache_dir=spec["cache"])
        out = {"rows": prepared.num_rows, "seconds": time.perf_counter() - t0}
    elif spec["kind"] == "train":
        from embtune.training.loop import train
        from embtune.training.recipe import config_from_dict

        train(config_from_dict({
            "model": {"name": "bundled:all-MiniLM-L6-v2", "max_seq_length": 128},
            "datasets": [{"name": "big", "path": spec["data"], "columns": {"anchor": "anchor", "positive": "positive"}}],
            "args": {"output_dir": spec["out"], "cache_dir": spec["cache"], "max_steps": spec["steps"],
                     "per_device_train_batch_size": 32, "batch_sampler": "no_duplicates", "save_strategy": "no",
                     "logging_steps": 50, "disable_tqdm": True},
        }))
        out = {"seconds": time.perf_counter() - start}
    else:
        import datasets

        from embtune.models.embedding_model import EmbeddingModel

        tok = EmbeddingModel.load("bundled:all-MiniLM-L6-v2").tokenizer
        t0 = time.perf_counter()
        files = sorted(str(p) for p in Path(spec["data"]).glob("*.parquet"))
        ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=spec["cache"])
        ds = ds.map(lambda b: {"a_ids": tok(b["anchor"], truncation=True, max_length=128)["input_ids"],
                               "p_ids": tok(b["positive"], truncation=True, max_length=128)["input_ids"]},
                    batched=True, batch_size=1000, remove_columns=["anchor", "positive"])
        out = {"rows": ds.num_rows, "seconds": time.perf_counter() - t0}
    Path(spec["result"]).write_text(json.dumps(out))


def run_child(spec: dict, tmp: Path) -> dict:
    name = f"{spec['kind']}-{spec['rows']}"
    spec = {**spec, "result": str(tmp / f"{name}.json"), "out": str(tmp / f"out-{name}")}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    log = open(tmp / f"{name}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], stdout=log, stderr=log, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    log.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed:\n{(tmp / f'{name}.log').read_text()[-3000:]}")
    result = json.loads(Path(spec["result"]).read_text())
    result["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    if "rows" in result:
        result["rows_per_s"] = round(result["rows"] / result["seconds"], 1)
    result["seconds"] = round(result["seconds"], 2)
    print(f"  {name:<18} {json.dumps(result)}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--steps", type=int, default=100, help="training steps after preparing")
    parser.add_argument("--skip-datasets", action="store_true", help="do not run the datasets-only comparison")
    parser.add_argument("--worker")
    opts = parser.parse_args()
    if opts.worker:
        return worker(json.loads(opts.worker))
    results: dict = {"sizes": opts.sizes, "load_average_before": os.getloadavg(), "runs": {}}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BIG_DATA_TMP")) as tmp_name:
        tmp = Path(tmp_name)
        for rows in opts.sizes:
            data = tmp / f"data-{rows}"
            t0 = time.perf_counter()
            generate(data, rows)
            size = sum(p.stat().st_size for p in data.glob("*.parquet"))
            print(f"{rows:,} pairs: {size / 2**20:.0f} MiB of Parquet, generated in {time.perf_counter() - t0:.0f} s")
            cache = str(tmp / f"cache-{rows}")
            run = {"parquet_mib": round(size / 2**20, 1)}
            run["prepare"] = run_child({"kind": "prepare", "rows": rows, "data": str(data), "cache": cache}, tmp)
            run["train_100_steps"] = run_child({"kind": "train", "rows": rows, "data": str(data), "cache": cache,
                                                "steps": opts.steps}, tmp)
            if not opts.skip_datasets:
                run["datasets_only"] = run_child({"kind": "datasets", "rows": rows, "data": str(data),
                                                  "cache": str(tmp / f"hf-{rows}")}, tmp)
                run["prep_speed_vs_datasets"] = round(run["prepare"]["rows_per_s"] / run["datasets_only"]["rows_per_s"], 3)
            results["runs"][str(rows)] = run
            import shutil

            shutil.rmtree(data, ignore_errors=True)
            shutil.rmtree(cache, ignore_errors=True)
            shutil.rmtree(tmp / f"hf-{rows}", ignore_errors=True)
    small, large = (results["runs"][str(s)] for s in (opts.sizes[0], opts.sizes[-1]))
    for part in ("prepare", "train_100_steps"):
        growth = large[part]["peak_rss_mib"] / small[part]["peak_rss_mib"] - 1
        results[f"{part}_rss_growth"] = round(growth, 4)
        print(f"{part}: peak RSS {small[part]['peak_rss_mib']:.0f} -> {large[part]['peak_rss_mib']:.0f} MiB "
              f"({growth:+.1%}; targets < 2560 MiB, < +10 %)")
    results["load_average_after"] = os.getloadavg()
    path = HERE / "results" / "big_data.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
