"""ONNX export: onnxruntime alone reproduces encode; the README example runs without torch; ST's layout."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from embtune.cli import main
from embtune.export.onnx import OPSET

ROOT = Path(__file__).resolve().parents[2]
TEXTS = [
    "the cat sits on the red house",
    "a dog",
    "people play music in the city at night and the sun is not out, the moon is big and the sea is cold",
    "what is the price of the book?",
    "x",
]


def run_graph(path: Path, texts: list[str]) -> np.ndarray:
    import onnxruntime as ort
    from tokenizers import Tokenizer

    folder = path.parent
    config = json.loads((folder / "config.json").read_text())
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    batch = tok.encode_batch(texts)
    cols = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
    feeds = {n: np.array([getattr(e, cols[n]) for e in batch], dtype=np.int64) for n in config["inputs"]}
    return ort.InferenceSession(str(path)).run(None, feeds)[0]


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_fp32_graph_equals_encode_at_any_batch_and_length(tiny_model, tiny_export):
    path = tiny_export / "embedding" / "model.onnx"
    for texts in (TEXTS, TEXTS[:1], TEXTS[1:2] * 7):  # dynamic batch and sequence axes
        ref = tiny_model.encode(texts, precision="fp32")
        out = run_graph(path, texts)
        assert out.shape == ref.shape
        assert cosines(out, ref).min() >= 0.9999
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)  # the model normalizes


def test_truncation_matches_max_seq_length(tiny_model, tiny_export):
    long = " ".join(["music"] * 300)  # far past the tiny model's 64 positions
    ref = tiny_model.encode([long, "a dog"], precision="fp32")
    assert cosines(run_graph(tiny_export / "embedding" / "model.onnx", [long, "a dog"]), ref).min() >= 0.9999


def test_metadata_and_opset(tiny_model, tiny_export):
    import onnx

    config = json.loads((tiny_export / "embedding" / "config.json").read_text())
    assert config["dimension"] == tiny_model.embedding_dim and config["normalized"] is True
    assert config["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    graph = onnx.load(str(tiny_export / "embedding" / "model.onnx"))
    assert {o.domain: o.version for o in graph.opset_import}[""] == OPSET == config["opset"]
    dims = graph.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "sequence"]


@pytest.mark.slow
def test_int8_graph_is_smaller_and_close_on_the_bundled_model(minilm_dir, tmp_path):
    from embtune.export import export_onnx
    from embtune.models.embedding_model import EmbeddingModel
    from embtune.models.int8 import HAS_INT8_DOT

    model = EmbeddingModel.load(minilm_dir)
    out = export_onnx(model, tmp_path / "minilm", quantize="int8")
    sentences = [t for t in TEXTS if len(t.split()) >= 4] + [
        "A man is playing a guitar on stage.", "Stock markets fell sharply on Tuesday.",
    ]
    short = ["x", "a dog", "ok", "Hi!"]  # 3-4 tokens: dynamic activation ranges hurt most here
    fp32, int8 = out / "embedding" / "model.onnx", out / "embedding" / "model_int8.onnx"
    ref = model.encode(sentences + short, precision="fp32")
    assert cosines(run_graph(fp32, sentences + short), ref).min() >= 0.9999
    got = cosines(run_graph(int8, sentences + short), ref)
    assert got[: len(sentences)].min() >= 0.99
    assert got[len(sentences) :].min() >= 0.95
    assert int8.stat().st_size < fp32.stat().st_size / 3
    # 7-bit weights where onnxruntime's 16-bit sums would saturate (no VNNI / AMX)
    assert json.loads((out / "embedding" / "config.json").read_text())["int8_weight_bits"] == (8 if HAS_INT8_DOT else 7)


BLOCKER = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "transformers", "embtune", "sentence_transformers"}:
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
"""


def readme_onnx_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "import onnxruntime" in b]
    assert len(blocks) == 1, "README needs one Python example that uses onnxruntime"
    return blocks[0]


def test_readme_example_runs_without_torch_transformers_or_embtune(tiny_model, tiny_export):
    code = readme_onnx_example()
    assert len([line for line in code.strip().splitlines() if line.strip()]) <= 16
    assert '"export/embedding"' in code
    code = code.replace('"export/embedding"', repr(str(tiny_export / "embedding")))
    probe = "\nimport sys\nassert not {'torch', 'transformers', 'embtune'} & set(sys.modules)\nprint(emb.tolist())\n"
    proc = subprocess.run([sys.executable, "-c", BLOCKER + code + probe], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    emb = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    texts = re.search(r"texts = (\[.*?\])", code).group(1)
    ref = tiny_model.encode(eval(texts), precision="fp32")
    assert cosines(emb, ref).min() >= 0.9999


def test_blocker_really_blocks_torch():
    proc = subprocess.run([sys.executable, "-c", BLOCKER + "import torch"], capture_output=True, text=True)
    assert proc.returncode != 0 and "blocked: torch" in proc.stderr


def test_st_layout_encoder_graph_plus_pooling_equals_encode(tiny_model, tiny_export):
    """onnx/model.onnx is the encoder that sentence-transformers' onnx backend runs before its own Pooling."""
    import onnxruntime as ort

    from embtune.models.embedding_model import EmbeddingModel

    copy = EmbeddingModel.load(tiny_export)  # the folder is also a sentence-transformers model
    features = copy.tokenize(TEXTS)
    session = ort.InferenceSession(str(tiny_export / "onnx" / "model.onnx"))
    assert session.get_outputs()[0].name == "last_hidden_state"
    hidden = session.run(None, {k: v.numpy() for k, v in features.items()})[0]
    mask = features["attention_mask"].numpy()[..., None]
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    assert cosines(pooled, tiny_model.encode(TEXTS, precision="fp32")).min() >= 0.9999
    assert (tiny_export / "onnx" / "model_qint8.onnx").is_file()


def test_sentence_transformers_onnx_backend_loads_the_export(tiny_model, tiny_export):
    pytest.importorskip(
        "optimum.onnxruntime",
        reason="optimum-onnx (needed by ST's backend='onnx') requires transformers<4.58; not installable here",
    )
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(tiny_export), backend="onnx", device="cpu")
    ref = tiny_model.encode(TEXTS, precision="fp32")
    assert cosines(st.encode(TEXTS), ref).min() >= 0.9999


def test_cli_export(tiny_bert_dir, tmp_path, capsys):
    from embtune.models.embedding_model import EmbeddingModel

    folder = EmbeddingModel.from_transformer(tiny_bert_dir).save(tmp_path / "model")
    assert main(["export", str(folder), "--format", "onnx", "--output", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "embedding" / "model.onnx").is_file()
    assert not (tmp_path / "out" / "embedding" / "model_int8.onnx").exists()
    assert "model.onnx" in capsys.readouterr().out


def test_cli_export_refuses_a_folder_that_is_not_an_export(tiny_bert_dir, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("mine")
    assert main(["export", str(tiny_bert_dir), "--format", "onnx", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not an export" in err
    assert (tmp_path / "out" / "notes.txt").read_text() == "mine"
