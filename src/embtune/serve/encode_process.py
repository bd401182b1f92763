"""The model in a process of its own, so HTTP handling and encoding never wait for one interpreter lock.

In one process the event loop (parsing requests, counting tokens, writing responses) and the encode thread
take turns on the GIL, and embtune's encoder holds it between every one of its many small operations; on 2
cores the server encoded ~1,200 texts/s where a lone process does ~1,800. ``EncodeProcess`` starts a spawned
child that loads the model the same way and answers ``encode`` calls over a pipe (lists of texts, or of
(ids, type_ids, prompt tokens) the HTTP process already tokenized, in; float32 arrays out); the batcher's worker thread
blocks on the pipe without the GIL. The child is restarted when it dies (the requests of the batches in it get
a 500), and stopped when the server stops.

Calls may overlap (``concurrency`` = 2): a second call sends its batch while the first waits for its result,
so the child finds the next batch waiting when it finishes one, instead of idling while the parent answers
64 requests and collects the next ones. The child answers in the order it received; each caller waits for
its own turn to read.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from typing import Any

import numpy as np

from ..errors import EmbtuneError

logger = logging.getLogger(__name__)


class EncodeProcess:
    """``encode(texts) -> (N, D) float32`` answered by a child process holding its own copy of the model; the
    texts may also be (ids, type_ids, prompt tokens) items of ``serve.app._State.tokenize``.

    Args:
        load: keyword arguments of ``EmbeddingModel.load`` in the child (``name_or_path`` and the opt-ins).
        encode: keyword arguments of every ``model.encode`` call (precision, prompt, ...).
    """

    concurrency = 2  # calls in flight at once (see the module docstring)

    def __init__(self, load: dict[str, Any], encode: dict[str, Any]) -> None:
        self._context = multiprocessing.get_context("spawn")  # no fork of a process with threads and torch
        self._load, self._encode = dict(load), dict(encode)
        self._lock = threading.Lock()  # held while sending (and while restarting or closing)
        self._turns = threading.Condition()  # callers read their answers in the order they sent
        self._sent = self._read = self._generation = 0
        self._process: Any = None
        self._conn: Any = None
        self._start()

    def _start(self) -> None:
        parent, child = self._context.Pipe()
        self._process = self._context.Process(
            target=_child_main, args=(child, self._load, self._encode), name="embtune-encoder", daemon=True
        )
        self._process.start()
        child.close()
        self._conn = parent
        try:
            kind, value = parent.recv()
        except EOFError:
            kind, value = "error", f"exit code {self._process.exitcode}"
        if kind != "ready":
            self._process.join(5)
            raise EmbtuneError(f"the encoder process could not load the model ({value}); run `embtune encode` on "
                               "the same model to see the full error")

    def __call__(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            generation, ticket = self._generation, self._sent
            try:
                self._conn.send(texts)
            except OSError as exc:
                self._restart(generation, exc)
            self._sent += 1
        failure: BaseException | None = None
        with self._turns:  # never held while taking self._lock (the restart path takes them the other way round)
            self._turns.wait_for(lambda: self._read == ticket or self._generation != generation)
            if self._generation != generation:
                raise RuntimeError("the encoder process died and was restarted")
            try:
                kind, value = self._conn.recv()
            except (EOFError, OSError) as exc:
                failure = exc
            else:
                self._read += 1
                self._turns.notify_all()
        if failure is not None:
            with self._lock:
                self._restart(generation, failure)
        if kind == "ok":
            return value
        if kind == "embtune_error":
            raise EmbtuneError(value)
        raise RuntimeError(value)

    def _restart(self, generation: int, exc: BaseException) -> None:
        """Start a new child (once per death: later callers of the same generation only fail); always raises."""
        code = self._process.exitcode
        if generation == self._generation:
            logger.error("embtune: the encoder process died (exit code %s); restarting it", code)
            with self._turns:
                self._generation += 1
                self._sent = self._read = 0
                self._turns.notify_all()
            try:
                self._start()
            except EmbtuneError as failed:  # a server-side failure (500), not the client's request (400)
                raise RuntimeError(f"the encoder process died (exit code {code}): {failed}") from exc
        raise RuntimeError(f"the encoder process died (exit code {code}) and was restarted") from exc

    @property
    def pid(self) -> int | None:
        """The child's process id (for tests and logs)."""
        return self._process.pid if self._process is not None else None

    def close(self, timeout: float = 10.0) -> None:
        """Ask the child to exit after its current call; kill it if it does not within ``timeout``."""
        with self._lock:
            try:
                self._conn.send(None)
            except OSError:
                pass
            self._process.join(timeout)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(timeout)
            self._conn.close()


def encode_tokenized(model, items: list[tuple], precision: str) -> np.ndarray:
    """(ids, type_ids, prompt tokens) items (``serve.app._State.tokenize``) -> (N, D) float32, the rows
    ``encode`` gives."""
    from ..models.encode import encode_token_ids

    types = [item[1] for item in items] if items and items[0][1] is not None else None
    skip = [item[2] for item in items]
    return encode_token_ids(model, [item[0] for item in items], types, precision=precision,
                            prompt_length=skip if any(skip) else 0)


def _child_main(conn: Any, load: dict[str, Any], encode: dict[str, Any]) -> None:
    """The child: load, warm up, then answer until told to stop or the parent goes away."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from ..models.embedding_model import EmbeddingModel

        model = EmbeddingModel.load(**load)
        model.encode(["warm up"], **encode)
    except BaseException as exc:  # reported to the parent as one line; the parent raises it
        conn.send(("error", f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"))
        return
    conn.send(("ready", None))
    while True:
        try:
            texts = conn.recv()
        except (EOFError, OSError):  # the parent is gone
            return
        if texts is None:
            return
        try:
            if texts and not isinstance(texts[0], str):  # tokenized: (ids, type_ids, prompt tokens) items
                emb = encode_tokenized(model, texts, encode.get("precision", "auto"))
            else:
                emb = model.encode(texts, convert_to="numpy", **encode)
            conn.send(("ok", np.ascontiguousarray(emb, dtype=np.float32)))
        except EmbtuneError as exc:
            conn.send(("embtune_error", str(exc)))
        except Exception as exc:  # noqa: BLE001 - any failure of one call goes back to its requests
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
