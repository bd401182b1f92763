"""The FastAPI app: OpenAI ``/v1/embeddings``, TEI ``/embed``, ``/health``, ``/v1/models``, ``/metrics``.

Every request is validated and tokenized (for limits and ``usage``) in the event loop, then queued to the
DynamicBatcher, whose worker thread runs ``model.encode``; with ``encode_process`` the model runs in a child
process instead and two worker threads keep two batches in it. Nothing a client sends reaches the file
system: the model is fixed at start-up and ``model`` in a request body is only echoed back.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from ..errors import EmbtuneError
from .batcher import DynamicBatcher, Overloaded, ShuttingDown
from .encode_process import EncodeProcess, encode_tokenized
from .metrics import Metrics
from .schemas import (
    ApiError,
    EmbeddingsRequest,
    EmbedRequest,
    openai_error_body,
    tei_error_body,
    validation_message,
)

logger = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """Server settings; every default in one place (the CLI flags mirror them)."""

    host: str = "127.0.0.1"
    port: int = 8080
    api_key: str | None = None  # also read from EMBTUNE_API_KEY by the CLI
    model_name: str | None = None  # the id /v1/models reports; default: the model argument
    precision: str = "auto"
    batching: bool = True  # False: one encode call per request (the load test's baseline)
    encode_process: bool = False  # True: the model runs in a child process (serve.encode_process); the CLI's default
    max_batch_tokens: int = 16384
    max_wait_ms: float = 5.0  # how long a request may wait for others while an encode call runs (idle: none)
    max_queue: int = 256  # requests waiting; more get 503
    max_inputs: int = 2048  # texts per request (OpenAI's limit)
    max_input_chars: int = 100_000  # characters per text
    max_body_bytes: int = 16 * 1024 * 1024
    graceful_timeout_s: float = 30.0


def _untruncated_counts(model, texts: list[str]) -> list[int]:
    """Token counts per text before truncation, special tokens included (only for /embed's 413 message)."""
    return [len(ids) for ids in model.tokenizer(model.transformer.preprocess(texts), truncation=False)["input_ids"]]


def _check_texts(raw: str | list[str], field: str, config: ServeConfig) -> list[str]:
    texts = [raw] if isinstance(raw, str) else list(raw)
    if not texts:
        raise ApiError(400, f"'{field}' is empty; send a string or a non-empty list of strings", param=field)
    if len(texts) > config.max_inputs:
        raise ApiError(413, f"'{field}' has {len(texts)} texts; at most {config.max_inputs} per request", param=field)
    for i, text in enumerate(texts):
        if not text:
            raise ApiError(400, f"'{field}[{i}]' is an empty string; remove it or send text", param=field)
        if len(text) > config.max_input_chars:
            raise ApiError(
                413, f"'{field}[{i}]' has {len(text)} characters; at most {config.max_input_chars} per text", param=field
            )
    return texts


def _check_dimensions(dimensions: int | None, full: int) -> None:
    if dimensions is not None and not 0 < dimensions <= full:
        raise ApiError(400, f"'dimensions' must be between 1 and {full}, got {dimensions}", param="dimensions")


def _truncate(emb: np.ndarray, dimensions: int | None, normalize: bool) -> np.ndarray:
    if dimensions is not None:
        emb = emb[:, :dimensions]
    if normalize:
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        emb = emb / np.maximum(norms, 1e-12)
    return np.ascontiguousarray(emb, dtype=np.float32)


def json_response(payload):
    """A JSON response whose numpy float32 arrays are written by orjson (the serve extra) in one pass: FastAPI's
    default encoder walks every float of a returned dict in Python (~10x slower for 16 x 384 floats, CPU that
    the HTTP process takes from the encoder). Each float32 is written as its shortest round-trip decimal, so a
    client that parses it back to float32 gets the exact value. Without orjson: the standard json module."""
    from fastapi.responses import Response

    try:
        import orjson
    except ImportError:  # json calls default() for every value it cannot write: here the numpy arrays
        body = json.dumps(payload, separators=(",", ":"), default=np.ndarray.tolist).encode()
    else:
        body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(content=body, media_type="application/json")


class _State:
    """What the routes share: the model, config, batcher and metrics."""

    def __init__(self, model, config: ServeConfig, load: dict | None = None) -> None:
        self.model, self.config = model, config
        self.metrics = Metrics()
        self.closing = False
        self.name = config.model_name or (model.source or "embtune-model")
        self.created = int(time.time())
        self._prompt_tokens: dict[str, int] = {}  # prompt -> its token count (see tokenize)
        self.encoder = None
        if config.encode_process:
            self.encoder = EncodeProcess(load or {"name_or_path": model.source}, {"prompt": "", "precision": config.precision})
        self.batcher = DynamicBatcher(
            self.encoder or (lambda items: encode_tokenized(model, items, config.precision)),
            max_batch_tokens=config.max_batch_tokens,
            max_wait_s=config.max_wait_ms / 1000.0,
            max_queue=config.max_queue,
            batching=config.batching,
            on_batch=self.metrics.batch,
            workers=self.encoder.concurrency if self.encoder is not None else 1,
        )

    def tokenize(self, texts: list[str], prompt: str) -> tuple[list[tuple], int]:
        """Texts (``prompt`` already prepended) -> ((ids, type_ids, prompt tokens) per text, truncated as the
        model truncates, with special tokens; the number of texts that were truncated). Tokenized once, here:
        the encoder takes the ids. The prompt tokens are what a pooling with ``include_prompt: false`` leaves
        out (0 otherwise); requests with different prompts can share a batch."""
        ids, types, truncated = self.model.transformer.token_ids(texts)
        skip = 0
        if prompt and not self.model.pooling.include_prompt:
            if prompt not in self._prompt_tokens:
                from ..models.encode import _prompt_length

                self._prompt_tokens[prompt] = _prompt_length(self.model, prompt)
            skip = self._prompt_tokens[prompt]
        types = types if types is not None else [None] * len(ids)
        return [(i, t, skip) for i, t in zip(ids, types, strict=True)], truncated

    async def embed(self, items: list[tuple]) -> np.ndarray:
        """Queue tokenized texts (``tokenize``); the (N, D) embeddings."""
        import asyncio

        try:
            future = self.batcher.submit(items, sum(len(item[0]) for item in items))
        except Overloaded as exc:
            raise ApiError(503, f"server overloaded ({exc}); retry shortly", code="overloaded") from None
        except ShuttingDown:
            raise ApiError(503, "the server is shutting down; retry on another instance", code="shutting_down") from None
        try:
            emb = await asyncio.wrap_future(future)
        except EmbtuneError as exc:
            raise ApiError(400, str(exc)) from None
        return emb


def _authorized(state: _State, header: str | None) -> bool:
    key = state.config.api_key
    if not key:
        return True
    scheme, _, token = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), key.encode())


class _Guard:
    """ASGI middleware in front of every route: the API key, the declared body size, and /metrics counts of the
    answered requests (errors are counted where they are made). A plain ASGI class, not ``@app.middleware``:
    Starlette's BaseHTTPMiddleware runs each request through an extra task group and memory stream, ~0.7 ms
    of the HTTP process's CPU per request, which the encoder process on the same cores pays for."""

    def __init__(self, app, state: _State, error_response) -> None:
        self.app, self.state, self.error_response = app, state, error_response

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, config = scope["path"], self.state.config
        headers = dict(scope["headers"])  # lower-case byte names (ASGI)
        error = None
        auth = headers.get(b"authorization")
        if path != "/health" and not _authorized(self.state, auth.decode("latin-1") if auth is not None else None):
            error = ApiError(401, "invalid or missing API key (send 'Authorization: Bearer KEY')", code="invalid_api_key")
        size = headers.get(b"content-length")
        if error is None and size is not None and (not size.isdigit() or int(size) > config.max_body_bytes):
            error = ApiError(413, f"request body larger than {config.max_body_bytes} bytes")
        if error is not None:
            await self.error_response(path, error)(scope, receive, send)
            return
        status = 0

        async def send_counted(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, send_counted)
        if 0 < status < 400:
            self.state.metrics.request(path, status)


def create_app(model, config: ServeConfig | None = None, load: dict | None = None):
    """The FastAPI application serving ``model`` (an EmbeddingModel).

    With ``config.encode_process`` the encoding runs in a child process that loads the model with
    ``EmbeddingModel.load(**load)`` (default: ``model.source``); ``model`` itself then only counts tokens.
    """
    try:
        from fastapi import FastAPI, Request
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import JSONResponse
        from starlette.exceptions import HTTPException
    except ImportError:
        raise EmbtuneError("embtune serve needs the serve extra; install it with: pip install 'embtune[serve]'") from None

    config = config or ServeConfig()
    state = _State(model, config, load)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        state.closing = True  # uvicorn has finished in-flight requests; stop the worker after its queue
        state.batcher.close(config.graceful_timeout_s)
        if state.encoder is not None:
            state.encoder.close()

    app = FastAPI(title="embtune", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.embtune = state

    def error_response(path: str, err: ApiError) -> JSONResponse:
        body = tei_error_body(err) if path == "/embed" else openai_error_body(err)
        headers = {"Retry-After": "1"} if err.status == 503 else None
        if err.status == 401:
            headers = {"WWW-Authenticate": "Bearer"}
        state.metrics.request(path, err.status)
        return JSONResponse(body, status_code=err.status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError):
        return error_response(request.url.path, err)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        message, field = validation_message(list(exc.errors()))
        if field in ("input", "inputs") and "required" not in message:
            message = f"'{field}' must be a string or a list of strings (token ids are not accepted)"
        return error_response(request.url.path, ApiError(400, message, param=field))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        return error_response(request.url.path, ApiError(exc.status_code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        logger.exception("error while serving %s", request.url.path)
        return error_response(request.url.path, ApiError(500, f"internal error: {type(exc).__name__}"))

    app.add_middleware(_Guard, state=state, error_response=error_response)
    _add_routes(app, state)
    return app


def _add_routes(app, state: _State) -> None:
    from fastapi.responses import JSONResponse, PlainTextResponse

    model, config = state.model, state.config

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingsRequest):
        texts = _check_texts(body.input, "input", config)
        _check_dimensions(body.dimensions, model.embedding_dim)
        prompt = model.resolve_prompt()
        texts = [prompt + t for t in texts] if prompt else texts
        items, _ = state.tokenize(texts, prompt)
        emb = await state.embed(items)
        emb = _truncate(emb, body.dimensions, normalize=body.dimensions is not None and model.normalizes)
        if body.encoding_format == "base64":
            rows = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in emb]
        else:
            rows = list(emb)  # float32 rows: json_response writes them without a Python float per value
        used = sum(len(item[0]) for item in items)
        return json_response({
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
            "model": body.model or state.name,
            "usage": {"prompt_tokens": used, "total_tokens": used},
        })

    @app.post("/embed")
    async def embed(body: EmbedRequest):
        texts = _check_texts(body.inputs, "inputs", config)
        _check_dimensions(body.dimensions, model.embedding_dim)
        try:
            prompt = model.resolve_prompt(prompt_name=body.prompt_name)
        except EmbtuneError as exc:
            raise ApiError(400, str(exc), param="prompt_name") from None
        texts = [prompt + t for t in texts] if prompt else texts
        items, truncated = state.tokenize(texts, prompt)
        if truncated and not body.truncate:
            raise ApiError(413, f"an input has {max(_untruncated_counts(model, texts))} tokens; at most {model.max_seq_length} "
                                "(send \"truncate\": true to cut longer inputs)")
        emb = await state.embed(items)
        return json_response(_truncate(emb, body.dimensions, body.normalize))

    @app.get("/health")
    async def health():
        if state.closing:
            return JSONResponse({"status": "shutting down"}, status_code=503)
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        card = {"id": state.name, "object": "model", "created": state.created, "owned_by": "embtune"}
        return {"object": "list", "data": [card]}

    @app.get("/metrics")
    async def metrics():
        return PlainTextResponse(state.metrics.render(state.batcher.depth), media_type="text/plain; version=0.0.4")


def serve(model, config: ServeConfig | None = None, load: dict | None = None) -> None:
    """Run the server in the foreground until SIGINT/SIGTERM; in-flight requests finish first."""
    try:
        import uvicorn
    except ImportError:
        raise EmbtuneError("embtune serve needs the serve extra; install it with: pip install 'embtune[serve]'") from None
    config = config or ServeConfig()
    app = create_app(model, config, load)
    print(f"embtune: serving {app.state.embtune.name} on http://{config.host}:{config.port} "
          "(POST /v1/embeddings, POST /embed, GET /health, /v1/models, /metrics)", flush=True)
    uvicorn.run(app, host=config.host, port=config.port, log_level=os.environ.get("EMBTUNE_LOG_LEVEL", "warning"),
                timeout_graceful_shutdown=int(config.graceful_timeout_s))
