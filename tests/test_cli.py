"""The CLI: encode / similarity / info on the tiny model; bad input is one line, exit code 2, no traceback."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from embtune.cli import main
from embtune.models.embedding_model import EmbeddingModel


@pytest.fixture(scope="module")
def model_dir(tiny_bert_dir, tmp_path_factory):
    return EmbeddingModel.from_transformer(tiny_bert_dir, normalize=True).save(tmp_path_factory.mktemp("cli") / "m")


def test_encode_txt_to_npy(model_dir, tmp_path, capsys):
    src = tmp_path / "in.txt"
    src.write_text("the cat\n\na dog runs\nthe sun\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    assert main(["encode", str(model_dir), "--input", str(src), "--output", str(out), "--precision", "fp32"]) == 0
    emb = np.load(out)
    assert emb.shape == (3, 32)
    expected = EmbeddingModel.load(model_dir).encode(["the cat", "a dog runs", "the sun"], precision="fp32")
    np.testing.assert_allclose(emb, expected, atol=1e-6)
    assert "wrote 3 x 32" in capsys.readouterr().out


def test_encode_csv_column(model_dir, tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,text\n1,the cat\n2,a dog\n", encoding="utf-8")
    out = tmp_path / "emb.npy"
    assert main(["encode", str(model_dir), "--input", str(src), "--column", "text", "--output", str(out)]) == 0
    assert np.load(out).shape == (2, 32)


@pytest.mark.parametrize(
    "make_input, extra, message",
    [
        (lambda p: p / "missing.txt", [], "no such file"),
        (lambda p: (p / "empty.txt").write_text("") and p / "empty.txt" or p / "empty.txt", [], "file is empty"),
        (lambda p: (p / "t.csv").write_text("id,text\n1,a\n") and p / "t.csv", ["--column", "body"], "unknown column 'body'"),
        (lambda p: (p / "t2.csv").write_text("id,text\n1,a\n") and p / "t2.csv", [], "pass --column"),
        (lambda p: (p / "bad.txt").write_bytes(b"ok\n\xff\xfe bad\n") and p / "bad.txt", [], "not valid UTF-8"),
    ],
)
def test_encode_bad_input(model_dir, tmp_path, capsys, make_input, extra, message):
    src = make_input(tmp_path)
    code = main(["encode", str(model_dir), "--input", str(src), "--output", str(tmp_path / "o.npy"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o.npy").exists()


def test_not_a_model_folder(tmp_path, capsys):
    (tmp_path / "x.txt").write_text("hi")
    assert main(["info", str(tmp_path)]) == 2
    assert "not a model folder" in capsys.readouterr().err


def test_info_and_similarity(model_dir, capsys):
    assert main(["info", str(model_dir)]) == 0
    out = capsys.readouterr().out
    assert "embedding_dim: 32" in out and "similarity_fn_name: cosine" in out
    assert main(["similarity", str(model_dir), "the cat", "the cat"]) == 0
    assert capsys.readouterr().out.startswith("1.0000")


def test_subprocess_error_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "embtune", "info", str(tmp_path / "nope")], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("embtune: error:") and "Traceback" not in proc.stderr
