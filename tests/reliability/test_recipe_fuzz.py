"""Property-based fuzz of the recipe parser: any input either loads or raises EmbtuneError, nothing else.

(The file loaders are fuzzed in tests/data/test_sources.py.)
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from embtune.errors import EmbtuneError
from embtune.training.config import TrainArgs, TrainConfig
from embtune.training.recipe import config_from_dict, load_recipe

VALID = {
    "model": {"name": "some/model", "max_seq_length": 16},
    "datasets": [{"path": "data.csv", "columns": {"anchor": "a", "positive": "b"}, "loss": {"name": "mnrl"}}],
    "args": {"learning_rate": 1e-4, "max_steps": 3},
}

# every real key, so generated dicts reach the type checks and __post_init__ validation, not just "unknown key"
KEYS = sorted(
    {f.name for cls in (TrainConfig, TrainArgs) for f in dataclasses.fields(cls)}
    | {"name", "path", "columns", "anchor", "positive", "negatives", "label", "loss", "max_rows", "eval_path",
       "evaluators", "kind", "params", "template", "prompt", "format", "pooling", "normalize", "max_seq_length",
       "scale", "nam", ""}
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["last", "steps", "epoch", "no", "mnrl", "cosent", "1e-5", "nan", "-inf", "x.y:Z"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=6), st.integers()), children, max_size=5),
    ),
    max_leaves=25,
)


def _loads_or_embtune_error(fn, *args) -> None:
    try:
        cfg = fn(*args)
    except EmbtuneError as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    assert isinstance(cfg, TrainConfig) and cfg.datasets


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=st.dictionaries(st.sampled_from(["model", "datasets", "eval", "args", "extra"]), VALUES, max_size=4))
def test_arbitrary_nested_dicts_load_or_raise_embtune_error(raw):
    _loads_or_embtune_error(config_from_dict, raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group=st.sampled_from(["model", "args", "datasets.0", "datasets.0.columns", "datasets.0.loss", "eval"]),
       key=st.sampled_from(KEYS), value=VALUES)
def test_one_bad_value_in_a_valid_recipe_loads_or_raises_embtune_error(group, key, value):
    raw = yaml.safe_load(yaml.safe_dump(VALID))
    node = raw
    for part in group.split("."):
        node = node[int(part)] if part.isdigit() else node.setdefault(part, {})
    node[key] = value
    _loads_or_embtune_error(config_from_dict, raw)


YAMLISH = st.text(alphabet=list("abmodel:ags- \n\t{}[],'\"&*!|>#%@`0123456789.eE+") + ["\x00", "\ufeff", "é"],
                  max_size=200)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(YAMLISH, VALUES.map(lambda v: yaml.safe_dump(v)),
                      VALUES.map(lambda v: yaml.safe_dump({**VALID, "args": v}))))
@pytest.mark.slow
@example(text="a: &x [*x]\n")  # a self-referencing alias
@example(text="datasets: &d [{path: a.csv, columns: *d}]\n")
@example(text="!!python/object/apply:os.system ['echo hacked']\n")
@example(text="[" * 5000)
@example(text="args: " + "[" * 3000 + "]" * 3000)
def test_arbitrary_yaml_text_loads_or_raises_embtune_error(text):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "recipe.yaml"
        path.write_text(text, encoding="utf-8")
        _loads_or_embtune_error(load_recipe, path)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(overrides=st.lists(st.one_of(
    st.text(alphabet=list("args.model0123=:-_[]{} ,learning_rate"), max_size=40),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(
        ["args.max_steps", "datasets.0.path", "datasets.5.path", "datasets.x", "model", "args.seed.x", ".", "a..b"]),
        st.text(max_size=10)),
), max_size=3))
def test_arbitrary_overrides_load_or_raise_embtune_error(overrides):
    _loads_or_embtune_error(config_from_dict, VALID, overrides)


def test_unreadable_recipe_bytes_are_a_clear_error(tmp_path):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(b"model: {name: caf\xe9}\n")
    with pytest.raises(EmbtuneError, match=r"recipe.yaml: .*UTF-8"):
        load_recipe(path)
