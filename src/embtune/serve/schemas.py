"""Request bodies (pydantic) and error bodies of the server's two APIs: OpenAI and text-embeddings-inference."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, StrictBool, StrictInt, StrictStr


class EmbeddingsRequest(BaseModel):
    """OpenAI ``POST /v1/embeddings``. Token-id inputs (lists of ints) are not accepted."""

    model_config = ConfigDict(extra="ignore")

    input: StrictStr | list[StrictStr]
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: StrictInt | None = None
    user: StrictStr | None = None


class EmbedRequest(BaseModel):
    """text-embeddings-inference ``POST /embed``."""

    model_config = ConfigDict(extra="ignore")

    inputs: StrictStr | list[StrictStr]
    normalize: StrictBool = True
    truncate: StrictBool = False
    prompt_name: StrictStr | None = None
    dimensions: StrictInt | None = None


class ApiError(Exception):
    """An error the client caused (or a server state it should know about), with its HTTP status."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param


_OPENAI_TYPES = {401: "invalid_request_error", 429: "rate_limit_error", 503: "server_error", 500: "server_error"}
_TEI_TYPES = {400: "Validation", 401: "Unauthorized", 413: "Validation", 422: "Validation", 503: "Overloaded"}


def openai_error_body(err: ApiError) -> dict:
    """``{"error": {"message", "type", "param", "code"}}`` as the OpenAI API returns it."""
    kind = _OPENAI_TYPES.get(err.status, "invalid_request_error" if err.status < 500 else "server_error")
    return {"error": {"message": err.message, "type": kind, "param": err.param, "code": err.code}}


def tei_error_body(err: ApiError) -> dict:
    """``{"error", "error_type"}`` as text-embeddings-inference returns it."""
    return {"error": err.message, "error_type": _TEI_TYPES.get(err.status, "Backend")}


def validation_message(errors: list[dict]) -> tuple[str, str | None]:
    """The first pydantic error as one readable line, and the body field it is about."""
    if not errors:
        return "invalid request body", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return "the request body is not valid JSON", None
    field = loc[0] if loc else None
    where = ".".join(loc) or "body"
    if first.get("type") == "missing":
        return f"'{where}' is required", field
    return f"'{where}': {first.get('msg', 'invalid value')}", field
