"""LoRA vs full fine-tuning: memory and speed on the bge-m3 shape, quality on STS-B (not a test).

Part ``shape``: an XLM-RoBERTa encoder of bge-m3's shape (24 layers, hidden 1024, 16 heads, FFN 4096, 250,002
tokens; 568M parameters) with random weights, written to a folder once by a separate process, then loaded by
each variant the way ``embtune train`` loads it (``training.build.build_model``: full fine-tuning on embtune's
encoder with row-wise embedding updates; LoRA r 16, alpha 32, default targets, on the Hugging Face modules,
with the frozen base in bf16 under bf16 training, ``model.adapter.base_dtype: auto``). Mean pooling,
MultipleNegativesRankingLoss on (anchor, positive) batches of 16 random token sequences, gradient
checkpointing on, bf16 autocast (``--fp32`` for float32), grad clip 1.0, embtune's AdamW
(``training.optim.build_optimizer``). Each variant runs in its own fresh subprocess; peak RSS is the child's
ru_maxrss (os.wait4), so loading counts; examples/s is measured after one warm-up step. The data pipeline
and the final save are left out (random ids; a merged save of a bf16 base re-reads the float32 weights). The
LoRA child starts with an empty cache, so its peak includes writing the bf16 copy of the base weights.

Part ``stsb``: the bundled all-MiniLM-L6-v2, CoSENT on STS-B train (5,749 pairs), batch 32, one epoch, then
STS-B dev Spearman (cosine) of full fine-tuning (lr 2e-5) vs LoRA (r 16, alpha 32, lr 2e-4: adapters need a
larger step, as PEFT's guides say), through ``embtune.train`` with the same seed.

    flock -x /tmp/cpu.lock python bench/lora.py                 # both parts, writes bench/results/lora.json
    flock -x /tmp/cpu.lock python bench/lora.py --part shape --seq-len 64 --steps 3
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

STSB = HERE.parent.parent / "shared" / "data" / "stsb"
BGE_M3 = {"vocab_size": 250002, "hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
          "intermediate_size": 4096, "max_position_embeddings": 8194, "type_vocab_size": 1}


def build_worker(spec: dict) -> None:
    """Write the random-weight bge-m3-shaped encoder (plus the bundled tokenizer) to spec['folder'] once."""
    import torch
    from transformers import AutoTokenizer, XLMRobertaConfig, XLMRobertaModel

    from embtune.models.bundled import bundled_model_path

    torch.manual_seed(0)
    XLMRobertaModel(XLMRobertaConfig(**BGE_M3), add_pooling_layer=False).save_pretrained(spec["folder"])
    AutoTokenizer.from_pretrained(bundled_model_path()).save_pretrained(spec["folder"])  # ids are random anyway


def shape_worker(spec: dict) -> None:
    """One variant (full or lora) on the bge-m3 shape, loaded from the folder as a user's run would;
    writes examples/s to spec['result']."""
    import torch

    from embtune.losses import build_loss
    from embtune.training.build import build_model
    from embtune.training.config import AdapterCfg, ModelCfg, TrainArgs
    from embtune.training.optim import build_optimizer

    torch.manual_seed(0)
    amp = torch.bfloat16 if spec["bf16"] else None
    adapter = AdapterCfg(r=16, alpha=32, dropout=0.05) if spec["variant"] == "lora" else None
    model = build_model(ModelCfg(name=spec["folder"], pooling="mean", max_seq_length=512, adapter=adapter), None, amp,
                        Path(spec["cache"]))  # a LoRA bf16 base is converted here, once, as `embtune train` does
    import resource

    loaded_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak so far: loading (and converting)
    model.transformer.auto_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    optimizer = build_optimizer(model, TrainArgs(learning_rate=1e-5))
    params = [p for p in model.parameters() if p.requires_grad]
    loss_fn = build_loss("mnrl")
    batch, seq = spec["batch"], spec["seq_len"]

    def features() -> dict[str, torch.Tensor]:
        ids = torch.randint(5, 30522, (batch, seq))  # the tokenizer's id range, as real text would give
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    from embtune.training.rowwise import clip_grad_norm

    times = []
    for _ in range(spec["steps"] + 1):  # step 0 warms up (allocator, optimizer state)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp is not None):
            embeddings = model.embed_roles({"anchor": features(), "positive": features()})
        loss_fn({k: v.float() for k, v in embeddings.items()}).backward()
        clip_grad_norm(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - start)
    timed = sum(times[1:])
    dtypes = sorted({str(p.dtype).replace("torch.", "") for p in model.parameters() if not p.requires_grad})
    Path(spec["result"]).write_text(json.dumps({
        "trainable_parameters": trainable, "total_parameters": sum(p.numel() for p in model.parameters()),
        "backend": model.transformer.backend, "frozen_dtypes": dtypes,
        "examples_per_s": round(batch * spec["steps"] / timed, 3), "step_s": [round(t, 2) for t in times],
        "peak_rss_after_load_mib": round(loaded_rss, 1),
    }))


def stsb_worker(spec: dict) -> None:
    """One STS-B run through embtune.train; writes the dev Spearman to spec['result']."""
    from embtune.models.bundled import bundled_model_path
    from embtune.training.loop import train
    from embtune.training.recipe import config_from_dict

    model = {"name": str(bundled_model_path()), "max_seq_length": 128}
    if spec["variant"] == "lora":
        model["adapter"] = {"kind": "lora", "r": 16, "alpha": 32, "dropout": 0.05}
    raw = {
        "model": model,
        "datasets": [{"name": "stsb", "path": str(STSB / "train.csv"), "max_rows": spec["rows"],
                      "columns": {"anchor": "sentence1", "positive": "sentence2", "label": "score"},
                      "loss": {"name": "cosent", "scale": 20.0}}],
        "eval": {"evaluators": [{"kind": "sts", "path": str(STSB / "dev.csv"), "name": "sts-dev",
                                 "columns": {"sentences1": "sentence1", "sentences2": "sentence2", "scores": "score"}}]},
        "args": {"output_dir": spec["out"], "overwrite_output_dir": True, "cache_dir": spec["cache"],
                 "learning_rate": spec["lr"], "warmup_ratio": 0.1, "num_train_epochs": 1,
                 "per_device_train_batch_size": 32, "bf16": False, "seed": 42, "logging_steps": 20,
                 "save_strategy": "no", "disable_tqdm": True},
    }
    started = time.perf_counter()
    result = train(config_from_dict(raw))
    final = result.metrics["final"]
    key = next(k for k in final if k.endswith("spearman_cosine"))
    Path(spec["result"]).write_text(json.dumps({
        "spearman_dev": round(final[key], 5), "spearman_dev_base": round(result.metrics["base"][key], 5),
        "steps": result.metrics["global_step"], "train_s": round(time.perf_counter() - started, 1),
    }))


def run_child(kind: str, spec: dict, tmp: Path) -> dict:
    name = f"{kind}-{spec['variant']}"
    spec = {**spec, "result": str(tmp / f"{name}.json"), "out": str(tmp / name), "cache": str(tmp / "cache")}
    log = open(tmp / f"{name}.log", "w")  # noqa: SIM115 - closed below
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, __file__, f"--{kind}-worker", json.dumps(spec)], stdout=log, stderr=log,
                            env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    log.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{name} failed:\n{(tmp / f'{name}.log').read_text()[-3000:]}")
    result = json.loads(Path(spec["result"]).read_text())
    result["peak_rss_mib"] = round(usage.ru_maxrss / 1024, 1)
    print(f"  {name:<12} {json.dumps(result)}", flush=True)
    return result


def _run_plain(flag: str, spec: dict) -> None:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1"}
    subprocess.run([sys.executable, __file__, flag, json.dumps(spec)], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["shape", "stsb", "both"], default="both")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant on the bge-m3 shape")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--stsb-rows", type=int, default=None, help="use only the first rows of STS-B train")
    parser.add_argument("--fp32", action="store_true", help="shape part in fp32 (default: bf16 autocast)")
    parser.add_argument("--shape-worker")
    parser.add_argument("--build-worker")
    parser.add_argument("--stsb-worker")
    opts = parser.parse_args()
    if opts.shape_worker:
        return shape_worker(json.loads(opts.shape_worker))
    if opts.build_worker:
        return build_worker(json.loads(opts.build_worker))
    if opts.stsb_worker:
        return stsb_worker(json.loads(opts.stsb_worker))
    out: dict = {"load_average_before": os.getloadavg()}
    results_file = HERE / "results" / "lora.json"
    previous = json.loads(results_file.read_text()) if results_file.is_file() else {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        if opts.part in ("shape", "both"):
            precision = "fp32" if opts.fp32 else "bf16"
            print(f"bge-m3 shape, batch 16, seq {opts.seq_len}, gradient checkpointing, {precision}:")
            folder = tmp / "bge-m3-shape"
            _run_plain("--build-worker", {"folder": str(folder)})
            spec = {"batch": 16, "seq_len": opts.seq_len, "steps": opts.steps, "bf16": not opts.fp32,
                    "folder": str(folder)}
            runs = {v: run_child("shape", {**spec, "variant": v}, tmp) for v in ("full", "lora")}
            ratio = runs["lora"]["peak_rss_mib"] / runs["full"]["peak_rss_mib"]
            speed = runs["lora"]["examples_per_s"] / runs["full"]["examples_per_s"]
            print(f"  LoRA / full: peak RSS {ratio:.3f} (target <= 0.333), examples/s {speed:.2f}x")
            out["shape"] = {"settings": spec, "runs": runs, "rss_ratio_lora_over_full": round(ratio, 4),
                            "speed_ratio_lora_over_full": round(speed, 3)}
        if opts.part in ("stsb", "both"):
            if not (STSB / "train.csv").is_file():
                raise SystemExit(f"{STSB / 'train.csv'} not found; the stsb part needs ../shared/data/stsb")
            print("bundled all-MiniLM-L6-v2, CoSENT on STS-B train, one epoch, batch 32:")
            runs = {v: run_child("stsb", {"variant": v, "lr": lr, "rows": opts.stsb_rows}, tmp)
                    for v, lr in (("full", 2e-5), ("lora", 2e-4))}
            gap = runs["lora"]["spearman_dev"] - runs["full"]["spearman_dev"]
            print(f"  STS-B dev Spearman: full {runs['full']['spearman_dev']:.4f}  lora {runs['lora']['spearman_dev']:.4f}"
                  f"  gap {gap:+.4f} (target within 0.01)")
            out["stsb"] = {"rows": opts.stsb_rows or "all", "runs": runs, "gap_lora_minus_full": round(gap, 5)}
    out["load_average_after"] = os.getloadavg()
    results_file.parent.mkdir(exist_ok=True)
    results_file.write_text(json.dumps({**previous, **out}, indent=1) + "\n")
    print(f"wrote {results_file}")


if __name__ == "__main__":
    main()
