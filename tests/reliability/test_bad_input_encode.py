"""`embtune encode` (and `embtune eval`, when present) on bad input: one line, exit 2, no partial output."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import assert_one_line_error, run_embtune

from embtune import cli
from embtune.cli import main
from embtune.errors import EmbtuneError

TEXTS = "id,text\n1,the cat\n2,a dog runs\n3,the sun\n"

# (id, file name, content or None for "absent", extra argv, fragments of the one-line error)
ENCODE_CASES = [
    ("missing-file", "nope.txt", None, [], ("nope.txt", "no such file", "check the --input path")),
    ("empty-txt", "in.txt", "", [], ("in.txt", "file is empty", "fill it with data")),  # as for a CSV
    ("blank-lines-only", "in.txt", "\n   \n\t\n", [], ("in.txt", "file is empty", "fill it with data")),
    ("empty-csv", "in.csv", "", ["--column", "text"], ("in.csv", "file is empty", "fill it with data")),
    ("header-only", "in.csv", "id,text\n", ["--column", "text"], ("in.csv", "no data rows", "add rows")),
    ("wrong-delimiter", "in.csv", TEXTS.replace(",", ";"), ["--column", "text"],
     ("in.csv", "semicolon-separated", "re-save it with commas")),
    ("unknown-column", "in.csv", TEXTS, ["--column", "body"], ("in.csv", "unknown column 'body'", "available columns")),
    ("no-column-given", "in.csv", TEXTS, [], ("in.csv", "pass --column", "columns: id, text")),
    ("number-column", "in.csv", TEXTS, ["--column", "id"], ("in.csv", "column 'id'", "not text")),
    ("empty-text-cell", "in.csv", TEXTS + '4,""\n', ["--column", "text"],
     ("in.csv", "data row 4", "column 'text'", "is empty", "fill it in or drop the row")),
    ("whitespace-text-cell", "in.csv", 'id,text\n1,"   "\n2,a\n', ["--column", "text"],
     ("in.csv", "data row 1", "whitespace only", "drop the row")),
    ("null-text-jsonl", "in.jsonl", '{"text": "a"}\n{"text": null}\n', ["--column", "text"],
     ("in.jsonl", "data row 2", "column 'text'", "missing", "drop the row")),
    ("non-utf8-txt", "in.txt", b"the cat\n\xff\xfe dog\n", [], ("in.txt", "not valid UTF-8", "re-save the file as UTF-8")),
    ("non-utf8-csv", "in.csv", b"id,text\n1,caf\xe9\n", ["--column", "text"],
     ("in.csv", "line 2", "not valid UTF-8", "re-save the file as UTF-8")),
    ("short-row", "in.csv", TEXTS + "4\n", ["--column", "text"],
     ("in.csv", "data row 4", "has 1 fields but the header has 2", "fix the row")),
    ("output-not-npy", "in.txt", "the cat\n", ["--output-name", "emb.txt"], ("emb.txt", "must end in .npy")),
]


def _write(path: Path, content: str | bytes | None) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")


@pytest.mark.parametrize(("name", "content", "extra", "fragments"), [c[1:] for c in ENCODE_CASES],
                         ids=[c[0] for c in ENCODE_CASES])
def test_encode_bad_input(model_dir, tmp_path, capsys, name, content, extra, fragments):
    _write(tmp_path / name, content)
    extra = list(extra)
    out = tmp_path / "emb.npy"
    if "--output-name" in extra:
        out = tmp_path / extra.pop(extra.index("--output-name") + 1)
        extra.remove("--output-name")
    code = main(["encode", str(model_dir), "--input", str(tmp_path / name), "--output", str(out), *extra])
    assert_one_line_error(code, capsys.readouterr().err, *fragments)
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files


def _broken_model(model_dir: Path, tmp: Path, how: str) -> Path:
    copy = tmp / "model"
    shutil.copytree(model_dir, copy)
    if how == "no-weights":
        (copy / "model.safetensors").unlink()
    elif how == "no-tokenizer":
        for f in copy.glob("tokenizer*"):
            f.unlink()
    elif how == "truncated-weights":
        data = (copy / "model.safetensors").read_bytes()
        (copy / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif how == "no-modules-target":
        shutil.rmtree(copy / "1_Pooling")
    return copy


MODEL_CASES = [
    ("no-weights", ("model", "no model weights found", "incomplete")),
    ("no-tokenizer", ("model", "no tokenizer vocabulary found", "copy the tokenizer files")),
    ("truncated-weights", ("model.safetensors", "corrupted or truncated", "restore it")),
    ("no-modules-target", ("1_Pooling", "config.json", "incomplete")),
]


@pytest.mark.parametrize(("how", "fragments"), MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
def test_encode_with_a_broken_model_folder(model_dir, tmp_path, capsys, how, fragments):
    model = _broken_model(model_dir, tmp_path, how)
    (tmp_path / "in.txt").write_text("the cat\n")
    out = tmp_path / "emb.npy"
    code = main(["encode", str(model), "--input", str(tmp_path / "in.txt"), "--output", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, *fragments)
    assert not out.exists()


def test_encode_keeps_an_existing_output_when_it_fails(model_dir, tmp_path, capsys):
    out = tmp_path / "emb.npy"
    np.save(out, np.arange(3.0))
    before = out.read_bytes()
    (tmp_path / "in.csv").write_text(TEXTS + '4,""\n')
    code = main(["encode", str(model_dir), "--input", str(tmp_path / "in.csv"), "--column", "text", "--output", str(out)])
    assert_one_line_error(code, capsys.readouterr().err, "data row 4")
    assert out.read_bytes() == before


def test_encode_truncates_extremely_long_texts_with_a_count_warning(model_dir, tmp_path, caplog):
    (tmp_path / "in.txt").write_text("the cat\n" + "dog " * 300_000 + "\n" + "sun " * 5000 + "\n")
    out = tmp_path / "emb.npy"
    with caplog.at_level(logging.WARNING):
        assert main(["encode", str(model_dir), "--input", str(tmp_path / "in.txt"), "--output", str(out)]) == 0
    assert np.load(out).shape == (3, 32)
    assert "2 of 3 texts were longer than max_seq_length" in caplog.text


def test_encode_subprocess_has_no_traceback(model_dir, tmp_path):
    (tmp_path / "in.csv").write_text(TEXTS + "4\n")
    proc = run_embtune("encode", str(model_dir), "--input", str(tmp_path / "in.csv"), "--column", "text",
                       "--output", str(tmp_path / "o.npy"))
    assert_one_line_error(proc.returncode, proc.stderr, "data row 4")
    assert not (tmp_path / "o.npy").exists()


def test_encode_python_api_rejects_bad_tables_like_the_cli(tmp_path):
    (tmp_path / "in.csv").write_text(TEXTS + '4,"  "\n')
    with pytest.raises(EmbtuneError, match=r"in.csv, data row 4 \(1-based\), column 'text'"):
        cli.read_texts(str(tmp_path / "in.csv"), "text")


# --- eval (another developer is adding `embtune eval`; these run once the command exists) ------------

STS = "sentence1,sentence2,score\nthe cat,a cat,0.9\nthe dog,a car,0.1\nthe sun,the moon,0.5\n"
EVAL_CASES = [
    ("missing-file", "nope.csv", None, ("nope.csv", "not found", "check the path")),
    ("empty-file", "sts.csv", "", ("sts.csv", "file is empty", "fill it with data")),
    ("header-only", "sts.csv", "sentence1,sentence2,score\n", ("sts.csv", "no data rows", "add rows")),
    ("wrong-delimiter", "sts.csv", STS.replace(",", ";"), ("sts.csv", "semicolon-separated", "re-save")),
    ("short-row", "sts.csv", STS + "x,y\n", ("sts.csv", "data row 4", "fields but the header has 3")),
    ("non-utf8", "sts.csv", STS.encode() + b"caf\xe9,x,0.1\n", ("sts.csv", "line 5", "not valid UTF-8")),
    ("unknown-column", "sts.csv", STS.replace("score", "gold"), ("sts.csv", "score", "gold")),
]


@pytest.mark.parametrize(("name", "content", "fragments"), [c[1:] for c in EVAL_CASES], ids=[c[0] for c in EVAL_CASES])
def test_eval_bad_input(model_dir, tmp_path, capsys, name, content, fragments):
    if "eval" not in cli.COMMANDS:
        pytest.skip("`embtune eval` does not exist yet")
    _write(tmp_path / name, content)
    code = main(["eval", str(model_dir), "--data", str(tmp_path / name), "--evaluator", "sts"])
    assert_one_line_error(code, capsys.readouterr().err, *fragments)
