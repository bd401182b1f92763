"""`embtune serve` as a process: starts, answers, survives a client that disconnects, shuts down gracefully."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not become healthy")


def embed(url: str, texts, key="k") -> tuple[int, dict]:
    req = urllib.request.Request(url + "/v1/embeddings", data=json.dumps({"input": texts}).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


@pytest.mark.slow
def test_cli_serve_disconnects_and_graceful_shutdown(tiny_bert_dir, tmp_path):
    from embtune.models.embedding_model import EmbeddingModel

    folder = EmbeddingModel.from_transformer(tiny_bert_dir).save(tmp_path / "model")
    port = free_port()
    env = {**os.environ, "EMBTUNE_API_KEY": "k", "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "embtune", "serve", str(folder), "--port", str(port), "--max-wait-ms", "700",
         "--precision", "fp32"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        # a client that sends half a request and one that leaves before its answer
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Length: 100\r\n\r\n{")
        with socket.create_connection(("127.0.0.1", port)) as s:
            body = b'{"input": ["a dog"]}'
            s.sendall(b"POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Type: "
                      b"application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert embed(url, ["a cat"])[0] == 200
        # a request waiting in the batcher (max wait 0.7 s) when SIGTERM arrives still gets its answer
        result = {}
        worker = threading.Thread(target=lambda: result.update(out=embed(url, ["the cat sits"])))
        worker.start()
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        worker.join(30)
        assert result["out"][0] == 200 and len(result["out"][1]["data"][0]["embedding"]) == 32
        # uvicorn re-raises the signal after its graceful shutdown, so the exit status reads as SIGTERM
        assert proc.wait(30) in (0, -signal.SIGTERM)
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
