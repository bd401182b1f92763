"""Issue 10, items 12-14: messages that name the file, 1-based row, column or recipe key and a fix that
works; silent nonsense turned into an error; the CLI's usage and ``encode --output`` overwrite rule."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability_helpers import GOOD_CSV, assert_one_line_error, write_recipe

from embtune.cli import main

STS = "sentence1,sentence2,score\nthe cat,a cat,0.9\nthe dog,a car,0.1\nthe sun,the moon,0.5\n"
BIN = "sentence1,sentence2,label\nthe cat,a cat,1\nthe dog,a car,0\nthe sun,the moon,1\n"

# (id, evaluator, file name, content, fragments)
EVAL_CASES = [
    ("sts-text-score", "sts", "sts.csv", STS.replace("0.1", "high"),
     ("sts.csv", "data row 2 (1-based)", "column 'score'", "'high'")),
    ("sts-nan-score", "sts", "sts.csv", STS.replace("0.1", "nan"), ("sts.csv", "data row 2 (1-based)", "column 'score'")),
    ("binary-label-3", "binary", "bin.csv", BIN.replace("the moon,1", "the moon,3"),
     ("bin.csv", "data row 3 (1-based)", "column 'label'", "label 3 is not 0 or 1", "map your classes to 0/1")),
    ("sts-empty-text", "sts", "sts.csv", STS.replace("a car", '""'),
     ("sts.csv", "data row 2 (1-based)", "column 'sentence2'", "empty")),
    ("sts-latin1", "sts", "sts.csv", STS.replace("cat,a cat", "caf\xe9,a caf\xe9").encode("latin-1"),
     ("sts.csv", "line 2", "not valid UTF-8", "re-save the file as UTF-8")),
    ("sts-utf16-no-bom", "sts", "sts.csv", STS.encode("utf-16-le"), ("sts.csv", "UTF-16", "re-save the file as UTF-8")),
    ("sts-utf16-bom", "sts", "sts.csv", STS.encode("utf-16"), ("sts.csv", "UTF-16", "byte-order mark")),
    ("sts-nul-byte", "sts", "sts.csv", STS.replace("the sun", "the \x00sun"),
     ("sts.csv", "data row 3 (1-based)", "column 'sentence1'", "NUL byte")),
    ("retrieval-numeric-documents", "retrieval", "pairs.csv", "query,positive\nthe cat,1\nthe dog,2\n",
     ("pairs.csv", "column 'positive'", "int64", "not text")),
    ("retrieval-latin1", "retrieval", "pairs.csv", "query,positive\ncaf\xe9,a cat\n".encode("latin-1"),
     ("pairs.csv", "not valid UTF-8")),
    ("retrieval-utf16", "retrieval", "pairs.csv", "query,positive\nthe cat,a cat\n".encode("utf-16"), ("pairs.csv", "UTF-16")),
    ("beir-latin1-queries", "retrieval", "beir", None, ("queries.jsonl", "not valid UTF-8")),
]


@pytest.mark.parametrize(("kind", "name", "content", "fragments"), [c[1:] for c in EVAL_CASES],
                         ids=[c[0] for c in EVAL_CASES])
def test_eval_messages_name_file_row_and_column(model_dir, tmp_path, capsys, kind, name, content, fragments):
    path = tmp_path / name
    if name == "beir":
        path.mkdir()
        (path / "qrels").mkdir()
        (path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
        (path / "corpus.jsonl").write_text('{"_id": "d1", "text": "a cat"}\n')
        (path / "queries.jsonl").write_bytes(b'{"_id": "q1", "text": "caf\xe9"}\n')
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    code = main(["eval", str(model_dir), "--data", str(path), "--evaluator", kind])
    assert_one_line_error(code, capsys.readouterr().err, *fragments)


def test_parquet_users_are_not_told_to_quote_values(model_dir, tmp_path, capsys):
    path = tmp_path / "in.parquet"
    pq.write_table(pa.table({"text": [1, 2, 3]}), path)
    code = main(["encode", str(model_dir), "--input", str(path), "--column", "text", "--output", str(tmp_path / "e.npy")])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "in.parquet", "column 'text'", "int64")
    assert "quote" not in err


def test_column_messages_name_the_recipe_key(model_dir, tmp_path, capsys):
    data = tmp_path / "data.csv"
    data.write_text(GOOD_CSV)
    recipe = write_recipe(tmp_path, model_dir, data, columns={"anchor": "anchr", "positive": "positive"})
    code = main(["train", str(recipe)])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, "datasets[].columns")
    assert "data.columns" not in err.replace("datasets[].columns", "")


# --- 13. silent nonsense ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b", "fragments"), [
    ("", "a cat", ("text_a is empty",)),
    ("a cat", "   ", ("text_b is whitespace only",)),
    ("the \x00cat", "a cat", ("text_a", "NUL byte")),
])
def test_similarity_refuses_texts_that_mean_nothing(model_dir, capsys, a, b, fragments):
    assert_one_line_error(main(["similarity", str(model_dir), a, b]), capsys.readouterr().err, *fragments)


@pytest.mark.parametrize(("content", "fragments"), [
    (b"the cat\nthe \x00dog\n", ("in.txt", "line 2", "NUL byte", "UTF-16")),
    ("the cat\nthe dog\n".encode("utf-16-le"), ("in.txt", "UTF-16 without a byte-order mark", "re-save")),
    ("the cat\nthe dog\n".encode("utf-16"), ("in.txt", "UTF-16", "byte-order mark", "re-save the file as UTF-8")),
])
def test_encode_txt_with_nul_bytes_or_utf16_is_refused(model_dir, tmp_path, capsys, content, fragments):
    (tmp_path / "in.txt").write_bytes(content)
    out = tmp_path / "e.npy"
    code = main(["encode", str(model_dir), "--input", str(tmp_path / "in.txt"), "--output", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, *fragments)
    assert not out.exists()


# --- 14. CLI ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "fragment"), [
    ([], "no command given"),
    (["bogus"], "unknown command 'bogus'"),
    (["trian"], "did you mean 'train'"),
    (["encode"], "the following arguments are required"),
])
def test_usage_errors_are_a_short_usage_and_one_error_line(argv, fragment, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert lines[0].startswith("usage: embtune")
    assert len(lines) <= 8
    errors = [line for line in lines if line.startswith("embtune: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and fragment in errors[0], err


def test_help_still_exits_0(capsys):
    assert main(["--help"]) == 0
    assert "encode" in capsys.readouterr().out


def test_encode_refuses_to_overwrite_unless_asked(model_dir, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("the cat\na dog\n")
    out = tmp_path / "e.npy"
    np.save(out, np.arange(3.0))
    before = out.read_bytes()
    argv = ["encode", str(model_dir), "--input", str(tmp_path / "in.txt"), "--output", str(out)]
    assert_one_line_error(main(argv), capsys.readouterr().err, "e.npy", "already exists", "--overwrite")
    assert out.read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0
    assert np.load(out).shape == (2, 32)


def test_encode_streams_in_chunks_with_the_same_result(model_dir, tmp_path, monkeypatch):
    """Chunked encode (quantize calibrated on all rows at once) equals one encode call."""
    from embtune.data import text_input
    from embtune.models.embedding_model import EmbeddingModel

    texts = [f"the cat {i} runs" if i % 3 else f"a dog {i}" for i in range(50)]
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n")
    real = text_input.text_chunks
    monkeypatch.setattr(text_input, "text_chunks", lambda *a, **k: real(*a, **{**k, "rows": 7}))
    out = tmp_path / "e.npy"
    args = ["encode", str(model_dir), "--input", str(tmp_path / "in.txt"), "--output", str(out),
            "--quantize", "int8", "--precision", "fp32"]
    assert main(args) == 0
    expected = EmbeddingModel.load(model_dir).encode(texts, quantize="int8", precision="fp32")
    np.testing.assert_array_equal(np.load(out), expected)


def test_help_names_every_registered_evaluator_and_loads_no_torch():
    import subprocess
    import sys

    from embtune.cli import EVALUATOR_NAMES
    from embtune.evaluation.registry import EVALUATORS

    assert EVALUATOR_NAMES == tuple(EVALUATORS)
    code = "import sys; from embtune.cli import main; main(['--help']); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().endswith("False")  # --help starts in a fraction of a second
