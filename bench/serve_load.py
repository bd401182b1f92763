"""Load test of `embtune serve` on loopback: dynamic batching vs one encode call per request.

    flock -x /tmp/cpu.lock .venv/bin/python bench/serve_load.py [--model bundled:all-MiniLM-L6-v2] [--quick]

Starts the server twice as a subprocess on 127.0.0.1 (default settings, then --no-batching), and for 1, 8 and
64 concurrent clients sends a fixed number of requests of 16 STS-B test sentences each (base64 encoding, as the
openai client asks for; ``--format float`` for JSON numbers, the API's default, e.g. from curl). Every client
is a thread with one keep-alive connection; the test stops by itself.
Prints throughput (texts/s) and p50/p99 latency per level and the batching/per-request throughput ratio, and
the ceiling of that ratio (a lone process encoding the same texts in 16- vs 1,024-text calls); writes
bench/results/serve_load.json. Targets: >= 3x at 64 clients, p99 < 1 s at 8 clients.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes

SHARED = HERE.parent.parent / "shared" / "data" / "stsb" / "test.csv"
LEVELS = {1: 40, 8: 160, 64: 512}  # concurrent clients -> requests sent


def load_texts() -> tuple[list[str], str]:
    if SHARED.is_file():
        with open(SHARED, encoding="utf-8") as fh:
            texts = [t for row in csv.DictReader(fh) for t in (row["sentence1"], row["sentence2"])]
        return texts, f"STS-B test ({SHARED})"
    rng = np.random.default_rng(0)
    words = "the a cat dog runs over under house city blue fast slow music plays people river".split()
    return [" ".join(rng.choice(words, size=int(rng.integers(4, 30)))) for _ in range(3000)], "generated"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, batching: bool) -> tuple[subprocess.Popen, int]:
    port = free_port()
    cmd = [sys.executable, "-m", "embtune", "serve", model, "--port", str(port), "--max-queue", "1024",
           *os.environ.get("SERVE_ARGS", "").split()]  # e.g. SERVE_ARGS="--max-wait-ms 2" to try settings
    if not batching:
        cmd.append("--no-batching")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_ready(proc, port)
    return proc, port


def wait_ready(proc: subprocess.Popen, port: int) -> None:
    """Poll /health until the server answers (exit with its stderr if it dies, or after 2 minutes)."""
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (graceful shutdown), then kill after a minute."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_level(port: int, clients: int, n_requests: int, bodies: list[bytes]) -> dict:
    """``clients`` threads share ``n_requests`` requests; latency per request, wall time overall."""
    lock = threading.Lock()
    state = {"next": 0}
    latencies: list[float] = []
    errors: list[str] = []

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = state["next"]
                state["next"] += 1
            if i >= n_requests:
                return
            start = time.perf_counter()
            conn.request("POST", "/v1/embeddings", body=bodies[i % len(bodies)],
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            payload = resp.read()
            elapsed = time.perf_counter() - start
            with lock:
                if resp.status != 200:
                    errors.append(f"{resp.status}: {payload[:200]!r}")
                latencies.append(elapsed)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = np.array(latencies)
    return {
        "clients": clients,
        "requests": n_requests,
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "seconds": round(wall, 3),
        "requests_per_s": round(n_requests / wall, 2),
        "texts_per_s": round(n_requests * TEXTS_PER_REQUEST / wall, 1),
        "p50_s": round(float(np.percentile(lat, 50)), 4),
        "p99_s": round(float(np.percentile(lat, 99)), 4),
    }


TEXTS_PER_REQUEST = 16


def bench_mode(model: str, batching: bool, bodies: list[bytes], levels: dict[int, int]) -> list[dict]:
    proc, port = start_server(model, batching)
    try:
        run_level(port, 4, 16, bodies)  # warm-up: kernels, the bf16 weight copy
        return [run_level(port, c, n, bodies) for c, n in levels.items()]
    finally:
        stop_server(proc)


CEILING_WORKER = """
import json, sys, time
from embtune import EmbeddingModel
texts = json.loads(sys.stdin.read())
model = EmbeddingModel.load(sys.argv[1])
model.encode(texts[:256], prompt="", convert_to="numpy")
out = {}
for chunk in (16, 1024):
    start = time.perf_counter()
    for i in range(0, 8192, chunk):
        model.encode([texts[(i + k) % len(texts)] for k in range(chunk)], prompt="", convert_to="numpy")
    out[str(chunk)] = round(8192 / (time.perf_counter() - start), 1)
print(json.dumps(out))
"""


def encode_ceiling(model: str, texts: list[str]) -> dict:
    """A lone process (no server) encoding the same texts in 16-text and 1,024-text calls: what a perfect
    batcher could gain over one call per request on this machine."""
    from embtune.utils.threads import configure_thread_env

    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    configure_thread_env(env)  # what the `embtune serve` process sets for itself
    proc = subprocess.run([sys.executable, "-c", CEILING_WORKER, model], input=json.dumps(texts), text=True,
                          capture_output=True, env=env, check=True)
    rates = json.loads(proc.stdout.strip().splitlines()[-1])
    return {"texts_per_s_16": rates["16"], "texts_per_s_1024": rates["1024"],
            "ratio": round(rates["1024"] / rates["16"], 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    parser.add_argument("--quick", action="store_true", help="a quarter of the requests (smoke run)")
    parser.add_argument("--format", choices=["base64", "float"], default="base64",
                        help="encoding_format of the requests (float: the OpenAI API's default, JSON numbers)")
    parser.add_argument("--output", default=None, help="default: bench/results/serve_load[_float].json")
    args = parser.parse_args()
    levels = {c: max(c, n // 4) for c, n in LEVELS.items()} if args.quick else LEVELS
    texts, source = load_texts()
    bodies = [
        json.dumps({"input": texts[i : i + TEXTS_PER_REQUEST], "encoding_format": args.format}).encode()
        for i in range(0, len(texts) - TEXTS_PER_REQUEST, TEXTS_PER_REQUEST)
    ]
    results = {}
    for name, batching in (("dynamic_batching", True), ("per_request", False)):
        results[name] = bench_mode(args.model, batching, bodies, levels)
        for row in results[name]:
            print(f"{name:>16}  clients={row['clients']:>2}  {row['texts_per_s']:>8.1f} texts/s  "
                  f"p50={row['p50_s'] * 1000:7.1f} ms  p99={row['p99_s'] * 1000:7.1f} ms  errors={row['errors']}",
                  flush=True)
    ratios = {
        str(b["clients"]): round(b["texts_per_s"] / p["texts_per_s"], 2)
        for b, p in zip(results["dynamic_batching"], results["per_request"], strict=True)
    }
    ceiling = encode_ceiling(args.model, texts)
    print(f"lone process, no server: {ceiling['texts_per_s_16']:.0f} texts/s in 16-text calls, "
          f"{ceiling['texts_per_s_1024']:.0f} in 1,024-text calls: a {ceiling['ratio']:.2f}x ceiling for batching")
    p99_8 = next(r["p99_s"] for r in results["dynamic_batching"] if r["clients"] == 8)
    print(f"throughput ratio batching / per-request by clients: {ratios}  (target >= 3x at 64)")
    print(f"p99 at 8 clients with batching: {p99_8 * 1000:.0f} ms  (target < 1000 ms)")
    out = {
        "command": "flock -x /tmp/cpu.lock python bench/serve_load.py" + (" --quick" if args.quick else ""),
        "model": args.model,
        "texts": source,
        "texts_per_request": TEXTS_PER_REQUEST,
        "encoding_format": args.format,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "results": results,
        "throughput_ratio_by_clients": ratios,
        "encode_ceiling_lone_process": ceiling,
        "targets": {"ratio_at_64_clients": ">= 3", "p99_at_8_clients_s": "< 1.0"},
        "met": {"ratio_at_64_clients": ratios["64"] >= 3.0, "p99_at_8_clients": p99_8 < 1.0},
    }
    if args.output is None:
        args.output = str(HERE / "results" / ("serve_load.json" if args.format == "base64" else "serve_load_float.json"))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
