"""Training throughput, peak RSS and MFU: embtune vs sentence-transformers' trainer, same data, same run.

    .venv/bin/python bench/train.py                 # every configuration (about 25 minutes on 2 CPU cores)
    .venv/bin/python bench/train.py --quick         # smoke run: a few steps per configuration
    .venv/bin/python bench/train.py --only snli,e5small --quick   # a subset (names below)
    .venv/bin/python bench/train.py --precision fp32 --out bench/results/train_avx2.json  # CPUs without native bf16

Configurations (each trained by both peers, AdamW, linear schedule with 10% warmup, seed 42, drop_last, no
evaluation or checkpoints during training, max_seq_length 128):
  mnrl     bundled all-MiniLM-L6-v2, MultipleNegativesRankingLoss (scale 20), no_duplicates sampler, on the
           STS-B train pairs with score >= 4 (1406 pairs; varied lengths), batch 32, lr 5e-5, 80 steps;
  cosent   bundled all-MiniLM-L6-v2, CoSENTLoss (scale 20) on all of STS-B train, batch 32, lr 2e-5, one epoch
           (179 steps); its STS-B dev Spearman is the quality check (ST gets score / 5 as the label, embtune the
           0-5 score: CoSENT only compares labels with each other, so the scale does not enter it);
  snli     bundled all-MiniLM-L6-v2, MNRL with no_duplicates on the SNLI slice's entailment pairs (premise,
           hypothesis; dev + test, short sentences), batch 32, lr 5e-5, 60 steps;
  e5small  a random-weight BertModel built here in the shape of multilingual-e5-small (12 layers, hidden 384,
           FFN 1536, 12 heads, 250,037-token vocabulary, 118M parameters), MNRL on the SNLI pairs, batch 32,
           bf16 only, 16 steps;
  bgem3    a random-weight XLMRobertaModel in the shape of bge-m3 (24 layers, hidden 1024, FFN 4096, 16 heads,
           250,002-token vocabulary, 568M parameters), MNRL on the SNLI pairs, batch 16, gradient checkpointing
           in both peers, bf16 only, 6 steps.
The random-weight models use the bundled model's tokenizer (30,522 ids), so a batch touches rows of the first
30k embedding rows only; the matrix is still the full 250k rows in both peers.
mnrl, cosent and snli run in fp32 (sentence-transformers' default) and in bf16 (ST: bf16=True; embtune:
args.bf16=true, which is also its default on this AMX CPU). Both peers otherwise run at their own defaults.

How it measures. Every (configuration, precision, peer) trains in its own fresh subprocess that imports only
its own library. A global torch optimizer step post-hook (the same in both peers) stamps the time after each
optimizer step; examples/s = batch x steps / time from the end of step ``warm`` to the end of the last step,
so model load, data reading, tokenization, the first steps and the final save are excluded for both. Peak RSS
is the child's ru_maxrss from os.wait4. MFU = model FLOP/s / the bf16 (or fp32) matmul peak measured in the
same run (bench/_peak.py): model FLOPs per example = 3 x (2 x linear weights x tokens + 4 x layers x hidden x
tokens^2) summed over the example's texts, from the real token counts of the data (forward + backward,
recomputation under gradient checkpointing not counted; embedding lookups not counted). Spearman (cosine,
STS-B dev) of both one-epoch CoSENT models comes from one more subprocess with sentence-transformers'
EmbeddingSimilarityEvaluator (fp32 encoding). Writes bench/results/train.json (train_quick.json with --quick).
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
sys.path.insert(0, str(HERE))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes

DATA = HERE.parent.parent / "shared" / "data"
STSB, SNLI = DATA / "stsb", DATA / "snli_sample"
MAX_LEN, SEED, WARMUP_RATIO = 128, 42, 0.1
TASKS = {
    "mnrl": {"model": "bundled", "data": "stsb_pairs", "loss": "mnrl", "lr": 5e-5, "steps": 80, "batch": 32,
             "precisions": ("fp32", "bf16")},
    "cosent": {"model": "bundled", "data": "stsb_scored", "loss": "cosent", "lr": 2e-5, "steps": None, "batch": 32,
               "precisions": ("fp32", "bf16")},
    "snli": {"model": "bundled", "data": "snli_pairs", "loss": "mnrl", "lr": 5e-5, "steps": 60, "batch": 32,
             "precisions": ("fp32", "bf16")},
    "e5small": {"model": "e5small", "data": "snli_pairs", "loss": "mnrl", "lr": 5e-5, "steps": 16, "batch": 32,
                "precisions": ("bf16",)},
    "bgem3": {"model": "bgem3", "data": "snli_pairs", "loss": "mnrl", "lr": 2e-5, "steps": 6, "batch": 16,
              "precisions": ("bf16",), "gradient_checkpointing": True, "warm": 2},
}
SHAPES = {  # random-weight models built in-process, in the shape of the seeds' multilingual models
    "e5small": {"class": "BertConfig", "vocab_size": 250037, "hidden_size": 384, "num_hidden_layers": 12,
                "num_attention_heads": 12, "intermediate_size": 1536, "max_position_embeddings": 512},
    "bgem3": {"class": "XLMRobertaConfig", "vocab_size": 250002, "hidden_size": 1024, "num_hidden_layers": 24,
              "num_attention_heads": 16, "intermediate_size": 4096, "max_position_embeddings": 8194,
              "type_vocab_size": 1},
}
TARGETS = {"snli_bf16": 3.0, "snli_fp32": 3.0, "mnrl_bf16": 3.5, "mnrl_fp32": 3.5, "e5small_bf16": 3.0,
           "bgem3_rss_ratio": 0.7, "mfu": 0.35, "spearman_gap": -0.005}


# --- data and models (parent) -----------------------------------------------------------------------------


def _rows(split: str) -> list[dict[str, str]]:
    with open(STSB / f"{split}.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _snli_pairs() -> list[dict[str, str]]:
    pairs = []
    for split in ("dev", "test"):
        with open(SNLI / f"{split}_pairs.tsv", encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
                if row["gold_label"] == "entailment":
                    pairs.append({"anchor": row["premise"], "positive": row["hypothesis"]})
    return pairs


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    return str(path)


def prepare_data(tmp: Path) -> dict[str, dict]:
    """Paths, row counts and texts per role of every data set (filtered subsets go to temp files)."""
    for need in (STSB / "train.csv", SNLI / "dev_pairs.tsv"):
        if not need.is_file():
            raise SystemExit(f"{need} not found; this benchmark needs ../shared/data (STS-B and the SNLI slice)")
    train = _rows("train")
    stsb_pairs = [{"anchor": r["sentence1"], "positive": r["sentence2"]} for r in train if float(r["score"]) >= 4.0]
    snli = _snli_pairs()
    return {
        "stsb_pairs": {"path": _write_jsonl(tmp / "stsb_ge4.jsonl", stsb_pairs), "rows": len(stsb_pairs),
                       "source": f"{STSB / 'train.csv'} score >= 4",
                       "texts": [[p["anchor"] for p in stsb_pairs], [p["positive"] for p in stsb_pairs]]},
        "stsb_scored": {"path": str(STSB / "train.csv"), "rows": len(train), "source": str(STSB / "train.csv"),
                        "texts": [[r["sentence1"] for r in train], [r["sentence2"] for r in train]]},
        "snli_pairs": {"path": _write_jsonl(tmp / "snli_entailment.jsonl", snli), "rows": len(snli),
                       "source": f"{SNLI}/{{dev,test}}_pairs.tsv gold_label == entailment",
                       "texts": [[p["anchor"] for p in snli], [p["positive"] for p in snli]]},
    }


def build_random_model(shape: str, folder: Path) -> Path:
    """A random-weight Hugging Face encoder of ``shape`` with the bundled model's tokenizer, saved to ``folder``."""
    import torch
    import transformers
    from transformers import AutoModel, AutoTokenizer

    from embtune.models.bundled import bundled_model_path

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_path())
    opts = dict(SHAPES[shape])
    config = getattr(transformers, opts.pop("class"))(**opts, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(SEED)
    AutoModel.from_config(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def flops_per_example(shape: dict, texts_by_role: list[list[str]]) -> float:
    """Model FLOPs of forward + backward for one example (all its roles), from real token counts."""
    from transformers import AutoTokenizer

    from embtune.models.bundled import bundled_model_path

    tokenizer = AutoTokenizer.from_pretrained(bundled_model_path())
    h, f, layers = shape["hidden_size"], shape["intermediate_size"], shape["num_hidden_layers"]
    linear = layers * (4 * h * h + 2 * h * f)  # weights of q, k, v, o and the two FFN matmuls
    total = 0.0
    for texts in texts_by_role:
        lengths = [len(x) for x in tokenizer(texts, truncation=True, max_length=MAX_LEN)["input_ids"]]
        mean_n = sum(lengths) / len(lengths)
        mean_n2 = sum(n * n for n in lengths) / len(lengths)
        total += 3 * (2 * linear * mean_n + 4 * layers * h * mean_n2)
    return total


MINILM_SHAPE = {"hidden_size": 384, "intermediate_size": 1536, "num_hidden_layers": 6}


# --- one training run (worker subprocess) -------------------------------------------------------------------


def _stamp_optimizer_steps() -> list[float]:
    """Install a global optimizer step post-hook that appends the time after every optimizer step."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    stamps: list[float] = []
    register_optimizer_step_post_hook(lambda *_: stamps.append(time.perf_counter()))
    return stamps


def _train_embtune(spec: dict) -> None:
    from embtune.training.loop import train
    from embtune.training.recipe import config_from_dict

    if spec["loss"] == "mnrl":
        columns = {"anchor": "anchor", "positive": "positive"}
        loss, sampler = {"name": "mnrl", "scale": 20.0}, "no_duplicates"
    else:
        columns = {"anchor": "sentence1", "positive": "sentence2", "label": "score"}
        loss, sampler = {"name": "cosent", "scale": 20.0}, "batch_sampler"
    raw = {
        "model": {"name": spec["model_dir"], "max_seq_length": MAX_LEN},
        "datasets": [{"name": spec["task"], "path": spec["data"], "columns": columns, "loss": loss}],
        "args": {
            "output_dir": spec["out"], "overwrite_output_dir": True, "cache_dir": spec["cache"],
            "learning_rate": spec["lr"], "warmup_steps": spec["warmup"], "max_steps": spec["steps"],
            "per_device_train_batch_size": spec["batch"], "dataloader_drop_last": True, "batch_sampler": sampler,
            "bf16": spec["bf16"], "seed": SEED, "logging_steps": 10, "eval_strategy": "no",
            "save_strategy": "no", "disable_tqdm": True,
            "gradient_checkpointing": spec.get("gradient_checkpointing", False),
        },
    }
    if spec.get("backend"):
        raw["model"]["backend"] = spec["backend"]
    train(config_from_dict(raw))  # saves the final model (ST layout) to output_dir


def _train_st(spec: dict) -> None:
    import datasets
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers.sentence_transformer.losses import CoSENTLoss, MultipleNegativesRankingLoss
    from sentence_transformers.sentence_transformer.training_args import (
        BatchSamplers,
        SentenceTransformerTrainingArguments,
    )

    model = SentenceTransformer(spec["model_dir"], device="cpu")
    model.max_seq_length = MAX_LEN
    if spec["loss"] == "mnrl":
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
        per_device_train_batch_size=spec["batch"], dataloader_drop_last=True, batch_sampler=sampler,
        bf16=spec["bf16"], seed=SEED, logging_steps=10, eval_strategy="no", save_strategy="no",
        disable_tqdm=True, report_to="none", use_cpu=True,
        gradient_checkpointing=spec.get("gradient_checkpointing", False),
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
        "examples_per_s": round((len(stamps) - warm) * spec["batch"] / window, 2),
        # robust to bursts of other load on the machine: the batch over the median step time
        "median_step_examples_per_s": round(spec["batch"] / step_s[len(step_s) // 2], 2),
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
    if spec["peer"] == "embtune":  # the OpenMP setting `embtune train` makes before torch loads (utils/threads.py)
        from embtune.utils.threads import configure_thread_env

        configure_thread_env(env)
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
    print(f"  {name:<22} {result['examples_per_s']:6.1f} ex/s (median step {result['median_step_examples_per_s']:6.1f})"
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


def peak_worker(spec: dict) -> None:
    from _peak import measure_peaks

    peaks = measure_peaks()
    Path(spec["result"]).write_text(json.dumps({"bf16": peaks["bf16_gflops"] * 1e9, "fp32": peaks["fp32_gflops"] * 1e9,
                                                "int8_ops": peaks["int8_gops"] * 1e9}))


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _subprocess(flag: str, spec: dict) -> None:
    subprocess.run([sys.executable, __file__, flag, json.dumps(spec)], check=True,
                   env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"},
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def run_all(tasks: list[str], quick: bool, tmp: Path, backend: str | None) -> tuple[dict, dict, dict]:
    """Every (task, precision, peer) run; returns (runs, data, model FLOPs per example per task)."""
    from embtune.models.bundled import bundled_model_path

    data = prepare_data(tmp)
    runs: dict[str, dict] = {}
    flops: dict[str, float] = {}
    for task in tasks:
        opts = TASKS[task]
        model_dir = str(bundled_model_path()) if opts["model"] == "bundled" else str(
            build_random_model(opts["model"], tmp / f"model-{opts['model']}"))
        flops[task] = flops_per_example(SHAPES.get(opts["model"], MINILM_SHAPE), data[opts["data"]]["texts"])
        epoch_steps = data[opts["data"]]["rows"] // opts["batch"]
        steps = min(12, opts["steps"] or epoch_steps) if quick else (opts["steps"] or epoch_steps)
        warm = opts.get("warm", 2 if quick else 5)
        for prec in opts["precisions"]:
            for peer in ("st", "embtune"):
                spec = {"peer": peer, "task": task, "bf16": prec == "bf16", "lr": opts["lr"], "steps": steps,
                        "warmup": math.ceil(WARMUP_RATIO * steps), "warm": warm, "batch": opts["batch"],
                        "data": data[opts["data"]]["path"], "loss": opts["loss"], "model_dir": model_dir,
                        "gradient_checkpointing": opts.get("gradient_checkpointing", False), "backend": backend}
                runs[f"{task}-{prec}-{peer}"] = run_child(spec, tmp)
        if opts["model"] != "bundled":  # free the disk (bge-m3 is 2.3 GB per copy)
            for key in [k for k in runs if k.startswith(f"{task}-")]:
                subprocess.run(["rm", "-rf", runs[key]["model_dir"]], check=False)
            subprocess.run(["rm", "-rf", model_dir], check=False)
    return runs, data, flops


def main() -> None:  # noqa: C901 - one flat sequence: data, runs, ratios, table, json
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few steps per configuration (smoke run)")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(TASKS)}")
    parser.add_argument("--backend", choices=("auto", "fast", "hf"), help="embtune's model.backend (default: auto)")
    parser.add_argument("--precision", choices=("fp32", "bf16"),
                        help="run every configuration at this precision only (fp32 on CPUs without native bf16)")
    parser.add_argument("--out", help="results file (default bench/results/train[_quick][_tasks].json)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--spearman-worker", help=argparse.SUPPRESS)
    parser.add_argument("--peak-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.spearman_worker:
        return spearman_worker(json.loads(args.spearman_worker))
    if args.peak_worker:
        return peak_worker(json.loads(args.peak_worker))
    tasks = list(TASKS) if not args.only else [t.strip() for t in args.only.split(",")]
    if args.precision:
        for opts in TASKS.values():
            opts["precisions"] = (args.precision,)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise SystemExit(f"--only: unknown configuration {unknown}; choose from {', '.join(TASKS)}")

    from embtune.models.bundled import bundled_model_path

    load_before = load_average()
    print(f"load average before: {load_before} (cores: {os.cpu_count()})", flush=True)
    with tempfile.TemporaryDirectory(prefix="embtune-bench-train-") as name:
        tmp = Path(name)
        _subprocess("--peak-worker", {"result": str(tmp / "peak.json")})
        peak = json.loads((tmp / "peak.json").read_text())
        print(f"matmul peak (2 n^3 / s, n=2048): bf16 {peak['bf16'] / 1e9:.0f} GFLOP/s, fp32 {peak['fp32'] / 1e9:.0f}",
              flush=True)
        runs, data, flops = run_all(tasks, args.quick, tmp, args.backend)
        spearman: dict = {}
        if "cosent" in tasks:
            spec = {"result": str(tmp / "spearman.json"), "models": {"base": str(bundled_model_path())}
                    | {k: v["model_dir"] for k, v in runs.items() if k.startswith("cosent")}}
            _subprocess("--spearman-worker", spec)
            spearman = json.loads((tmp / "spearman.json").read_text())
    load_after = load_average()

    table = []
    for task in tasks:
        for prec in TASKS[task]["precisions"]:
            st, et = runs[f"{task}-{prec}-st"], runs[f"{task}-{prec}-embtune"]
            row = {
                "task": task, "precision": prec, "st_examples_per_s": st["examples_per_s"],
                "embtune_examples_per_s": et["examples_per_s"],
                "ratio": round(et["examples_per_s"] / st["examples_per_s"], 2),
                "median_step_ratio": round(et["median_step_examples_per_s"] / st["median_step_examples_per_s"], 2),
                "st_peak_rss_mib": st["peak_rss_mib"], "embtune_peak_rss_mib": et["peak_rss_mib"],
                "rss_ratio": round(et["peak_rss_mib"] / st["peak_rss_mib"], 3),
                "model_gflop_per_example": round(flops[task] / 1e9, 3),
            }
            for peer, r in (("st", st), ("embtune", et)):
                row[f"{peer}_mfu"] = round(r["examples_per_s"] * flops[task] / peak[prec], 4)
            table.append(row)
    gaps = {p: round(spearman[f"cosent-{p}-embtune"] - spearman[f"cosent-{p}-st"], 5)
            for p in ("fp32", "bf16") if f"cosent-{p}-st" in spearman}

    print(f"\nload average before {load_before}, after {load_after}; torch threads {next(iter(runs.values()))['threads']}")
    print(f"{'task':<9}{'prec':<6}{'ST ex/s':>9}{'embtune ex/s':>14}{'ratio':>7}{'median-step':>13}"
          f"{'ST RSS MiB':>12}{'embtune RSS':>13}{'RSS ratio':>11}{'ST MFU':>8}{'embtune MFU':>13}")
    for r in table:
        print(f"{r['task']:<9}{r['precision']:<6}{r['st_examples_per_s']:>9.1f}{r['embtune_examples_per_s']:>14.1f}"
              f"{r['ratio']:>6.2f}x{r['median_step_ratio']:>12.2f}x{r['st_peak_rss_mib']:>12.1f}"
              f"{r['embtune_peak_rss_mib']:>13.1f}{r['rss_ratio']:>11.3f}{r['st_mfu']:>8.1%}{r['embtune_mfu']:>13.1%}")
    checks = {f"{r['task']}_{r['precision']}": r["ratio"] for r in table}
    print("\ntargets (ratios at equal precision, this run):")
    for key, target in TARGETS.items():
        if key in checks:
            print(f"  {key:<14} {checks[key]:5.2f}x  (target >= {target})  {'met' if checks[key] >= target else 'NOT met'}")
    rows = {r["task"]: r for r in table}
    if "bgem3" in rows:
        ratio = rows["bgem3"]["rss_ratio"]
        print(f"  bgem3 peak RSS embtune / ST: {ratio:.3f} (target <= {TARGETS['bgem3_rss_ratio']})  "
              f"{'met' if ratio <= TARGETS['bgem3_rss_ratio'] else 'NOT met'}")
    bf16_rows = [r for r in table if r["precision"] == "bf16"]  # the target is against the bf16 peak
    if bf16_rows:
        best_mfu = max(r["embtune_mfu"] for r in bf16_rows)
        print(f"  training MFU, bf16 vs the bf16 peak (best configuration): {best_mfu:.1%} "
              f"(target >= {TARGETS['mfu']:.0%})  {'met' if best_mfu >= TARGETS['mfu'] else 'NOT met'}")
    if spearman:
        steps = runs["cosent-fp32-st"]["steps"] if "cosent-fp32-st" in runs else "?"
        print(f"STS-B dev Spearman (cosine) after {steps} CoSENT steps{'' if args.quick else ' (one epoch)'}, "
              f"ST's EmbeddingSimilarityEvaluator, base model {spearman['base']}:")
        for p, gap in gaps.items():
            print(f"  {p}: ST {spearman[f'cosent-{p}-st']:.4f}  embtune {spearman[f'cosent-{p}-embtune']:.4f}  "
                  f"gap {gap:+.4f} (target >= {TARGETS['spearman_gap']})")

    result = {
        "quick": args.quick,
        "only": tasks,
        "backend": args.backend or "auto",
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "threads": next(iter(runs.values()))["threads"],
        "load_average_before": load_before,
        "load_average_after": load_after,
        "matmul_peak_flops": peak,
        "data": {k: {"source": v["source"], "rows": v["rows"]} for k, v in data.items()},
        "settings": {"max_seq_length": MAX_LEN, "seed": SEED, "warmup_ratio": WARMUP_RATIO, "tasks": TASKS,
                     "shapes": SHAPES, "timing": "optimizer step post-hook; examples/s from the end of step `warm` "
                     "to the end of the last step", "rss": "os.wait4 ru_maxrss of each fresh subprocess",
                     "threads": "embtune runs with the OpenMP setting of the embtune CLI (utils/threads.THREAD_ENV, "
                     "the thread governor on); sentence-transformers with libgomp's defaults"},
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "model_dir"} for k, v in runs.items()},
        "table": table,
        "ratios": checks,
        "spearman_sts_dev_cosine": spearman,
        "spearman_gap_embtune_minus_st": gaps,
        "targets": TARGETS,
    }
    suffix = "_quick" if args.quick else ""
    if args.only:
        suffix += "_" + "_".join(tasks)
    out = Path(args.out) if args.out else HERE / "results" / f"train{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
