"""Issue 10, item 11: no user input reaches the "internal error" path.

Named cases (unreadable files, output paths under a file or with over-long parts, ...) and a hypothesis
fuzz over CLI arguments, recipe values and file contents whose property is exactly the contract: exit 0, or
exit 2 with one stderr line, no traceback and no output written.

Unreadable files need a user that permissions apply to: as root the cases run in a subprocess that drops to
``nobody`` (uid 65534) first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import GOOD_CSV, SRC, assert_one_line_error, snapshot, write_recipe

from embtune.cli import main

# --- unreadable files ----------------------------------------------------------------------------------------


def _as_unprivileged(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m embtune`` where file permissions apply: as root, without the capabilities that bypass them."""
    env = {"PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "HOME": str(cwd),
           "EMBTUNE_CACHE": str(cwd / "cache"), "PATH": os.environ.get("PATH", "")}
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: chmod 000 cannot be tested")
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    return subprocess.run([*prefix, sys.executable, "-m", "embtune", *argv], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=180)


@pytest.fixture
def world_readable(model_dir, tmp_path):
    """A copy of the model, data and a recipe that the test may make unreadable."""
    root = tmp_path / "perm"
    shutil.copytree(model_dir, root / "model")
    (root / "data.csv").write_text(GOOD_CSV)
    (root / "in.txt").write_text("the cat\na dog\n")
    write_recipe(root, root / "model", root / "data.csv")
    yield root
    for path in [root, *root.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["recipe", "data", "encode-input", "weights"])
def test_unreadable_files_are_one_line_naming_the_file(world_readable, what):
    root = world_readable
    target = {"recipe": root / "recipe.yaml", "data": root / "data.csv", "encode-input": root / "in.txt",
              "weights": root / "model" / "model.safetensors"}[what]
    os.chmod(target, 0)
    argv = (["encode", str(root / "model"), "--input", str(root / "in.txt"), "--output", str(root / "e.npy")]
            if what in ("encode-input", "weights") else ["train", str(root / "recipe.yaml")])
    proc = _as_unprivileged(*argv, cwd=root)
    assert_one_line_error(proc.returncode, proc.stderr, target.name, "permission denied", "chmod")
    assert "corrupted" not in proc.stderr
    assert not (root / "out").exists() and not (root / "e.npy").exists()


# --- named paths ----------------------------------------------------------------------------------------------

LONG = "x" * 300


@pytest.mark.parametrize(("args", "fragments"), [
    ({"output_dir": "{tmp}/data.csv/run"}, ("args.output_dir", "data.csv is a file")),
    ({"output_dir": "{tmp}/" + LONG}, ("args.output_dir", "longer than 255 bytes")),
    ({"cache_dir": "{tmp}/data.csv/cache"}, ("data.csv",)),
    ({"resume_from_checkpoint": "{tmp}/" + LONG}, (LONG[:20],)),
])
def test_bad_output_and_cache_paths_are_one_line(model_dir, tmp_path, capsys, args, fragments):
    data = tmp_path / "data.csv"
    data.write_text(GOOD_CSV)
    recipe = write_recipe(tmp_path, model_dir, data, args={k: v.format(tmp=tmp_path) for k, v in args.items()})
    code = main(["train", str(recipe)])
    assert_one_line_error(code, capsys.readouterr().err, *fragments)


@pytest.mark.parametrize(("output", "fragments"), [
    ("{tmp}/in.txt/e.npy", ("in.txt is a file",)),
    ("{tmp}/" + LONG + ".npy", ("longer than 255 bytes",)),
    ("{tmp}", ("must end in .npy",)),
])
def test_bad_encode_outputs_are_one_line(model_dir, tmp_path, capsys, output, fragments):
    (tmp_path / "in.txt").write_text("the cat\n")
    code = main(["encode", str(model_dir), "--input", str(tmp_path / "in.txt"), "--output", output.format(tmp=tmp_path)])
    assert_one_line_error(code, capsys.readouterr().err, *fragments)


def test_over_long_data_path_is_one_line(model_dir, tmp_path, capsys):
    recipe = write_recipe(tmp_path, model_dir, tmp_path / (LONG + ".csv"))
    assert_one_line_error(main(["train", str(recipe)]), capsys.readouterr().err, "longer than the filesystem allows")


# --- the fuzz: property = exit 0, or exit 2 + one line + nothing written --------------------------------------

_FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)

RECIPE_KEYS = [
    "args.learning_rate", "args.max_steps", "args.per_device_train_batch_size", "args.save_strategy",
    "args.output_dir", "args.warmup_ratio", "args.lr_scheduler_type", "args.batch_sampler", "args.seed",
    "args.eval_strategy", "args.overwrite_output_dir", "model.name", "model.max_seq_length",
    "model.pooling", "datasets.0.path", "datasets.0.loss", "datasets.0.columns", "datasets.0.columns.anchor",
    "datasets.0.template", "datasets.0.prompt", "datasets.0.max_rows", "datasets.0.format", "eval",
]
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["", ".", "/", "~", "no", "os:system", "mnrl", "cosent", "x:y", "..",
                                           "\x00", "a" * 300, "[1, 2", "{a: *b}", "&a [*a]"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)


def _check_contract(code: int, err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    if code != 0:
        assert_one_line_error(code, err)


@pytest.mark.slow
@given(key=st.sampled_from(RECIPE_KEYS), value=VALUES)
@_FUZZ
def test_fuzz_recipe_values(model_dir, tmp_path_factory, capsys, key, value):
    tmp = tmp_path_factory.mktemp("fuzz")
    data = tmp / "data.csv"
    data.write_text(GOOD_CSV)
    recipe = write_recipe(tmp, model_dir, data, args={"max_steps": 1, "save_strategy": "no"})
    sandbox = tmp / "cwd"
    sandbox.mkdir()
    before = snapshot(tmp)
    cwd = os.getcwd()
    os.chdir(sandbox)  # relative output paths land here, never in the repository
    try:
        code = main(["train", str(recipe), f"{key}={yaml.safe_dump(value, default_flow_style=True).strip()}"
                     if not isinstance(value, str) else f"{key}={value}"])
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    _check_contract(code, err)
    if code != 0:
        assert snapshot(tmp) == before, "a refused run wrote files"


FILE_BYTES = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=200).map(lambda t: t.encode("utf-8")),
    st.lists(st.sampled_from(["the cat", "a dog", "", ",", '"', "\t", "\x00", "1", "nan", "é", "\r"]),
             max_size=30).map(lambda parts: ("sentence1,sentence2,score\n" + "".join(parts)).encode()),
    st.sampled_from([s.encode(enc) for s in ["sentence1,sentence2,score\ncafé,a b,1\n"]
                     for enc in ("utf-16", "utf-16-le", "latin-1", "utf-8-sig")]),
)


@pytest.mark.slow
@given(content=FILE_BYTES, suffix=st.sampled_from([".csv", ".tsv", ".jsonl", ".txt", ".parquet"]),
       command=st.sampled_from(["eval-sts", "eval-retrieval", "encode"]))
@_FUZZ
def test_fuzz_file_contents(model_dir, tmp_path_factory, capsys, content, suffix, command):
    tmp = tmp_path_factory.mktemp("fuzzfile")
    path = tmp / f"input{suffix}"
    path.write_bytes(content)
    out = tmp / "e.npy"
    if command == "encode":
        argv = ["encode", str(model_dir), "--input", str(path), "--output", str(out)]
        if suffix != ".txt":
            argv += ["--column", "sentence1"]
    else:
        argv = ["eval", str(model_dir), "--data", str(path), "--evaluator", command.split("-")[1]]
    code = main(argv)
    _check_contract(code, capsys.readouterr().err)
    if code != 0:
        assert not out.exists()


ARG_POOL = ["encode", "eval", "train", "info", "similarity", "--input", "--output", "--column", "--data",
            "--evaluator", "--batch-size", "--max-rows", "--truncate-dim", "--quantize", "--precision", "--json",
            "--overwrite", "--allow-pickle", "--columns", "sts", "retrieval", "binary", "int8", "fp32", "0", "-1",
            "99999999999", "text", "scores=x", "=", "a cat", "", "\x00", "{model}", "{tmp}/in.txt", "{tmp}/e.npy",
            "{tmp}/nope", "{tmp}", "/dev/null", "/dev/zero", "--help-me"]


@pytest.mark.slow
@given(argv=st.lists(st.sampled_from(ARG_POOL), min_size=0, max_size=8))
@_FUZZ
def test_fuzz_cli_arguments(model_dir, tmp_path_factory, capsys, argv):
    tmp = tmp_path_factory.mktemp("fuzzcli")
    (tmp / "in.txt").write_text("the cat\na dog\n")
    argv = [a.format(model=model_dir, tmp=tmp) for a in argv]
    if "--help" in argv or "-h" in argv:
        return
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err, err
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        errors = [line for line in err.splitlines() if line.startswith("embtune: error: ")]
        assert len(errors) == 1, err
        assert [line for line in err.splitlines() if not line.startswith(("usage:", " ", "embtune: error: ",
                                                                          "embtune: warning: "))] == [], err


def test_hypothesis_settings_are_bounded():
    assert _FUZZ.max_examples <= 50
    assert json.dumps(RECIPE_KEYS)
