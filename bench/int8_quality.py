"""int8 encode quality: cosine to fp32, STS-B test Spearman and NorQuAD retrieval NDCG@10, fp32 vs bf16 vs int8.

    .venv/bin/python bench/int8_quality.py [--model bundled:all-MiniLM-L6-v2]

Model: bundled all-MiniLM-L6-v2 (English) by default. STS-B test (1,379 pairs) from ../shared/data/stsb;
NorQuAD retrieval (Norwegian, 944 queries, BEIR folder) from ../shared/data/norquad/retrieval when present.
No timing (quality only). Writes bench/results/int8_quality.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes

DATA = HERE.parent.parent / "shared" / "data"
STS_COLUMNS = {"sentences1": "sentence1", "sentences2": "sentence2", "scores": "score"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    parser.add_argument("--out", help="results file (default bench/results/int8_quality.json)")
    args = parser.parse_args()

    from embtune import EmbeddingModel
    from embtune.evaluation import evaluate
    from embtune.models.int8 import HAS_INT8_DOT
    from embtune.utils.device import fast_bf16

    # bf16 only where it is native (emulated, it takes ~50x fp32's time and nobody runs it)
    precisions = ("fp32", "bf16", "int8") if fast_bf16("cpu") else ("fp32", "int8")

    model = EmbeddingModel.load(args.model)
    with open(DATA / "stsb" / "test.csv", encoding="utf-8") as fh:
        texts = sorted({t for row in csv.DictReader(fh) for t in (row["sentence1"], row["sentence2"])})
    ref = model.encode(texts, precision="fp32")
    result: dict = {"model": args.model, "texts_for_cosine": len(texts), "int8_weight_bits": 8 if HAS_INT8_DOT else 7}
    for precision in precisions[1:]:
        emb = model.encode(texts, precision=precision)
        cos = (emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
        result[f"{precision}_cosine_to_fp32"] = {"min": round(float(cos.min()), 6), "mean": round(float(cos.mean()), 6)}
    for precision in precisions:
        sts = evaluate(model, str(DATA / "stsb" / "test.csv"), "sts", columns=STS_COLUMNS, precision=precision)
        result[f"stsb_test_spearman_{precision}"] = round(sts["spearman_cosine"], 5)
        folder = DATA / "norquad" / "retrieval"
        if folder.is_dir():
            ir = evaluate(model, str(folder), "retrieval", precision=precision)
            result[f"norquad_ndcg@10_{precision}"] = round(ir["cosine_ndcg@10"], 5)
    for metric in ("stsb_test_spearman", "norquad_ndcg@10"):
        if f"{metric}_int8" in result:
            result[f"{metric}_int8_change"] = round(result[f"{metric}_int8"] - result[f"{metric}_fp32"], 5)
    print(json.dumps(result, indent=2))
    out = Path(args.out) if args.out else HERE / "results" / "int8_quality.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
