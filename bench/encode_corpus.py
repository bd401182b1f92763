"""Corpus encoding (not a test): the shard writer's overhead vs plain ``encode``, and 1 vs 2 processes.

Data: every sentence of STS-B train/dev/test (``../shared/data/stsb``, ~17k texts), repeated to ``--rows``,
written as 8 Parquet shards of (id, text). Model: the bundled all-MiniLM-L6-v2, fp32 (``--precision``).

- plain: ``model.encode(all texts)`` in one process (model already loaded; nothing read or written);
- writer: ``encode_corpus(model, shards, out)`` in the same process (reads the shards through data.sources,
  writes the Parquet parts and the manifest); overhead = writer time / plain time - 1 (target < 5 %);
- 1 vs 2 processes: ``embtune encode --text-column`` as one process with 2 torch threads, and as two processes
  (``--shard 0/2`` and ``1/2``) with 1 thread each, started together; wall time including model load.

    flock -x /tmp/cpu.lock python bench/encode_corpus.py            # writes bench/results/encode_corpus.json
    flock -x /tmp/cpu.lock python bench/encode_corpus.py --rows 64000  # ... encode_corpus_64000.json
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes

STSB = HERE.parent.parent / "shared" / "data" / "stsb"


def _texts(rows: int) -> list[str]:
    base = []
    for split in ("train", "dev", "test"):
        with open(STSB / f"{split}.csv", encoding="utf-8") as f:
            for r in csv.DictReader(f):
                base += [r["sentence1"], r["sentence2"]]
    return [base[i % len(base)] for i in range(rows)]


def _write_shards(texts: list[str], folder: Path, n: int = 8) -> None:
    folder.mkdir(parents=True)
    per = -(-len(texts) // n)
    for s in range(n):
        lo, hi = s * per, min((s + 1) * per, len(texts))
        pq.write_table(pa.table({"id": list(range(lo, hi)), "text": texts[lo:hi]}), folder / f"shard-{s:02d}.parquet")


def _cli(model: str, shards: Path, out: Path, precision: str, extra: list[str], threads: int) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "embtune", "encode", model, "--input", str(shards), "--text-column", "text",
           "--output", str(out), "--precision", precision, "--chunk-rows", "4000", *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=16000)
    parser.add_argument("--precision", default="fp32")
    opts = parser.parse_args()
    import torch

    from embtune import EmbeddingModel
    from embtune.corpus.encode_shards import encode_corpus
    from embtune.models.bundled import bundled_model_path

    model_name = str(bundled_model_path())
    texts = _texts(opts.rows)
    out: dict = {"rows": opts.rows, "precision": opts.precision, "load_average_before": os.getloadavg(),
                 "threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        _write_shards(texts, tmp / "shards")
        model = EmbeddingModel.load(model_name)
        model.encode(texts[:256], precision=opts.precision)  # warm up
        best = {"plain": float("inf"), "writer": float("inf")}
        for rep in range(2):  # alternate, keep the best of two of each
            start = time.perf_counter()
            model.encode(texts, precision=opts.precision, show_progress_bar=False)  # default batching, as below
            best["plain"] = min(best["plain"], time.perf_counter() - start)
            start = time.perf_counter()
            encode_corpus(model, tmp / "shards", tmp / f"out-{rep}", chunk_rows=4000, precision=opts.precision,
                          show_progress_bar=False)
            best["writer"] = min(best["writer"], time.perf_counter() - start)
        overhead = best["writer"] / best["plain"] - 1
        out |= {"plain_s": round(best["plain"], 3), "writer_s": round(best["writer"], 3),
                "writer_overhead": round(overhead, 4)}
        print(f"plain encode {best['plain']:.2f} s, encode_corpus {best['writer']:.2f} s: overhead {overhead:+.1%}"
              f" (target < 5 %); {opts.rows / best['writer']:.0f} rows/s")
        del model

        start = time.perf_counter()
        one = _cli(model_name, tmp / "shards", tmp / "cli-1", opts.precision, [], threads=2)
        if one.wait() != 0:
            raise SystemExit(one.stderr.read().decode())
        t1 = time.perf_counter() - start
        start = time.perf_counter()
        two = [_cli(model_name, tmp / "shards", tmp / "cli-2", opts.precision, ["--shard", f"{i}/2"], threads=1)
               for i in range(2)]
        if any(p.wait() != 0 for p in two):
            raise SystemExit(two[0].stderr.read().decode() + two[1].stderr.read().decode())
        t2 = time.perf_counter() - start
        out |= {"one_process_2_threads_s": round(t1, 2), "two_processes_1_thread_s": round(t2, 2),
                "rows_per_s_1": round(opts.rows / t1, 1), "rows_per_s_2": round(opts.rows / t2, 1)}
        print(f"CLI, 1 process x 2 threads: {t1:.1f} s ({opts.rows / t1:.0f} rows/s); 2 processes x 1 thread: "
              f"{t2:.1f} s ({opts.rows / t2:.0f} rows/s); ratio {t1 / t2:.2f}x (2 cores: ~flat expected)")
        manifest = json.loads((tmp / "cli-2" / "manifest.json").read_text())
        out["two_process_output_complete"] = manifest["complete"]
    out["load_average_after"] = os.getloadavg()
    path = HERE / "results" / ("encode_corpus.json" if opts.rows == 16000 else f"encode_corpus_{opts.rows}.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
