"""Encode throughput: embtune vs sentence-transformers' backends, same model, same texts, same run; plus MFU.

    make bench                                     # creates .venv-bench (ST + ONNX + OpenVINO), runs this
    .venv-bench/bin/python bench/encode.py [--texts 3000] [--repeats 2] [--quick] [--out FILE]

Texts: STS-B train sentences from ../shared/data/stsb when present (else a generated set, reported as such).
Rows (texts/s, each with its min cosine to ST torch fp32 at batch 32):
- embtune default (bf16 on AMX/AVX512-bf16 CPUs; its default batching: up to 4,096 padded tokens per forward),
  embtune int8 (``precision="int8"``), embtune fp32 (the same batching);
- ST torch fp32 batch 32 (ST's default), ST torch bf16 (autocast, best of batch 32/128);
- ST + ONNX fp32 and ONNX dynamic int8 (``export_dynamic_quantized_onnx_model``, avx512_vnni), ST + OpenVINO
  (its default precision: bf16 on AMX CPUs), each the best of batch 32/128. Backends that are not installed are
  reported as skipped (run under .venv-bench).
MFU: FLOPs counted from the model's shapes and the real (unpadded) token counts, over the bf16 / int8 matmul
peak measured in this run by bench/_peak.py (the higher of a probe before and one after the rows). Writes bench/results/encode.json. Run under
``flock -x /tmp/cpu.lock`` on a shared machine.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes

SHARED = HERE.parent.parent / "shared" / "data" / "stsb" / "train.csv"
from _peak import encoder_flops_per_token, measure_peaks  # noqa: E402

TARGETS = {"bf16_vs_best_st": 1.5, "bf16_min_cosine": 0.999, "bf16_mfu": 0.60,
           "int8_vs_best_st": 2.5, "int8_min_cosine": 0.99}


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


def timed(fn, repeats: int) -> tuple[float, np.ndarray]:
    """Best wall time of ``repeats`` calls after one warm-up call, and the warm-up's output."""
    out = np.asarray(fn())
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def min_cosine(a: np.ndarray, ref: np.ndarray) -> float:
    a, ref = np.asarray(a, dtype=np.float64), np.asarray(ref, dtype=np.float64)
    return float(((a * ref).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(ref, axis=1)).min())


def model_flops(folder: Path, token_counts: np.ndarray) -> float:
    """Forward FLOPs of the whole input: per-token projections + FFN and per-sequence attention products."""
    cfg = json.loads((folder / "config.json").read_text())
    layers, hidden, inter = cfg["num_hidden_layers"], cfg["hidden_size"], cfg["intermediate_size"]
    lengths = token_counts.astype(np.float64)
    return float(sum(encoder_flops_per_token(layers, hidden, inter, n) * n for n in lengths))


class Bench:
    """Runs each encoder, keeps texts/s and min cosine to the reference, best over the batch sizes tried."""

    def __init__(self, texts: list[str], repeats: int) -> None:
        self.texts, self.repeats = texts, repeats
        self.ref: np.ndarray | None = None
        self.rows: dict[str, dict] = {}

    def run(self, name: str, fn_for_batch, batches=(32, 128)) -> None:
        best = None
        for bs in batches:
            seconds, out = timed(lambda bs=bs: fn_for_batch(bs), self.repeats)
            if self.ref is None:
                self.ref = out
            row = {"texts_per_s": round(len(self.texts) / seconds, 1), "batch_size": bs, "seconds": round(seconds, 3),
                   "min_cosine_to_st_fp32": round(min_cosine(out, self.ref), 6)}
            if best is None or row["texts_per_s"] > best["texts_per_s"]:
                best = row
        self.rows[name] = best
        print(f"{name:>24}: {best['texts_per_s']:8.1f} texts/s  batch {best['batch_size']!s:>4}  "
              f"min cos {best['min_cosine_to_st_fp32']:.5f}", flush=True)

    def skip(self, name: str, reason: str) -> None:
        self.rows[name] = {"skipped": reason}
        print(f"{name:>24}: skipped ({reason})", flush=True)


def st_backends(bench: Bench, path: Path, texts: list[str]) -> None:
    """ST's ONNX (fp32, dynamic int8) and OpenVINO backends, when installed."""
    from sentence_transformers import SentenceTransformer

    from embtune.utils.device import _cpu_flags

    work = Path(tempfile.mkdtemp(prefix="embtune-bench-"))
    try:
        folder = work / "model"
        shutil.copytree(path, folder)  # exports write next to the model: work on a copy
        try:
            onnx = SentenceTransformer(str(folder), device="cpu", backend="onnx")
            bench.run("st_onnx_fp32", lambda bs: onnx.encode(texts, batch_size=bs))
        except Exception as exc:  # backend extra missing or export failed: report, keep going
            bench.skip("st_onnx_fp32", f"{type(exc).__name__}: {str(exc)[:120]}")
        try:
            onnx.save(str(folder))  # keeps onnx/model.onnx for the quantized export
            from sentence_transformers import export_dynamic_quantized_onnx_model

            # the quantization config for this CPU (avx512_vnni where it has VNNI, else avx2)
            config = "avx512_vnni" if "avx512_vnni" in _cpu_flags() else "avx2"
            export_dynamic_quantized_onnx_model(onnx, config, str(folder))
            q = SentenceTransformer(str(folder), device="cpu", backend="onnx",
                                    model_kwargs={"file_name": f"onnx/model_qint8_{config}.onnx"})
            bench.run("st_onnx_int8_dynamic", lambda bs: q.encode(texts, batch_size=bs))
        except Exception as exc:
            bench.skip("st_onnx_int8_dynamic", f"{type(exc).__name__}: {str(exc)[:120]}")
        try:
            ov = SentenceTransformer(str(folder), device="cpu", backend="openvino")
            bench.run("st_openvino", lambda bs: ov.encode(texts, batch_size=bs))
        except Exception as exc:
            bench.skip("st_openvino", f"{type(exc).__name__}: {str(exc)[:120]}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:  # noqa: C901 - one flat sequence of measurements
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="500 texts, 1 repeat, no ST backends (smoke run)")
    parser.add_argument("--out", help="results file (default bench/results/encode.json, encode_quick.json)")
    args = parser.parse_args()
    if args.quick:
        args.texts, args.repeats = 500, 1
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from sentence_transformers import SentenceTransformer

    from embtune import EmbeddingModel
    from embtune.models.bundled import bundled_model_path
    from embtune.utils.device import fast_bf16

    texts, source = load_texts(args.texts)
    path = bundled_model_path()
    ours = EmbeddingModel.load(path)
    theirs = SentenceTransformer(str(path), device="cpu")
    peaks = measure_peaks()
    print(f"peak: bf16 {peaks['bf16_gflops']:.0f} GFLOP/s, int8 {peaks['int8_gops']:.0f} GOP/s, "
          f"fp32 {peaks['fp32_gflops']:.0f} GFLOP/s ({peaks['threads']} threads)", flush=True)

    bench = Bench(texts, args.repeats)
    bench.run("st_torch_fp32_bs32", lambda bs: theirs.encode(texts, batch_size=bs), batches=(32,))

    def st_bf16(bs: int):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return theirs.encode(texts, batch_size=bs)

    if fast_bf16("cpu"):
        bench.run("st_torch_bf16", st_bf16)
    else:  # emulated bf16 is several times slower than fp32: nobody runs it
        bench.skip("st_torch_bf16", "this CPU has no native bf16 (AVX512-BF16 / AMX)")
    if not args.quick:
        st_backends(bench, path, texts)
    bench.run("embtune_default", lambda bs: ours.encode(texts, show_progress_bar=False), batches=("auto",))
    bench.run("embtune_int8", lambda bs: ours.encode(texts, precision="int8", show_progress_bar=False), batches=("auto",))
    bench.run("embtune_fp32", lambda bs: ours.encode(texts, precision="fp32", show_progress_bar=False), batches=("auto",))
    # the host's speed drifts within minutes: probe again after the rows and keep the higher reading of each,
    # so a probe that ran in a slow moment does not inflate the MFU
    readings = [peaks, measure_peaks()]
    peaks = {k: max(r[k] for r in readings) for k in peaks} | {"readings": readings}
    print(f"peak (higher of two probes): bf16 {peaks['bf16_gflops']:.0f} GFLOP/s, int8 {peaks['int8_gops']:.0f} GOP/s",
          flush=True)

    tokens = np.array([len(x) for x in ours.transformer.token_ids(texts)[0]])
    flops = model_flops(Path(path), tokens)
    st_rows = {k: v for k, v in bench.rows.items() if k.startswith("st_") and "texts_per_s" in v}
    best_st_name = max(st_rows, key=lambda k: st_rows[k]["texts_per_s"])
    best_st = st_rows[best_st_name]["texts_per_s"]
    mfu = {}
    for name, row in bench.rows.items():
        if "seconds" in row:
            achieved = flops / row["seconds"] / 1e9
            # embtune's default and OpenVINO's run bf16 on CPUs with native bf16, fp32 elsewhere
            fp32 = "fp32" in name or (name in ("embtune_default", "st_openvino") and not fast_bf16("cpu"))
            peak = peaks["int8_gops"] if "int8" in name else peaks["fp32_gflops" if fp32 else "bf16_gflops"]
            row["achieved_gflops"] = round(achieved, 1)
            mfu[name] = row["mfu"] = round(achieved / peak, 3)
    d, q = bench.rows["embtune_default"], bench.rows["embtune_int8"]
    result = {
        "texts": len(texts),
        "source": source,
        "real_tokens": int(tokens.sum()),
        "mean_tokens": round(float(tokens.mean()), 1),
        "forward_gflop": round(flops / 1e9, 2),
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "versions": {"torch": torch.__version__, "sentence_transformers": __import__("sentence_transformers").__version__},
        "peaks": peaks,
        "rows": bench.rows,
        "best_st": best_st_name,
        "bf16_vs_best_st": round(d["texts_per_s"] / best_st, 2),
        "int8_vs_best_st": round(q["texts_per_s"] / best_st, 2),
        "bf16_mfu": d["mfu"],
        "int8_mfu": q["mfu"],
        "targets": TARGETS,
    }
    result["met"] = {
        "bf16_vs_best_st": result["bf16_vs_best_st"] >= TARGETS["bf16_vs_best_st"],
        "bf16_min_cosine": d["min_cosine_to_st_fp32"] >= TARGETS["bf16_min_cosine"],
        "bf16_mfu": d["mfu"] >= TARGETS["bf16_mfu"],
        "int8_vs_best_st": result["int8_vs_best_st"] >= TARGETS["int8_vs_best_st"],
        "int8_min_cosine": q["min_cosine_to_st_fp32"] >= TARGETS["int8_min_cosine"],
    }
    print(f"best ST backend: {best_st_name} {best_st:.1f} texts/s")
    default = "bf16" if fast_bf16("cpu") else "fp32 (no native bf16 here)"
    print(f"embtune default {default} / best ST: {result['bf16_vs_best_st']}x (target >= 1.5), MFU {d['mfu']:.1%} of "
          f"the {default[:4]} peak "
          f"(target >= 60%)")
    print(f"embtune int8 / best ST: {result['int8_vs_best_st']}x (target >= 2.5), MFU {q['mfu']:.1%} of int8 peak")
    print("targets met: " + ", ".join(f"{k}={v}" for k, v in result["met"].items()))
    out = Path(args.out) if args.out else HERE / "results" / ("encode_quick.json" if args.quick else "encode.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
