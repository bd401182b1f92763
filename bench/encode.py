"""Encode throughput: embtune vs sentence-transformers, same model, same texts, same run.

    .venv/bin/python bench/encode.py [--texts 5000] [--repeats 3]

Texts: STS-B train sentences from ../shared/data/stsb when present (else a generated set, reported as such).
Peers: sentence-transformers at its defaults (fp32, batch 32) and tuned (bf16 autocast, best of batch 32/128).
embtune runs at its defaults (precision="auto", batch_size=128). Prints sentences/s and ratios, checks that
embtune's embeddings stay at cosine >= 0.999 to fp32, and writes bench/results/encode.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "stsb" / "train.csv"


def load_texts(n: int) -> tuple[list[str], str]:
    if SHARED.is_file():
        texts: list[str] = []
        with open(SHARED, encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                texts += [row["sentence1"], row["sentence2"]]
        return texts[:n], f"STS-B train ({SHARED})"
    rng = np.random.default_rng(0)
    words = "the a cat dog runs over under house city blue fast slow music plays people river".split()
    return [" ".join(rng.choice(words, size=int(rng.integers(4, 30)))) for _ in range(n)], "generated"


def best_rate(fn, n_texts: int, repeats: int) -> float:
    fn()  # warm-up: kernels, caches, the bf16 weight copy
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n_texts / min(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from sentence_transformers import SentenceTransformer

    from embtune import EmbeddingModel
    from embtune.models.bundled import bundled_model_path

    texts, source = load_texts(args.texts)
    path = bundled_model_path()
    ours = EmbeddingModel.load(path)
    theirs = SentenceTransformer(str(path), device="cpu")
    n = len(texts)

    def st_bf16(bs: int):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return theirs.encode(texts, batch_size=bs)

    rates = {
        "st_default_fp32_bs32": best_rate(lambda: theirs.encode(texts, batch_size=32), n, args.repeats),
        "st_bf16_bs32": best_rate(lambda: st_bf16(32), n, args.repeats),
        "st_bf16_bs128": best_rate(lambda: st_bf16(128), n, args.repeats),
        "embtune_default": best_rate(lambda: ours.encode(texts, show_progress_bar=False), n, args.repeats),
        "embtune_fp32": best_rate(lambda: ours.encode(texts, precision="fp32", show_progress_bar=False), n, args.repeats),
    }
    st_tuned = max(rates["st_bf16_bs32"], rates["st_bf16_bs128"])
    ref = theirs.encode(texts, batch_size=32)
    fast = ours.encode(texts, show_progress_bar=False)
    cos = (ref * fast).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(fast, axis=1)
    result = {
        "texts": n,
        "source": source,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "rates_texts_per_s": {k: round(v, 1) for k, v in rates.items()},
        "ratio_vs_st_default": round(rates["embtune_default"] / rates["st_default_fp32_bs32"], 2),
        "ratio_vs_st_tuned": round(rates["embtune_default"] / st_tuned, 2),
        "ratio_fp32_vs_st_default": round(rates["embtune_fp32"] / rates["st_default_fp32_bs32"], 2),
        "min_cosine_to_st_fp32": round(float(cos.min()), 6),
        "targets": {"vs_st_default": 3.0, "vs_st_tuned": 1.3, "min_cosine": 0.999},
    }
    for key, value in result["rates_texts_per_s"].items():
        print(f"{key:>24}: {value:8.1f} texts/s")
    print(f"embtune / ST default : {result['ratio_vs_st_default']}x (target >= 3)")
    print(f"embtune / ST tuned   : {result['ratio_vs_st_tuned']}x (target >= 1.3)")
    print(f"min cosine to fp32   : {result['min_cosine_to_st_fp32']} (target >= 0.999)")
    out = HERE / "results" / "encode.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
