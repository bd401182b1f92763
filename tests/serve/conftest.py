"""A real uvicorn server on 127.0.0.1 in a background thread, serving the tiny model."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed (pip install 'embtune[serve]')")
pytest.importorskip("uvicorn")

from embtune.models.embedding_model import EmbeddingModel  # noqa: E402
from embtune.serve import ServeConfig, create_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(model, **settings) -> Iterator[str]:
    """Start the app on a free port; yield its base URL; stop it (graceful shutdown) afterwards."""
    import uvicorn

    config = ServeConfig(**{"port": free_port(), "precision": "fp32", **settings})
    app = create_app(model, config)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=config.port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(20)


@pytest.fixture(scope="session")
def serve_model(tiny_bert_dir: Path) -> EmbeddingModel:
    return EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True)


@pytest.fixture(scope="module")
def server(serve_model) -> Iterator[str]:
    with running(serve_model, api_key="secret-key", max_inputs=64, max_input_chars=2000) as url:
        yield url


@pytest.fixture(scope="session")
def start_server():
    """``running`` as a fixture, for tests that start a server with their own settings."""
    return running
