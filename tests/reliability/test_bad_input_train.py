"""`embtune train` on bad input: one line naming file/row/column and the fix, exit 2, no partial output.

Each case writes a recipe and its data into tmp_path and runs it through ``main([...])`` (the CLI in
process) and through the Python API (``train(load_recipe(...))`` raises EmbtuneError with the same text).
A few run in a subprocess to prove the user sees no traceback.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reliability_helpers import (
    GOOD_CSV,
    assert_one_line_error,
    pair_rows,
    run_embtune,
    snapshot,
    write_recipe,
)

from embtune.cli import main
from embtune.data.validate import DataWarning
from embtune.errors import EmbtuneError
from embtune.models.embedding_model import EmbeddingModel
from embtune.training.loop import train
from embtune.training.recipe import load_recipe

LABELS = {"anchor": "anchor", "positive": "positive", "label": "score"}
HEADER = "anchor,positive,score\n"


@dataclass
class Case:
    """One bad input: the data file (name, content), recipe changes, and what the error must contain."""

    id: str
    fragments: tuple[str, ...]
    name: str = "data.csv"
    data: str | bytes | Callable[[Path], None] | None = GOOD_CSV
    recipe: dict[str, Any] = field(default_factory=dict)
    model: Callable[[Path, Path], Path] | None = None  # (good model, tmp) -> model folder to use
    out: Callable[[Path], None] | None = None  # prepares an existing output folder


def _parquet_nan(path: Path) -> None:
    table = pa.table({"anchor": [f"the cat {i}" for i in range(6)], "positive": [f"a dog {i}" for i in range(6)],
                      "score": [0.1, 0.2, 0.3, float("nan"), 0.5, 0.6]})
    pq.write_table(table, path)


def _jsonl(scores: list[Any]) -> str:
    return "".join(json.dumps({"anchor": f"the cat {i}", "positive": f"a dog {i}", "score": s}) + "\n"
                   for i, s in enumerate(scores))


def _model_without(*patterns: str) -> Callable[[Path, Path], Path]:
    def make(model: Path, tmp: Path) -> Path:
        copy = tmp / "model"
        shutil.copytree(model, copy)
        for pattern in patterns:
            for file in copy.rglob(pattern):
                file.unlink()
        return copy
    return make


def _corrupt_weights(keep: float) -> Callable[[Path, Path], Path]:
    def make(model: Path, tmp: Path) -> Path:
        copy = _model_without()(model, tmp)
        data = (copy / "model.safetensors").read_bytes()
        (copy / "model.safetensors").write_bytes(data[: int(len(data) * keep)] if keep else b"\x00" * 64)
        return copy
    return make


def _model_config(**changes: Any) -> Callable[[Path, Path], Path]:
    """A copy of the model whose config.json says something the weights do not (issue 10, item 5)."""
    def make(model: Path, tmp: Path) -> Path:
        copy = _model_without()(model, tmp)
        config = json.loads((copy / "config.json").read_text())
        (copy / "config.json").write_text(json.dumps({**config, **changes}))
        return copy
    return make


def _model_symlink_loop(model: Path, tmp: Path) -> Path:
    copy = _model_without()(model, tmp)
    (copy / "loop_a").symlink_to("loop_b")
    (copy / "loop_b").symlink_to("loop_a")
    return copy


BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9)
)  # ten nested alias levels: 10**10 values once expanded


def _foreign_output(tmp: Path) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "thesis.tex").write_text("three years of work")


CASES = [
    Case("missing-file", ("nope.csv", "file not found", "check the path"), name="nope.csv", data=None),
    Case("empty-file", ("data.csv", "file is empty", "fill it with data"), data=""),
    Case("header-only", ("data.csv", "has a header but no data rows", "add rows"), data=HEADER),
    Case("wrong-delimiter", ("data.csv", "semicolon-separated", "re-save it with commas"),
         data=GOOD_CSV.replace(",", ";")),
    Case("tab-in-csv", ("data.csv", "tab-separated", "set format: tsv"), data=GOOD_CSV.replace(",", "\t")),
    Case("unknown-column", ("data.csv", "'anchr'", "available columns: anchor, positive, score", "Fix datasets[].columns"),
         recipe={"columns": {"anchor": "anchr", "positive": "positive"}}),
    Case("label-column-missing-for-loss", ("data.csv", "CoSENTLoss needs a label column", "set `label: <column>`"),
         recipe={"loss": "cosent"}),
    Case("label-column-not-in-file", ("data.csv", "label: 'gold'", "available columns"),
         recipe={"loss": "cosent", "columns": {**LABELS, "label": "gold"}}),
    Case("nan-label-csv", ("data.csv", "data row 4", "column 'score'", "NaN", "fill in a number"),
         data=HEADER + pair_rows(3) + "x y,z w,nan\n" + pair_rows(4), recipe={"loss": "cosent", "columns": LABELS}),
    Case("nan-label-parquet", ("data.parquet", "data row 4", "column 'score'", "not finite", "fix the label"),
         name="data.parquet", data=_parquet_nan, recipe={"loss": "cosent", "columns": LABELS}),
    Case("inf-label", ("data.jsonl", "data row 3", "column 'score'", "not finite", "fix the label"),
         name="data.jsonl", data=_jsonl([0.1, 0.2, float("inf"), 0.3, 0.4]),
         recipe={"loss": "cosent", "columns": LABELS}),
    Case("string-label", ("data.csv", "data row 4", "column 'score'", "'high'", "numbers"),
         data=HEADER + pair_rows(3) + "x y,z w,high\n" + pair_rows(4), recipe={"loss": "cosent", "columns": LABELS}),
    Case("label-out-of-range-binary", ("data.csv", "data row 3", "column 'score'", "label 2 is not 0 or 1",
                                       "fix or rescale"),
         data=HEADER + "a b,c d,1\ne f,g h,0\ni j,k l,2\nm n,o p,1\n",
         recipe={"loss": "contrastive", "columns": LABELS}),
    Case("label-out-of-range-cosine", ("data.csv", "data row 4", "outside [-1, 1]", "fix or rescale"),
         data=HEADER + pair_rows(3) + "x y,z w,3.5\n" + pair_rows(4),
         recipe={"loss": "cosine_similarity", "columns": LABELS}),
    Case("empty-text", ("data.csv", "data row 4", "column 'anchor'", "is empty", "fill it in or drop the row"),
         data=HEADER + pair_rows(3) + '"",z w,0.1\n' + pair_rows(4)),
    Case("whitespace-text", ("data.csv", "data row 2", "column 'positive'", "whitespace only", "drop the row"),
         data=HEADER + pair_rows(1) + 'x y,"  \t ",0.1\n' + pair_rows(4)),
    Case("missing-text-jsonl", ("data.jsonl", "data row 2", "column 'positive'", "missing", "drop the row"),
         name="data.jsonl", data=_jsonl([0.1, 0.2, 0.3, 0.4]).replace('"a dog 1"', "null")),
    Case("non-utf8", ("data.csv", "line 5", "not valid UTF-8", "re-save the file as UTF-8"),
         data=(HEADER + pair_rows(3)).encode() + b"caf\xe9 au lait,a dog,0.1\n" + pair_rows(2).encode()),
    Case("short-row", ("data.csv", "data row 4", "has 2 fields but the header has 3", "fix the row"),
         data=HEADER + pair_rows(3) + "x y,z w\n" + pair_rows(4)),
    Case("fewer-rows-than-a-batch", ("data.csv", "has 2 rows, fewer than one batch (4)", "lower batch_size"),
         data=HEADER + pair_rows(2)),
    Case("recipe-unknown-key", ("recipe.yaml", "'args.lerning_rate'", "did you mean 'args.learning_rate'"),
         recipe={"args": {"lerning_rate": 1e-4}}),
    Case("recipe-wrong-type", ("recipe.yaml", "args.max_steps", "expected an integer", "'ten'"),
         recipe={"args": {"max_steps": "ten"}}),
    Case("recipe-negative-lr", ("recipe.yaml", "args.learning_rate", "must be >= 0", "-0.001"),
         recipe={"args": {"learning_rate": -1e-3}}),
    Case("recipe-warmup-ratio-above-1", ("recipe.yaml", "args.warmup_ratio", "must be in [0, 1]", "1.5"),
         recipe={"args": {"warmup_ratio": 1.5}}),
    Case("recipe-not-yaml", ("recipe.yaml", "not valid YAML", "fix the syntax"),
         recipe={"text": "model: {name: [unclosed\n"}),
    Case("output-dir-not-ours", ("out", "not an embtune run", "overwrite_output_dir"), out=_foreign_output),
    Case("output-dir-is-a-file", ("out", "is a file", "output_dir"),
         out=lambda tmp: (tmp / "out").write_text("not a folder")),
    Case("model-folder-missing", ("no-such-model", "no such model folder", "check the path"),
         model=lambda model, tmp: tmp / "no-such-model"),
    Case("model-without-weights", ("model", "no model weights found", "incomplete"),
         model=_model_without("model.safetensors")),
    Case("model-without-tokenizer", ("model", "no tokenizer vocabulary found", "copy the tokenizer files"),
         model=_model_without("tokenizer*", "vocab.txt", "special_tokens_map.json")),
    Case("model-without-config", ("model/config.json", "file is missing", "restore"), model=_model_without("config.json")),
    Case("model-without-pooling-config", ("1_Pooling", "config.json", "incomplete"),
         model=_model_without("1_Pooling/config.json")),
    Case("corrupted-safetensors-truncated", ("model.safetensors", "corrupted", "restore"),
         model=_corrupt_weights(0.5)),
    Case("corrupted-safetensors-garbage", ("model.safetensors", "corrupted", "restore"), model=_corrupt_weights(0)),
    # --- issue 10, round 2 -------------------------------------------------------------------------------
    Case("loss-names-python-code", ("recipe.yaml", "datasets[0].loss", "'os:system'", "never imports",
                                    "--allow-custom-code"),
         recipe={"loss": {"name": "os:system", "command": "touch PWNED"}}),
    Case("loss-name-not-a-loss-even-unknown", ("recipe.yaml", "unknown loss 'system'", "known losses"),
         recipe={"loss": "system"}),
    Case("recipe-tab-indentation", ("recipe.yaml", "line 2", "tab", "indents with spaces"),
         recipe={"text": "model:\n\tname: x\n"}),
    Case("recipe-save-strategy-no-unquoted", ("recipe.yaml", "args.save_strategy", "boolean", 'save_strategy: "no"'),
         recipe={"args": {"save_strategy": False}}),
    Case("recipe-learning-rate-nan", ("recipe.yaml", "args.learning_rate", "not a finite number"),
         recipe={"args": {"learning_rate": float("nan")}}),
    Case("mnrl-batch-of-one-without-negatives", ("recipe.yaml", "datasets[0].loss", "batch of 1 row",
                                                  "per_device_train_batch_size to 2"),
         recipe={"args": {"per_device_train_batch_size": 1}}),
    Case("utf16-without-bom", ("data.csv", "UTF-16 without a byte-order mark", "re-save the file as UTF-8"),
         data=GOOD_CSV.encode("utf-16-le")),
    Case("utf16-with-bom", ("data.csv", "UTF-16", "byte-order mark", "re-save the file as UTF-8"),
         data=GOOD_CSV.encode("utf-16")),
    Case("nul-byte-in-text", ("data.csv", "data row 2", "column 'anchor'", "NUL byte", "re-save"),
         data=HEADER + pair_rows(1) + "the \x00cat,a dog,0.1\n" + pair_rows(4)),
    Case("numeric-text-column-parquet", ("data.parquet", "column 'anchor'", "int64", "not text"),
         name="data.parquet", data=lambda p: pq.write_table(pa.table({"anchor": list(range(6)),
                                                                      "positive": [f"a dog {i}" for i in range(6)]}), p)),
    Case("model-config-more-layers-than-weights", ("model/config.json", "model.safetensors", "missing", "layer 2",
                                                   "num_hidden_layers=3"), model=_model_config(num_hidden_layers=3)),
    Case("model-config-fewer-layers-than-weights", ("model/config.json", "not used", "encoder.layer.1.",
                                                    "num_hidden_layers=1"), model=_model_config(num_hidden_layers=1)),
    Case("model-config-hidden-size-lies", ("model/config.json", "another shape", "hidden_size=64", "(32,)"),
         model=_model_config(hidden_size=64)),
    Case("model-symlink-loop", ("model/loop_", "symlink loop", "fix the link"), model=_model_symlink_loop),
]


def _build(case: Case, tmp: Path, model_dir: Path) -> tuple[Path, Path]:
    """Write the case's data and recipe; return (recipe, output_dir)."""
    data = tmp / case.name
    if callable(case.data):
        case.data(data)
    elif isinstance(case.data, bytes):
        data.write_bytes(data=case.data)
    elif case.data is not None:
        data.write_text(case.data, encoding="utf-8")
    model = case.model(model_dir, tmp) if case.model else model_dir
    if case.out:
        case.out(tmp)
    recipe = dict(case.recipe)
    recipe_path = write_recipe(tmp, model, data, **recipe)
    return recipe_path, tmp / "out"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("via", ["cli", "api"])
def test_bad_input_is_one_clear_line_and_leaves_no_output(case: Case, via: str, model_dir, tmp_path, capsys):
    recipe, out = _build(case, tmp_path, model_dir)
    before = snapshot(out)
    if via == "cli":
        code = main(["train", str(recipe)])
        assert_one_line_error(code, capsys.readouterr().err, *case.fragments)
    else:
        with pytest.raises(EmbtuneError) as info:
            train(load_recipe(recipe))
        message = str(info.value)
        assert "\n" not in message
        for fragment in case.fragments:
            assert fragment in message, f"{fragment!r} not in {message!r}"
    assert snapshot(out) == before  # absent before and after, or untouched
    assert not (tmp_path / "PWNED").exists() and not Path("PWNED").exists()  # no recipe ever runs code
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert not leftovers, leftovers  # no temporary folders next to the output


def test_overwrite_output_dir_never_replaces_a_folder_embtune_did_not_create(model_dir, tmp_path, capsys):
    _foreign_output(tmp_path)
    data = tmp_path / "data.csv"
    data.write_text(GOOD_CSV)
    recipe = write_recipe(tmp_path, model_dir, data, args={"overwrite_output_dir": True})
    before = snapshot(tmp_path / "out")
    code = main(["train", str(recipe), "--json"])
    assert_one_line_error(code, capsys.readouterr().err, "thesis.tex", "did not write", "choose another output_dir")
    assert snapshot(tmp_path / "out") == before
    (tmp_path / "out" / "thesis.tex").unlink()  # now an empty folder: a first run, then a replacing run
    assert main(["train", str(recipe), "--json"]) == 0
    assert main(["train", str(recipe), "--json"]) == 0  # an earlier embtune run is replaced
    assert (tmp_path / "out" / "modules.json").is_file()


def test_extremely_long_texts_are_truncated_with_a_count_warning(model_dir, tmp_path):
    huge = " ".join(["cat"] * 200_000)  # ~800 KB in one cell
    data = tmp_path / "data.csv"
    data.write_text(HEADER + pair_rows(3) + f"{huge},a dog,0.1\n" + pair_rows(4) + f"x y,{huge},0.2\n")
    recipe = write_recipe(tmp_path, model_dir, data)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = train(load_recipe(recipe))
    texts = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
    assert any("2 of 18 texts are longer than max_seq_length=16" in t for t in texts), texts
    assert EmbeddingModel.load(result.model_path).encode(["the cat"]).shape == (1, 32)


def test_fewer_rows_than_a_batch_trains_with_drop_last_false_when_the_batch_fits(model_dir, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text(HEADER + pair_rows(5))  # 5 rows, batch 4: one full and one partial batch
    recipe = write_recipe(tmp_path, model_dir, data, args={"max_steps": 3})
    assert train(load_recipe(recipe)).metrics["global_step"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("case_id", ["short-row", "recipe-unknown-key", "corrupted-safetensors-garbage"])
def test_subprocess_shows_one_line_and_no_traceback(case_id, model_dir, tmp_path):
    case = next(c for c in CASES if c.id == case_id)
    recipe, out = _build(case, tmp_path, model_dir)
    proc = run_embtune("train", str(recipe))
    assert_one_line_error(proc.returncode, proc.stderr, *case.fragments)
    assert proc.stdout == ""
    assert not out.exists()


def test_a_run_stopped_before_its_log_does_not_block_the_next(model_dir, tmp_path):
    """A run killed after writing its data report but before training_log.jsonl left only embtune's own files:
    the next run with overwrite_output_dir replaces them (a foreign file still blocks it, test above)."""
    data = tmp_path / "data.csv"
    data.write_text(GOOD_CSV)
    out = tmp_path / "out"
    (out / ".cache").mkdir(parents=True)
    (out / "data_report.json").write_text("{}")
    recipe = write_recipe(tmp_path, model_dir, data, args={"overwrite_output_dir": True})
    assert main(["train", str(recipe), "--json"]) == 0
    assert (out / "modules.json").is_file() and (out / "training_log.jsonl").is_file()
