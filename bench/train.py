"""Training throughput and peak RSS: embtune vs sentence-transformers' trainer, same recipe, same data, same run.

    .venv/bin/python bench/train.py            # full run (about 15 minutes on 2 CPU cores)
    .venv/bin/python bench/train.py --quick    # smoke run: a few steps per configuration

Configurations, each trained by both peers from the bundled all-MiniLM-L6-v2 (max_seq_length 128, batch 32,
AdamW, linear schedule with 10% warmup, seed 42, drop_last, no evaluation or checkpoints during training):
  mnrl   MultipleNegativesRankingLoss (scale 20), no_duplicates batch sampler, on the (sentence1, sentence2)
         pairs of STS-B train with score >= 4 (1406 pairs), lr 5e-5, 80 steps (about 1.8 epochs);
  cosent CoSENTLoss (scale 20) on all of STS-B train, lr 2e-5, one epoch (179 steps). sentence-transformers
         gets score / 5 as the label; embtune reads the CSV in place with the 0-5 score, which is the same
         loss: CoSENT only compares labels with each other, so their scale does not enter it.
each in fp32 (sentence-transformers' default: bf16=False; embtune: args.bf16=false) and in bf16 (ST:
bf16=True; embtune: args.bf16=true; embtune's default bf16=null resolves to bf16 on this AMX CPU, so the bf16
run is also embtune's default). Both peers otherwise run at their own defaults: embtune batches rows of
similar length inside shuffled windows (group_by_length: true, its default since it cuts padding); ST does
not. With group_by_length: false embtune measured 0.99-1.06x ST at equal precision (see the issue note).

How it measures. Every (peer, task, precision) trains in its own fresh subprocess that imports only its own
library. A global torch optimizer step post-hook (the same in both peers) stamps the time after each
optimizer step; examples/s = batch x steps / time from the end of step ``warm`` (5) to the end of the last
step, so model load, data reading, tokenization done before the loop, the first warm-up steps and the final
save are excluded for both. Peak RSS is the child's ru_maxrss from os.wait4 (the high-water mark of the whole
process: load, data, training, save). Spearman (cosine, STS-B dev) of both one-epoch CoSENT models is
computed in one more subprocess with sentence-transformers' EmbeddingSimilarityEvaluator (fp32 encoding).
Writes bench/results/train.json (bench/results/train_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STSB = HERE.parent.parent / "shared" / "data" / "stsb"
BATCH, MAX_LEN, SEED, WARMUP_RATIO = 32, 128, 42, 0.1
TASKS = {"mnrl": {"lr": 5e-5, "steps": 80}, "cosent": {"lr": 2e-5, "steps": None}}  # None: one epoch
TARGETS = {"vs_st_default": 3.0, "vs_st_bf16": 1.5, "spearman_gap": -0.005, "rss_ratio": 1.0}


# --- data (parent) ------------------------------------------------------------------------------------------


def _rows(split: str) -> list[dict[str, str]]:
    with open(STSB / f"{split}.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def prepare_data(tmp: Path) -> dict[str, dict]:
    """Paths and row counts of both tasks' data. Only the MNRL subset is written (a filtered temp file)."""
    if not (STSB / "train.csv").is_file():
        raise SystemExit(f"{STSB / 'train.csv'} not found; this benchmark needs STS-B (../shared/data/stsb)")
    train = _rows("train")
    pairs = [{"anchor": r["sentence1"], "positive": r["sentence2"]} for r in train if float(r["score"]) >= 4.0]
    mnrl_path = tmp / "stsb_train_score_ge4.jsonl"
    with open(mnrl_path, "w", encoding="utf-8") as fh:
        for p in pairs:
            fh.write(json.dumps(p) + "\n")
    return {
        "mnrl": {"path": str(mnrl_path), "rows": len(pairs), "source": f"{STSB / 'train.csv'} score >= 4"},
        "cosent": {"path": str(STSB / "train.csv"), "rows": len(train), "source": str(STSB / "train.csv")},
    }


# --- one training run (worker subprocess) -------------------------------------------------------------------


def _stamp_optimizer_steps() -> list[float]:
    """Install a global optimizer step post-hook that appends the time after every optimizer step."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    stamps: list[float] = []
    register_optimizer_step_post_hook(lambda *_: stamps.append(time.perf_counter()))
    return stamps


def _train_embtune(spec: dict) -> None:
    from embtune.models.bundled import bundled_model_path
    from embtune.training.loop import train
    from embtune.training.recipe import config_from_dict

    if spec["task"] == "mnrl":
        columns = {"anchor": "anchor", "positive": "positive"}
        loss, sampler = {"name": "mnrl", "scale": 20.0}, "no_duplicates"
    else:
        columns = {"anchor": "sentence1", "positive": "sentence2", "label": "score"}
        loss, sampler = {"name": "cosent", "scale": 20.0}, "batch_sampler"
    raw = {
        "model": {"name": str(bundled_model_path()), "max_seq_length": MAX_LEN},
        "datasets": [{"name": spec["task"], "path": spec["data"], "columns": columns, "loss": loss}],
        "args": {
            "output_dir": spec["out"], "overwrite_output_dir": True, "cache_dir": spec["cache"],
            "learning_rate": spec["lr"], "warmup_steps": spec["warmup"], "max_steps": spec["steps"],
            "per_device_train_batch_size": BATCH, "dataloader_drop_last": True, "batch_sampler": sampler,
            "bf16": spec["bf16"], "seed": SEED, "logging_steps": 10, "eval_strategy": "no",
            "save_strategy": "no", "disable_tqdm": True,
        },
    }
    train(config_from_dict(raw))  # saves the final model (ST layout) to output_dir


def _train_st(spec: dict) -> None:
    import datasets
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    from embtune.models.bundled import bundled_model_path  # only the folder path

    model = SentenceTransformer(str(bundled_model_path()), device="cpu")
    model.max_seq_length = MAX_LEN
    if spec["task"] == "mnrl":
        with open(spec["data"], encoding="utf-8") as fh:
            rows = [json.loads(line) for line in fh]
        data = datasets.Dataset.from_dict({k: [r[k] for r in rows] for k in ("anchor", "positive")})
        loss, sampler = MultipleNegativesRankingLoss(model, scale=20.0), BatchSamplers.NO_DUPLICATES
    else:
        rows = _rows("train")
        data = datasets.Dataset.from_dict({
            "sentence1": [r["sentence1"] for r in rows],
            "sentence2": [r["sentence2"] for r in rows],
            "score": [float(r["score"]) / 5.0 for r in rows],
        })
        loss, sampler = CoSENTLoss(model, scale=20.0), BatchSamplers.BATCH_SAMPLER
    args = SentenceTransformerTrainingArguments(
        output_dir=spec["out"], learning_rate=spec["lr"], warmup_steps=spec["warmup"], max_steps=spec["steps"],
        per_device_train_batch_size=BATCH, dataloader_drop_last=True, batch_sampler=sampler,
        bf16=spec["bf16"], seed=SEED, logging_steps=10, eval_strategy="no", save_strategy="no",
        disable_tqdm=True, report_to="none", use_cpu=True,
    )
    SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=loss).train()
    model.save_pretrained(spec["out"])


def worker(spec: dict) -> None:
    import torch

    started = time.perf_counter()
    stamps = _stamp_optimizer_steps()
    (_train_embtune if spec["peer"] == "embtune" else _train_st)(spec)
    warm = spec["warm"]
    if len(stamps) != spec["steps"]:
        raise SystemExit(f"expected {spec['steps']} optimizer steps, stamped {len(stamps)}")
    window = stamps[-1] - stamps[warm - 1]
    step_s = sorted(b - a for a, b in zip(stamps[warm - 1:], stamps[warm:], strict=False))
    result = {
        "steps": len(stamps),
        "timed_steps": len(stamps) - warm,
        "timed_s": round(window, 3),
        "examples_per_s": round((len(stamps) - warm) * BATCH / window, 2),
        # robust to bursts of other load on the machine: the batch over the median step time
        "median_step_examples_per_s": round(BATCH / step_s[len(step_s) // 2], 2),
        "first_steps_s": round(stamps[warm - 1] - started, 3),  # load + data + first `warm` steps
        "total_s": round(time.perf_counter() - started, 3),
        "threads": torch.get_num_threads(),
    }
    Path(spec["result"]).write_text(json.dumps(result))


# --- orchestration (parent) ---------------------------------------------------------------------------------


def run_child(spec: dict, tmp: Path) -> dict:
    """Run one configuration in a fresh interpreter; add its peak RSS (MiB) from os.wait4."""
    name = f"{spec['task']}-{'bf16' if spec['bf16'] else 'fp32'}-{spec['peer']}"
    spec = {**spec, "out": str(tmp / name), "cache": str(tmp / f"cache-{name}"), "result": str(tmp / f"{name}.json")}
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    load_start = os.getloadavg()[0]
    log = open(tmp / f"{name}.log", "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(spec)], stdout=log, stderr=log, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    log.close()
    if proc.returncode != 0:
        tail = (tmp / f"{name}.log").read_text()[-3000:]
        raise SystemExit(f"{name} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(Path(spec["result"]).read_text())
    result["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)  # Linux: KiB
    result["model_dir"] = spec["out"]
    result["load_1min_start_end"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    print(f"  {name:<20} {result['examples_per_s']:6.1f} ex/s (median step {result['median_step_examples_per_s']:6.1f})"
          f"  peak RSS {result['peak_rss_mib']:7.1f} MiB  ({result['timed_steps']} timed steps in {result['timed_s']} s;"
          f" process {result['total_s']} s; load {result['load_1min_start_end']})", flush=True)
    return result


def spearman_worker(spec: dict) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    rows = _rows("dev")
    evaluator = EmbeddingSimilarityEvaluator(
        [r["sentence1"] for r in rows], [r["sentence2"] for r in rows], [float(r["score"]) / 5.0 for r in rows],
        name="sts-dev", similarity_fn_names=["cosine"], batch_size=64, write_csv=False,
    )
    out = {}
    for key, folder in spec["models"].items():
        model = SentenceTransformer(folder, device="cpu")
        out[key] = round(float(evaluator(model)["sts-dev_spearman_cosine"]), 5)
    Path(spec["result"]).write_text(json.dumps(out))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:  # noqa: C901 - one flat sequence: data, runs, ratios, table, json
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps per configuration (smoke run)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spearman-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.spearman_worker:
        return spearman_worker(json.loads(args.spearman_worker))

    from embtune.models.bundled import bundled_model_path

    load_before = load_average()
    print(f"load average before: {load_before} (cores: {os.cpu_count()})", flush=True)
    with tempfile.TemporaryDirectory(prefix="embtune-bench-train-") as name:
        tmp = Path(name)
        data = prepare_data(tmp)
        runs: dict[str, dict] = {}
        for task, opts in TASKS.items():
            epoch_steps = data[task]["rows"] // BATCH
            steps = 12 if args.quick else (opts["steps"] or epoch_steps)
            for bf16 in (False, True):
                for peer in ("st", "embtune"):
                    spec = {"peer": peer, "task": task, "bf16": bf16, "lr": opts["lr"], "steps": steps,
                            "warmup": math.ceil(WARMUP_RATIO * steps), "warm": 2 if args.quick else 5,
                            "data": data[task]["path"]}
                    runs[f"{task}-{'bf16' if bf16 else 'fp32'}-{peer}"] = run_child(spec, tmp)
        spec = {"result": str(tmp / "spearman.json"),
                "models": {"base": str(bundled_model_path())}
                | {k: v["model_dir"] for k, v in runs.items() if k.startswith("cosent")}}
        subprocess.run([sys.executable, __file__, "--spearman-worker", json.dumps(spec)], check=True,
                       env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spearman = json.loads((tmp / "spearman.json").read_text())
    load_after = load_average()

    table = []
    for task in TASKS:
        for prec in ("fp32", "bf16"):
            st, et = runs[f"{task}-{prec}-st"], runs[f"{task}-{prec}-embtune"]
            table.append({
                "task": task, "precision": prec, "st_examples_per_s": st["examples_per_s"],
                "embtune_examples_per_s": et["examples_per_s"],
                "ratio": round(et["examples_per_s"] / st["examples_per_s"], 2),
                "median_step_ratio": round(et["median_step_examples_per_s"] / st["median_step_examples_per_s"], 2),
                "st_peak_rss_mib": st["peak_rss_mib"], "embtune_peak_rss_mib": et["peak_rss_mib"],
                "rss_ratio": round(et["peak_rss_mib"] / st["peak_rss_mib"], 3),
            })
    rate = {(r["task"], r["precision"], p): r[f"{p}_examples_per_s"] for r in table for p in ("st", "embtune")}
    checks = {}
    for task in TASKS:
        checks[f"{task}_embtune_default_vs_st_default"] = round(rate[task, "bf16", "embtune"] / rate[task, "fp32", "st"], 2)
        checks[f"{task}_embtune_fp32_vs_st_fp32"] = round(rate[task, "fp32", "embtune"] / rate[task, "fp32", "st"], 2)
        checks[f"{task}_embtune_bf16_vs_st_bf16"] = round(rate[task, "bf16", "embtune"] / rate[task, "bf16", "st"], 2)
    gaps = {p: round(spearman[f"cosent-{p}-embtune"] - spearman[f"cosent-{p}-st"], 5) for p in ("fp32", "bf16")}

    print(f"\nload average before {load_before}, after {load_after}; torch threads {runs['mnrl-fp32-st']['threads']}")
    print(f"{'task':<7}{'prec':<6}{'ST ex/s':>9}{'embtune ex/s':>14}{'ratio':>7}{'median-step ratio':>19}"
          f"{'ST RSS MiB':>12}{'embtune RSS':>13}{'RSS ratio':>11}")
    for r in table:
        print(f"{r['task']:<7}{r['precision']:<6}{r['st_examples_per_s']:>9.1f}{r['embtune_examples_per_s']:>14.1f}"
              f"{r['ratio']:>6.2f}x{r['median_step_ratio']:>18.2f}x{r['st_peak_rss_mib']:>12.1f}"
              f"{r['embtune_peak_rss_mib']:>13.1f}{r['rss_ratio']:>11.3f}")
    print("\ntargets (embtune's default precision is bf16 on this CPU, so 'default' = its bf16 run):")
    for task in TASKS:
        print(f"  {task:<7} embtune default / ST default (fp32): {checks[f'{task}_embtune_default_vs_st_default']:5.2f}x"
              f"  (target >= {TARGETS['vs_st_default']})   fp32 / fp32: {checks[f'{task}_embtune_fp32_vs_st_fp32']:.2f}x")
        print(f"  {task:<7} embtune bf16 / ST bf16:              {checks[f'{task}_embtune_bf16_vs_st_bf16']:5.2f}x"
              f"  (target >= {TARGETS['vs_st_bf16']})")
    print(f"  peak RSS embtune / ST: max {max(r['rss_ratio'] for r in table):.3f} (target <= {TARGETS['rss_ratio']})")
    steps = runs["cosent-fp32-st"]["steps"]
    print(f"STS-B dev Spearman (cosine) after {steps} CoSENT steps"
          f"{'' if args.quick else ' (one epoch)'}, ST's EmbeddingSimilarityEvaluator, base model {spearman['base']}:")
    for p in ("fp32", "bf16"):
        print(f"  {p}: ST {spearman[f'cosent-{p}-st']:.4f}  embtune {spearman[f'cosent-{p}-embtune']:.4f}  "
              f"gap {gaps[p]:+.4f} (target >= {TARGETS['spearman_gap']}{', the checked one' if p == 'fp32' else ''})")

    result = {
        "quick": args.quick,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": runs["mnrl-fp32-st"]["threads"],
        "load_average_before": load_before,
        "load_average_after": load_after,
        "data": {k: {"source": v["source"], "rows": v["rows"]} for k, v in data.items()},
        "settings": {"batch_size": BATCH, "max_seq_length": MAX_LEN, "seed": SEED, "warmup_ratio": WARMUP_RATIO,
                     "tasks": TASKS, "timing": "optimizer step post-hook; examples/s from the end of step `warm` "
                     "to the end of the last step", "rss": "os.wait4 ru_maxrss of each fresh subprocess"},
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "model_dir"} for k, v in runs.items()},
        "table": table,
        "ratios": checks,
        "spearman_sts_dev_cosine": spearman,
        "spearman_gap_embtune_minus_st": gaps,
        "targets": TARGETS,
    }
    out = HERE / "results" / ("train_quick.json" if args.quick else "train.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
