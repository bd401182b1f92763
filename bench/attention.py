"""The per-sequence attention kernels against torch's attention on packed rows, alternating in one process.

    .venv/bin/python bench/attention.py            # encode (bf16, fp32) and a training step (bf16, fp32)

encode: the bundled all-MiniLM-L6-v2 on 3,000 STS-B test sentences (and 600 texts of ~50 and ~100 tokens, each
joined from 4 or 8 sentences), best texts/s of 3 calls per setting, 2 alternations; worst cosine to the
Hugging Face modules' fp32 embeddings. train: one MNRL step (SNLI entailment pairs, batch 32, as
bench/profile_step.py), median ms of 6 alternating blocks of 8 steps. "kernel" is the default path;
"torch" is the same code with the in-place attention switched off (``fused.can_attend_sequences`` /
``fused.can_train_sequences`` answering False), so the groups, packed rows and torch's attention run instead.
Writes bench/results/attention.json. Run under ``flock -x /tmp/cpu.lock``.
"""

from __future__ import annotations

import csv
import json
import random
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes

STSB = HERE.parent.parent / "shared" / "data" / "stsb" / "test.csv"


@contextmanager
def _attention(kind: str):
    from embtune.models import fused

    saved = fused.can_attend_sequences, fused.can_train_sequences
    if kind == "torch":
        fused.can_attend_sequences = fused.can_train_sequences = lambda *a: False
    try:
        yield
    finally:
        fused.can_attend_sequences, fused.can_train_sequences = saved


def _cosine_min(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)).min())


def bench_encode() -> dict:
    from embtune import EmbeddingModel

    rows = list(csv.DictReader(STSB.open(encoding="utf-8")))
    sentences = [r["sentence1"] for r in rows] + [r["sentence2"] for r in rows]
    sets = {"stsb": sentences[:3000]}
    for k, name in ((4, "joined4"), (8, "joined8")):  # sentences i*k .. i*k+k-1, wrapping around the set
        sets[name] = [" ".join(sentences[(i * k + j) % len(sentences)] for j in range(k)) for i in range(600)]
    model = EmbeddingModel.load("bundled:all-MiniLM-L6-v2")
    hf = EmbeddingModel.load("bundled:all-MiniLM-L6-v2", backend="hf")
    out = {}
    for name, texts in sets.items():
        tokens = float(np.mean([len(ids) for ids in model.transformer.token_ids(texts)[0]]))
        ref = hf.encode(texts, precision="fp32", show_progress_bar=False)
        for precision in ("bf16", "fp32"):
            runs: dict[str, list[float]] = {"kernel": [], "torch": []}
            worst = {}
            for _ in range(2):
                for kind in runs:
                    with _attention(kind):
                        model.encode(texts[:100], precision=precision, show_progress_bar=False)
                        for _ in range(3):
                            start = time.perf_counter()
                            emb = model.encode(texts, precision=precision, show_progress_bar=False)
                            runs[kind].append(len(texts) / (time.perf_counter() - start))
                        worst[kind] = _cosine_min(emb, ref)
            row = {k: round(max(v), 1) for k, v in runs.items()}
            row.update({"speedup": round(row["kernel"] / row["torch"], 3), "mean_tokens": round(tokens, 1),
                        "min_cosine_to_hf_fp32": {k: round(v, 6) for k, v in worst.items()}})
            out[f"{name}-{precision}"] = row
            print(f"encode {name:8} ({tokens:5.1f} tokens) {precision}: kernel {row['kernel']:7.1f} texts/s, "
                  f"torch {row['torch']:7.1f} ({row['speedup']:.2f}x); min cosine {worst}", flush=True)
    return out


def bench_train() -> dict:
    from profile_step import _phases
    from train import _snli_pairs

    from embtune.models.bundled import bundled_model_path
    from embtune.models.embedding_model import EmbeddingModel
    from embtune.utils.memory import reuse_freed_blocks

    reuse_freed_blocks()
    pairs = _snli_pairs()
    random.seed(0)
    model = EmbeddingModel.from_transformer(bundled_model_path(), backend="fast", max_seq_length=128)
    batches = []
    for _ in range(8):
        rows = random.sample(pairs, 32)
        batches.append({"anchor": model.tokenize([r["anchor"] for r in rows]),
                        "positive": model.tokenize([r["positive"] for r in rows])})
    out = {}
    for precision in ("bf16", "fp32"):
        runs: dict[str, list[float]] = {"kernel": [], "torch": []}
        for _ in range(6):
            for kind in runs:
                with _attention(kind):
                    runs[kind].append(sum(_phases(model, batches, None, amp=precision == "bf16").values()))
        row = {k: round(statistics.median(v), 1) for k, v in runs.items()}
        row["speedup"] = round(row["torch"] / row["kernel"], 3)
        out[f"train-{precision}"] = row
        print(f"train step {precision}: kernel {row['kernel']} ms, torch {row['torch']} ms ({row['speedup']:.2f}x)",
              flush=True)
    return out


def main() -> None:
    if not STSB.is_file():
        sys.exit(f"bench/attention.py: {STSB} not found; it reads STS-B from ../shared/data")
    from embtune.models import fused

    if fused.kernels() is None:
        sys.exit("bench/attention.py: the C kernels are unavailable (no C compiler or EMBTUNE_FUSED_KERNELS=0)")
    results = {"command": "flock -x /tmp/cpu.lock .venv/bin/python bench/attention.py",
               "native_inference_kernel": bool(fused.kernels().sequence_attention_native()),
               **bench_encode(), **bench_train()}
    path = HERE / "results" / "attention.json"
    path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
