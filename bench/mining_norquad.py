"""Does hard-negative mining pay? MNRL with mined negatives vs MNRL with in-batch negatives only.

    flock -x /tmp/cpu.lock .venv/bin/python bench/mining_norquad.py            # NorQuAD (and SNLI with --snli)
    flock -x /tmp/cpu.lock .venv/bin/python bench/mining_norquad.py --quick    # a few steps: smoke run

NorQuAD (../shared/data/norquad): train the bundled all-MiniLM-L6-v2 on the validation split's (question,
passage) pairs (max_seq_length 192), evaluate NDCG@10 on the retrieval set's test qrels (the whole 481-passage corpus). Two runs,
same steps, seed and batches (no_duplicates sampler): (a) in-batch negatives only; (b) one negative per pair
mined with the base model (`negatives: {mine: ...}`), in the variants of ``VARIANTS`` below. The data
report runs before each training and must flag the passages that occur in both splits as leakage.

SNLI slice (--snli, ../shared/data/snli_sample): train on dev triplets (premise, entailment, contradiction)
with the given contradiction as the negative vs a mined negative; TripletEvaluator accuracy on test triplets.

Skips cleanly (exit 0, a message) when the data is absent. Writes bench/results/mining_norquad.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes

# the mined runs: one negative per pair; ``mined_top`` the most similar non-positive passage; ``mined_ratio`` is NV-Retriever's positive-aware filter, which with a
# weak base model (positives and negatives score alike) leaves negatives for fewer than half of the pairs;
# ``mined_skip3`` skips the 3 most similar candidates (likely unlabeled positives) instead of filtering by score
VARIANTS = {
    "mined_top": {"num": 1, "output_format": "n-tuple"},
    "mined_skip3": {"num": 1, "range_min": 3, "output_format": "n-tuple"},
    "mined_ratio": {"num": 1, "max_score_ratio": 0.95, "output_format": "n-tuple"},
}
DATA = ROOT.parent / "shared" / "data"


def _config(train_file: Path, out: Path, cache: Path, steps: int, evaluator: dict, negatives: dict | None,
            columns: dict, max_seq_length: int) -> dict:
    dataset = {"name": "train", "path": str(train_file), "columns": columns, "loss": {"name": "mnrl"}}
    if negatives is not None:
        dataset["negatives"] = negatives
    return {
        "model": {"name": "bundled:all-MiniLM-L6-v2", "max_seq_length": max_seq_length},
        "datasets": [dataset],
        "eval": {"evaluators": [evaluator]},
        "args": {"output_dir": str(out), "max_steps": steps, "per_device_train_batch_size": 16,
                 "learning_rate": 5e-5, "warmup_ratio": 0.1, "batch_sampler": "no_duplicates",
                 "save_strategy": "no", "seed": 42, "disable_tqdm": True, "cache_dir": str(cache),
                 "logging_steps": max(1, steps // 4)},
    }


def _run(cfg: dict) -> tuple[dict, dict, float]:
    from embtune.training.loop import train
    from embtune.training.recipe import config_from_dict

    started = time.perf_counter()
    result = train(config_from_dict(cfg))
    seconds = time.perf_counter() - started
    report = json.loads((Path(cfg["args"]["output_dir"]) / "data_report.json").read_text())
    return result.metrics, report, seconds


def _pick(metrics: dict, suffix: str) -> tuple[float, float]:
    base = next(v for k, v in metrics["base"].items() if k.endswith(suffix))
    final = next(v for k, v in metrics["final"].items() if k.endswith(suffix))
    return base, final


def norquad(tmp: Path, steps: int, variants: dict[str, dict]) -> dict:
    rows = [json.loads(line) for line in (DATA / "norquad" / "qa_validation.jsonl").read_text().splitlines()]
    train_file = tmp / "norquad_pairs.jsonl"
    train_file.write_text("".join(json.dumps({"question": r["question"], "passage": r["context"]},
                                             ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    evaluator = {"kind": "retrieval", "name": "norquad-test", "path": str(DATA / "norquad" / "retrieval")}
    columns = {"anchor": "question", "positive": "passage"}
    out: dict = {"task": "norquad", "train_pairs": len(rows), "steps": steps, "mine_variants": variants}
    runs = [("in_batch_only", None)] + [(label, {"mine": opts}) for label, opts in variants.items()]
    for label, negatives in runs:
        cfg = _config(train_file, tmp / label, tmp / "cache", steps, evaluator, negatives, columns, 192)
        t0 = time.perf_counter()
        if negatives is not None:  # time the mining alone (then train reuses the cached file)
            from embtune.mining.cached import mined_file
            from embtune.mining.options import MineOptions

            _, stats = mined_file(str(train_file), "question", "passage", MineOptions(**negatives["mine"]),
                                  "bundled:all-MiniLM-L6-v2", tmp / "cache", model_name="bundled:all-MiniLM-L6-v2")
            out[f"{label}_mining_seconds"] = round(time.perf_counter() - t0, 1)
            out[f"{label}_mining_stats"] = stats
        metrics, report, seconds = _run(cfg)
        base, final = _pick(metrics, "ndcg@10")
        out[label] = {"ndcg@10_base": round(base, 4), "ndcg@10": round(final, 4), "seconds": round(seconds, 1)}
        out["leakage"] = [f["message"] for d in report["datasets"] for f in d["findings"] if f["check"] == "leakage"]
        print(f"norquad {label}: NDCG@10 {base:.4f} -> {final:.4f} ({seconds:.0f}s)", flush=True)
    return out


def snli(tmp: Path, steps: int) -> dict:
    folder = DATA / "snli_sample"
    evaluator = {"kind": "triplet", "name": "snli-test", "path": str(folder / "test_triplets.tsv")}
    out: dict = {"task": "snli", "steps": steps}
    runs = (("given_contradiction", {"anchor": "anchor", "positive": "positive", "negatives": ["negative"]}, None),
            ("mined", {"anchor": "anchor", "positive": "positive"},
             {"mine": {"num": 1, "max_score_ratio": 0.95, "output_format": "n-tuple"}}))
    for label, columns, negatives in runs:
        cfg = _config(folder / "dev_triplets.tsv", tmp / f"snli_{label}", tmp / "cache", steps, evaluator,
                      negatives, columns, 64)
        metrics, _, seconds = _run(cfg)
        base, final = _pick(metrics, "accuracy")
        out[label] = {"accuracy_base": round(base, 4), "accuracy": round(final, 4), "seconds": round(seconds, 1)}
        print(f"snli {label}: accuracy {base:.4f} -> {final:.4f} ({seconds:.0f}s)", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 steps per run (smoke run)")
    parser.add_argument("--steps", type=int, default=30, help="optimizer steps per run (default 30 = 1 epoch)")
    parser.add_argument("--snli", action="store_true", help="also run the SNLI slice")
    parser.add_argument("--variants", default=json.dumps(VARIANTS),
                        help="JSON {label: mine options} for the mined runs (default: %(default)s)")
    args = parser.parse_args()
    if not (DATA / "norquad" / "qa_validation.jsonl").is_file():
        print(f"skipped: NorQuAD not found under {DATA}")
        return 0
    sys.path.insert(0, str(ROOT / "src"))
    steps = 3 if args.quick else args.steps
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["norquad"] = norquad(Path(tmp), steps, json.loads(args.variants))
        if args.snli and (DATA / "snli_sample" / "dev_triplets.tsv").is_file():
            results["snli"] = snli(Path(tmp), 3 if args.quick else 24)
    name = "mining_norquad_quick.json" if args.quick else "mining_norquad.json"
    target = ROOT / "bench" / "results" / name
    target.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
