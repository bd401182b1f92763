"""Issue 10, items 1-3: a recipe never runs code, never deletes what embtune did not create, never hangs.

1. names: ``module:Class`` only with ``--allow-custom-code`` / ``allow_custom_code=True``, and then only loss
   classes; the only code that imports by name is ``embtune/utils/resolve.py``.
2. output_dir: ``""``, ``.``, ``~``, ``/``, a folder holding the recipe, a data file or the base model are
   refused; ``overwrite_output_dir`` replaces only an earlier embtune run; ``~`` is expanded.
3. a YAML alias bomb fails fast; a FIFO as recipe, data, encode input or eval file is refused, never read.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest
import yaml
from reliability_helpers import GOOD_CSV, SRC, assert_one_line_error, run_embtune, snapshot, write_recipe

from embtune.cli import main
from embtune.errors import EmbtuneError
from embtune.training.loop import train
from embtune.training.recipe import load_recipe

# --- 1. names --------------------------------------------------------------------------------------------


def _recipe(tmp: Path, model: Path, **kw) -> Path:
    data = tmp / "data.csv"
    data.write_text(GOOD_CSV)
    return write_recipe(tmp, model, data, **kw)


@pytest.mark.slow
def test_an_override_naming_python_code_runs_nothing(model_dir, tmp_path):
    recipe = _recipe(tmp_path, model_dir)
    marker = tmp_path / "PWNED"
    proc = run_embtune("train", str(recipe), f'datasets.0.loss={{name: "os:system", command: "touch {marker}"}}')
    assert_one_line_error(proc.returncode, proc.stderr, "datasets[0].loss", "'os:system'", "--allow-custom-code")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_the_loss_name_override_is_refused_with_one_line_and_nothing_runs(model_dir, tmp_path, capsys):
    recipe = _recipe(tmp_path, model_dir)  # `loss: mnrl` (a name): the override still reaches loss.name
    code = main(["train", str(recipe), "datasets.0.loss.name=os:system", "datasets.0.loss.command=touch PWNED"])
    assert_one_line_error(code, capsys.readouterr().err, "datasets[0].loss", "'os:system'", "never imports")
    assert not (tmp_path / "out").exists() and not Path("PWNED").exists()


def test_custom_code_opt_in_accepts_only_loss_classes(model_dir, tmp_path, capsys):
    marker = tmp_path / "PWNED"
    bad = _recipe(tmp_path, model_dir, loss={"name": "os:system", "command": f"touch {marker}"})
    code = main(["train", str(bad), "--allow-custom-code"])
    assert_one_line_error(code, capsys.readouterr().err, "'os:system' is not a loss class")
    assert not marker.exists()
    with pytest.raises(EmbtuneError, match="is not a loss class"):
        train(load_recipe(_recipe(tmp_path, model_dir, loss="collections:OrderedDict")), allow_custom_code=True)
    own = _recipe(tmp_path, model_dir, loss="embtune.losses.in_batch:MultipleNegativesRankingLoss")
    with pytest.raises(EmbtuneError, match="never imports from a recipe"):
        train(load_recipe(own))
    assert train(load_recipe(own), allow_custom_code=True).metrics["global_step"] == 2


def test_a_recipe_key_cannot_turn_custom_code_on(model_dir, tmp_path):
    recipe = _recipe(tmp_path, model_dir, args={"allow_custom_code": True})
    with pytest.raises(EmbtuneError, match="unknown key 'args.allow_custom_code'"):
        load_recipe(recipe)


def test_only_the_resolver_imports_code_by_name():
    """The class: any new ``importlib`` / ``__import__`` on a user-given name must go through resolve.py."""
    allowed = {"utils/resolve.py", "models/bundled.py"}  # bundled.py imports a fixed package name
    offenders = []
    for path in (SRC / "embtune").rglob("*.py"):
        rel = path.relative_to(SRC / "embtune").as_posix()
        text = path.read_text()
        if rel not in allowed and re.search(r"import_module\(|__import__\(|importlib\.util\.spec_from", text):
            offenders.append(rel)
    assert not offenders, offenders


# --- 2. output_dir ---------------------------------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path, monkeypatch, model_dir):
    """A working folder (the cwd) with the recipe, its data and the base model, and a fake home folder."""
    root = tmp_path / "work"
    root.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("keep me")
    (root / "keep.txt").write_text("keep me")
    shutil.copytree(model_dir, root / "base")
    monkeypatch.chdir(root)
    monkeypatch.setenv("HOME", str(home))
    return root, home


@pytest.mark.parametrize("output_dir", ["", ".", "~", "./", "/"])
def test_output_dir_that_is_a_shared_folder_is_refused(sandbox, output_dir, capsys):
    root, home = sandbox
    data = root / "data.csv"
    data.write_text(GOOD_CSV)
    recipe = write_recipe(root, root / "base", data, args={"output_dir": output_dir,
                                                           "overwrite_output_dir": output_dir != "/"})
    before = snapshot(root), snapshot(home)
    code = main(["train", str(recipe)])
    assert_one_line_error(code, capsys.readouterr().err, "recipe.yaml", "args.output_dir")
    assert (snapshot(root), snapshot(home)) == before


@pytest.mark.parametrize("holds", ["recipe", "data", "base model"])
def test_overwrite_never_replaces_a_run_folder_that_holds_inputs(sandbox, holds, capsys):
    root, _ = sandbox
    run = root / "run"
    run.mkdir()
    (run / "training_log.jsonl").write_text("{}\n")  # an earlier embtune run
    model = root / "base"
    if holds == "base model":
        model = run / "base"
        shutil.copytree(root / "base", model)
    data = (run if holds == "data" else root) / "data.csv"
    data.write_text(GOOD_CSV)
    recipe = write_recipe(run if holds == "recipe" else root, model, data,
                          args={"output_dir": str(run), "overwrite_output_dir": True})
    before = snapshot(run)
    code = main(["train", str(recipe)])
    assert_one_line_error(code, capsys.readouterr().err, "args.output_dir", f"contains the {holds}")
    assert snapshot(run) == before


def test_tilde_is_expanded_in_output_dir_and_data_paths(sandbox, capsys):
    root, home = sandbox
    (home / "data.csv").write_text(GOOD_CSV)
    recipe = write_recipe(root, root / "base", Path("~/data.csv"), args={"output_dir": "~/runs/a"})
    assert main(["train", str(recipe)]) == 0, capsys.readouterr().err
    assert (home / "runs" / "a" / "modules.json").is_file()
    assert not (root / "~").exists()


# --- 3. denial of service ----------------------------------------------------------------------------------

BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(9)
)


@pytest.mark.slow
def test_a_yaml_alias_bomb_fails_in_seconds(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(BOMB)
    started = time.perf_counter()
    proc = run_embtune("train", str(recipe), timeout=60)  # a subprocess: on failure it times out, never hangs
    assert_one_line_error(proc.returncode, proc.stderr, "recipe.yaml", "alias", "write the values out")
    assert time.perf_counter() - started < 30


def test_an_override_alias_bomb_fails_fast(model_dir, tmp_path):
    recipe = _recipe(tmp_path, model_dir)
    bomb = "[" + ", ".join(["&a [1, 1, 1, 1, 1, 1, 1, 1]"] + ["*a"] * 300) + "]"
    with pytest.raises(EmbtuneError, match="aliases"):
        load_recipe(recipe, [f"datasets.0.template={bomb}"])


def test_an_expanded_dict_bomb_from_python_is_refused():
    from embtune.training.recipe import config_from_dict

    node: list = ["x"] * 10
    for _ in range(9):
        node = [node] * 10
    with pytest.raises(EmbtuneError, match="expands to more than"):
        config_from_dict({"datasets": [{"path": "a.csv", "template": node}]})


@pytest.mark.slow
@pytest.mark.parametrize("where", ["recipe", "data", "encode", "eval"])
def test_a_fifo_is_refused_not_read(model_dir, tmp_path, where):
    fifo = tmp_path / ("recipe.yaml" if where == "recipe" else "in.txt" if where == "encode" else "data.csv")
    if where == "data":
        recipe = write_recipe(tmp_path, model_dir, fifo)
    os.mkfifo(fifo)
    argv = {
        "recipe": ["train", str(fifo)],
        "data": ["train", str(tmp_path / "recipe.yaml")],
        "encode": ["encode", str(model_dir), "--input", str(fifo), "--output", str(tmp_path / "e.npy")],
        "eval": ["eval", str(model_dir), "--data", str(fifo), "--evaluator", "sts"],
    }[where]
    if where == "data":
        assert recipe.is_file()
    proc = run_embtune(*argv, timeout=60)
    assert_one_line_error(proc.returncode, proc.stderr, str(fifo), "FIFO", "regular files")


def test_recipe_larger_than_the_limit_is_refused_before_parsing(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("# padding\n" * 200_000)
    with pytest.raises(EmbtuneError, match="a recipe is at most"):
        load_recipe(recipe)


def test_bomb_is_valid_yaml_so_the_refusal_is_ours():
    assert yaml.safe_load("a: &a [x]\nb: [*a, *a]") == {"a": ["x"], "b": [["x"], ["x"]]}
