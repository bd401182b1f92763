"""The server with the real OpenAI client, raw HTTP for bad requests, TEI /embed, health, models, metrics."""

from __future__ import annotations

import json
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

openai = pytest.importorskip("openai")

TEXTS = ["the cat sits on the red house", "a dog", "people play music in the city at night", "x"]


def post(url: str, body, key: str | None = "secret-key", raw: bytes | None = None, headers: dict | None = None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})})
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def get(url: str, key: str | None = "secret-key"):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def client(url: str, key: str = "secret-key"):
    return openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0, timeout=30)


def assert_openai_error(status: int, body: dict, expected: int) -> str:
    assert status == expected, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    return body["error"]["message"]


@pytest.mark.parametrize("encoding_format", ["float", "base64"])
def test_openai_client_embeddings_equal_encode(server, serve_model, encoding_format):
    result = client(server).embeddings.create(model="tiny", input=TEXTS, encoding_format=encoding_format)
    if encoding_format == "base64":  # the client hands back the string when base64 is asked for explicitly
        import base64

        got = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in result.data])
    else:
        got = np.array([d.embedding for d in result.data], dtype=np.float32)
    np.testing.assert_allclose(got, serve_model.encode(TEXTS, precision="fp32"), atol=1e-6)
    assert [d.index for d in result.data] == list(range(len(TEXTS)))
    expected_tokens = sum(len(ids) for ids in serve_model.transformer.token_ids(TEXTS)[0])
    assert result.usage.prompt_tokens == expected_tokens == result.usage.total_tokens
    assert result.model == "tiny"


def test_client_default_encoding(server, serve_model):
    """The openai client asks for base64 by default and decodes it itself."""
    result = client(server).embeddings.create(model="tiny", input=TEXTS)
    got = np.array([d.embedding for d in result.data], dtype=np.float32)
    np.testing.assert_allclose(got, serve_model.encode(TEXTS, precision="fp32"), atol=1e-6)


def test_single_string_and_dimensions(server, serve_model):
    result = client(server).embeddings.create(model="tiny", input="a dog", dimensions=8, encoding_format="float")
    got = np.array(result.data[0].embedding)
    ref = serve_model.encode(["a dog"], precision="fp32", truncate_dim=8, normalize=True)[0]
    assert got.shape == (8,)
    np.testing.assert_allclose(got, ref, atol=1e-6)


def test_concurrent_requests_are_batched_and_each_gets_its_own_rows(server, serve_model):
    texts = [f"the {w} is big" for w in ("cat", "dog", "bird", "fish", "car", "bus", "train", "plane")] * 4
    c = client(server)
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda t: c.embeddings.create(model="m", input=[t], encoding_format="float"), texts))
    got = np.array([r.data[0].embedding for r in results], dtype=np.float32)
    np.testing.assert_allclose(got, serve_model.encode(texts, precision="fp32"), atol=1e-6)
    status, metrics = get(server + "/metrics")
    assert status == 200 and "embtune_batch_texts_count" in metrics
    count = float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("embtune_batch_texts_count")))
    texts_total = float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("embtune_texts_total")))
    assert count < texts_total  # fewer encode calls than texts: requests were merged


def test_wrong_or_missing_api_key(server):
    with pytest.raises(openai.AuthenticationError):
        client(server, key="wrong").embeddings.create(model="m", input="a")
    status, body = post(server + "/v1/embeddings", {"input": "a"}, key=None)
    assert "API key" in assert_openai_error(status, body, 401)
    assert get(server + "/health", key=None)[0] == 200  # health needs no key


@pytest.mark.parametrize(
    ("body", "raw", "needle"),
    [
        (None, b"{not json", "not valid JSON"),
        ({"model": "m"}, None, "'input' is required"),
        ({"input": [1, 2, 3]}, None, "token ids are not accepted"),
        ({"input": []}, None, "is empty"),
        ({"input": ["ok", ""]}, None, "'input[1]' is an empty string"),
        ({"input": "a", "encoding_format": "int8"}, None, "encoding_format"),
        ({"input": "a", "dimensions": 0}, None, "between 1 and 32"),
        ({"input": "a", "dimensions": "8"}, None, "dimensions"),
    ],
)
def test_malformed_bodies_are_400_in_openai_shape(server, body, raw, needle):
    status, out = post(server + "/v1/embeddings", body, raw=raw)
    assert needle in assert_openai_error(status, out, 400)


def test_oversize_inputs_are_413(server):
    status, out = post(server + "/v1/embeddings", {"input": ["a"] * 65})
    assert "at most 64" in assert_openai_error(status, out, 413)
    status, out = post(server + "/v1/embeddings", {"input": "a" * 2001})
    assert "2001 characters" in assert_openai_error(status, out, 413)
    huge = json.dumps({"input": "a"}).encode()
    status, out = post(server + "/v1/embeddings", None, raw=huge, headers={"Content-Length": str(10**9)})
    assert_openai_error(status, out, 413)


def test_server_still_answers_after_bad_requests(server, serve_model):
    for _ in range(3):
        post(server + "/v1/embeddings", None, raw=b"\xff\xfe")
    result = client(server).embeddings.create(model="m", input=["a dog"], encoding_format="float")
    np.testing.assert_allclose(result.data[0].embedding, serve_model.encode("a dog", precision="fp32"), atol=1e-6)


def test_tei_embed(server, serve_model):
    status, out = post(server + "/embed", {"inputs": TEXTS[:2], "normalize": True})
    assert status == 200
    np.testing.assert_allclose(np.array(out), serve_model.encode(TEXTS[:2], precision="fp32"), atol=1e-6)
    status, out = post(server + "/embed", {"inputs": "music " * 100})  # 100+ tokens > 64, truncate false
    assert status == 413 and set(out) == {"error", "error_type"} and "truncate" in out["error"]
    full = len(serve_model.tokenizer("music " * 100)["input_ids"])  # the message gives the untruncated count
    assert f"has {full} tokens; at most 64" in out["error"]
    status, out = post(server + "/embed", {"inputs": "music " * 100, "truncate": True})
    assert status == 200 and len(out[0]) == 32
    status, out = post(server + "/embed", {"inputs": "a", "prompt_name": "nope"})
    assert status == 400 and "prompt" in out["error"]


def test_prompts_left_out_of_the_pool_as_encode_leaves_them_out(start_server, tiny_bert_dir):
    """A pooling with include_prompt false: a request with a prompt and one without, sent together (a 0.3 s
    wait, so they usually share a batch), each give the rows encode gives (the prompt's tokens not pooled)."""
    from embtune.models.embedding_model import EmbeddingModel

    model = EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True)
    model.pooling.include_prompt = False
    model.prompts = {"query": "query: "}
    with start_server(model, max_wait_ms=300) as url, ThreadPoolExecutor(2) as pool:
        asked = pool.submit(post, url + "/embed", {"inputs": TEXTS, "prompt_name": "query"}, None)
        plain = pool.submit(post, url + "/embed", {"inputs": TEXTS}, None)
        (s1, with_prompt), (s2, without) = asked.result(), plain.result()
    assert s1 == s2 == 200
    np.testing.assert_allclose(np.array(with_prompt), model.encode(TEXTS, prompt_name="query", precision="fp32"), atol=1e-6)
    np.testing.assert_allclose(np.array(without), model.encode(TEXTS, precision="fp32"), atol=1e-6)


def test_int8_server_returns_the_int8_encode_rows(start_server, serve_model):
    """``--precision int8``: the server's rows are encode's int8 rows (quantized, close to fp32, not equal)."""
    with start_server(serve_model, precision="int8", api_key="k8") as url:
        result = client(url, key="k8").embeddings.create(model="tiny", input=TEXTS, encoding_format="float")
    got = np.array([d.embedding for d in result.data], dtype=np.float32)
    np.testing.assert_allclose(got, serve_model.encode(TEXTS, precision="int8"), atol=1e-5)
    ref = serve_model.encode(TEXTS, precision="fp32")
    cosine = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cosine.min() > 0.99 and np.abs(got - ref).max() > 1e-6


def metric(text: str, name: str) -> float:
    return float(next((line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")), 0))


def test_metrics_count_answered_and_refused_requests(server):
    before = get(server + "/metrics")[1]
    post(server + "/v1/embeddings", {"input": "a"})
    post(server + "/v1/embeddings", {"input": "a"}, key="wrong")
    post(server + "/v1/embeddings", {"input": []})
    after = get(server + "/metrics")[1]
    for status, added in (("200", 1), ("401", 1), ("400", 1)):
        name = f'embtune_requests_total{{route="/v1/embeddings",status="{status}"}}'
        assert metric(after, name) - metric(before, name) == added, name


def test_health_models_metrics_and_unknown_routes(server):
    assert json.loads(get(server + "/health")[1]) == {"status": "ok"}
    models = json.loads(get(server + "/v1/models")[1])
    assert models["object"] == "list" and models["data"][0]["object"] == "model"
    status, text = get(server + "/metrics")
    assert status == 200
    for name in ("embtune_requests_total", "embtune_queue_seconds_bucket", "embtune_tokens_per_second"):
        assert name in text
    status, body = get(server + "/v1/nothing")
    assert status == 404 and "error" in json.loads(body)


@pytest.mark.parametrize("with_orjson", [True, False])
def test_json_response_round_trips_float32_exactly(with_orjson, monkeypatch):
    import sys

    pytest.importorskip("fastapi")
    from embtune.serve.app import json_response

    if with_orjson:
        pytest.importorskip("orjson")
    else:
        monkeypatch.setitem(sys.modules, "orjson", None)  # import orjson -> ImportError: the stdlib fallback
    emb = np.random.default_rng(0).standard_normal((5, 7)).astype(np.float32)
    emb[0, 0], emb[1, 1] = 1e-39, 3.4e38  # a subnormal and a value near the float32 maximum
    body = json.loads(json_response({"object": "list", "data": [{"index": i, "embedding": r} for i, r in
                                                                   enumerate(emb)]}).body)
    assert np.array_equal(np.array([d["embedding"] for d in body["data"]], dtype=np.float32), emb)
    assert np.array_equal(np.array(json.loads(json_response(emb).body), dtype=np.float32), emb)
