"""CPU that `embtune serve`'s HTTP process spends per request, with an instant encoder (no model compute).

    flock -x /tmp/cpu.lock .venv/bin/python bench/serve_overhead.py [--requests 2048]

On a 2-core machine every millisecond of CPU the HTTP process spends (parsing, validation, tokenizing for
limits and `usage`, base64/JSON, writing the response) is taken from the encoder process next to it, so this
is the cost to keep small. The server runs as a subprocess with the real app and tokenizer but an encoder
that returns fixed rows at once; 64 client threads (one keep-alive connection each) send 16 STS-B sentences
per request. CPU time is read from /proc for the server process (all its threads), so the figure depends
little on how busy the host is; requests/s is printed too. Writes bench/results/serve_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import _tree  # noqa: E402, F401 - the working tree's embtune, here and in child processes
from serve_load import TEXTS_PER_REQUEST, free_port, load_texts, run_level, stop_server, wait_ready  # noqa: E402

SERVER = """
import sys
import numpy as np
import uvicorn
from embtune import EmbeddingModel
from embtune.serve import app as serve_app

model = EmbeddingModel.load(sys.argv[1])
rows = np.random.default_rng(0).standard_normal((4096, model.embedding_dim)).astype(np.float32)
serve_app.encode_tokenized = lambda model, items, precision: rows[: len(items)]  # the instant encoder
model.encode = lambda texts, **options: rows[: len(texts)]  # the same, for servers that pass texts
app = serve_app.create_app(model, serve_app.ServeConfig(encode_process=False, max_queue=4096))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime, all threads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    parser.add_argument("--requests", type=int, default=2048)
    parser.add_argument("--output", default=str(HERE / "results" / "serve_overhead.json"))
    args = parser.parse_args()
    texts, source = load_texts()
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", SERVER, args.model, str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    results = {}
    try:
        wait_ready(proc, port)
        for fmt in ("base64", "float"):
            bodies = [json.dumps({"input": texts[i : i + TEXTS_PER_REQUEST], "encoding_format": fmt}).encode()
                      for i in range(0, len(texts) - TEXTS_PER_REQUEST, TEXTS_PER_REQUEST)]
            run_level(port, 8, 256, bodies)  # warm-up
            before = cpu_seconds(proc.pid)
            row = run_level(port, 64, args.requests, bodies)
            spent = cpu_seconds(proc.pid) - before
            results[fmt] = {"requests": args.requests, "errors": row["errors"], "requests_per_s": row["requests_per_s"],
                            "server_cpu_ms_per_request": round(spent / args.requests * 1000, 3)}
            print(f"{fmt:>6}: {results[fmt]['server_cpu_ms_per_request']:.2f} ms of HTTP-process CPU per request, "
                  f"{row['requests_per_s']:.0f} requests/s, errors={row['errors']}", flush=True)
    finally:
        stop_server(proc)
    out = {
        "command": "flock -x /tmp/cpu.lock python bench/serve_overhead.py",
        "model": args.model,
        "texts": source,
        "texts_per_request": TEXTS_PER_REQUEST,
        "clients": 64,
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
