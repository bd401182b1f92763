"""One file reader: `embtune train`, `embtune eval` and `embtune encode` give the same answer on the same file.

All three read through ``embtune.data.sources``. A byte-order mark is dropped by each (the same embeddings,
metrics and training losses as without it), and a ragged row or a latin-1 file is the same one-line error
from each command, word for word.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import assert_one_line_error, pair_rows, write_recipe

from embtune.cli import main, read_texts

CSV = "anchor,positive\n" + pair_rows(8, score=False)


def _commands(model_dir: Path, data: Path, work: Path) -> dict[str, list[str]]:
    recipe = write_recipe(work, model_dir, data, args={"save_steps": 100})
    return {
        "encode": ["encode", str(model_dir), "--input", str(data), "--column", "anchor",
                   "--output", str(work / "emb.npy")],
        "eval": ["eval", str(model_dir), "--data", str(data), "--evaluator", "retrieval",
                 "--columns", "query=anchor", "positive=positive", "--json"],
        "train": ["train", str(recipe)],
    }


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _results(model_dir: Path, data: Path, work: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    """What each command produced from ``data``: embeddings, metrics, the logged training losses."""
    work.mkdir()
    commands = _commands(model_dir, data, work)
    results: dict[str, object] = {}
    for name, argv in commands.items():
        code, out, err = _run(argv, capsys)
        assert code == 0, (name, err)
        if name == "encode":
            results[name] = np.load(work / "emb.npy")
        elif name == "eval":
            results[name] = json.loads(out)
        else:
            log = (work / "out" / "training_log.jsonl").read_text(encoding="utf-8").splitlines()
            results[name] = [row["loss"] for row in map(json.loads, log) if "loss" in row]
    return results


def test_a_byte_order_mark_is_dropped_by_every_command(model_dir, tmp_path, capsys):
    plain, bom = tmp_path / "plain.csv", tmp_path / "bom.csv"
    plain.write_text(CSV, encoding="utf-8")
    bom.write_bytes(b"\xef\xbb\xbf" + CSV.encode("utf-8"))
    without = _results(model_dir, plain, tmp_path / "a", capsys)
    with_bom = _results(model_dir, bom, tmp_path / "b", capsys)
    assert np.array_equal(with_bom.pop("encode"), without.pop("encode"))
    assert with_bom == without and without["train"]  # same metrics, same logged losses


def test_a_byte_order_mark_in_a_text_file_is_dropped_like_in_a_table(tmp_path):
    texts = [line.split(",")[0] for line in CSV.splitlines()[1:]]
    txt = tmp_path / "in.txt"
    txt.write_bytes(b"\xef\xbb\xbf" + "\n".join(texts).encode("utf-8"))
    table = tmp_path / "in.csv"
    table.write_bytes(b"\xef\xbb\xbf" + CSV.encode("utf-8"))
    assert read_texts(str(txt), None) == read_texts(str(table), "anchor") == texts  # what encode embeds


@pytest.mark.parametrize(
    "case, content, fragments",
    [
        ("ragged-row", (CSV + "the cat,a dog,one too many\n").encode("utf-8"),
         ("data row 9 (1-based) has 3 fields but the header has 2",)),
        ("latin-1", (CSV + "caf\xe9 au lait,a dog\n").encode("latin-1"),
         ("line 10", "not valid UTF-8", "re-save the file as UTF-8")),
    ],
)
def test_bad_files_give_the_same_error_from_every_command(model_dir, tmp_path, capsys, case, content, fragments):
    data = tmp_path / f"{case}.csv"
    data.write_bytes(content)
    errors = {}
    for name, argv in _commands(model_dir, data, tmp_path).items():
        code, _, err = _run(argv, capsys)
        assert_one_line_error(code, err, str(data), *fragments)
        errors[name] = err
    assert errors["encode"] == errors["eval"] == errors["train"], errors
