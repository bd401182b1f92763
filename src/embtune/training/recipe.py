"""Load a YAML recipe into a TrainConfig: strict keys, checked types, ``a.b=c`` overrides.

>>> cfg = load_recipe("recipes/pairs_mnrl.yaml", ["args.learning_rate=1e-4"])   # doctest: +SKIP
>>> cfg.args.learning_rate                                                          # doctest: +SKIP
0.0001

Unknown keys are errors with a did-you-mean and the dotted path (``args.lerning_rate``); a value of the wrong
type names the key, the expected type and the value; every message starts with the recipe file.

Relative data paths in the file (``datasets[].path``, ``datasets[].eval_path``, ``eval.evaluators[].path``)
are relative to the recipe file, so a recipe and its data folder move together; paths given as overrides on
the command line, and ``args.output_dir``, are relative to the current directory.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Union

from ..errors import EmbtuneError
from ..utils.paths import expand, input_path, os_error
from ..utils.safe_yaml import MAX_BYTES, YamlSyntaxError, bool_hint, check_size, load_yaml
from .config import LossCfg, TrainConfig


def load_recipe(path: str | os.PathLike[str], overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Read ``path`` (YAML), apply ``overrides`` (``"args.max_steps=10"``), check and build the TrainConfig.

    Raises:
        EmbtuneError: unreadable YAML, unknown keys, wrong types, invalid values or combinations; the
            message names the recipe file and the dotted key.
    """
    path = input_path(path, "recipe", folder_ok=False)
    if not path.is_file():
        raise EmbtuneError(f"{path}: recipe not found; check the path")
    try:
        if path.stat().st_size > MAX_BYTES:
            raise EmbtuneError(f"is {path.stat().st_size >> 10} KB; a recipe is at most {MAX_BYTES >> 10} KB of YAML")
        raw = load_yaml(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise EmbtuneError(f"{path}: byte {exc.start} is not valid UTF-8; re-save the recipe as UTF-8") from None
    except OSError as exc:
        raise os_error(exc, path, "recipe") from None
    except EmbtuneError as exc:
        raise EmbtuneError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise EmbtuneError(f"{path}: a recipe is a mapping with model, datasets, eval and args")
    try:
        _check_tree(raw, "")
        _relative_to(raw, path.parent)
        for item in overrides:
            apply_override(raw, item)
        check_size(raw)
        config = from_dict(TrainConfig, raw, "")
    except EmbtuneError as exc:
        raise EmbtuneError(f"{path}: {exc}") from None
    config.recipe_path = path  # type: ignore[attr-defined]  # preflight keeps output_dir from deleting it
    return config


def _relative_to(raw: dict[str, Any], folder: Path) -> None:
    """Rewrite the relative data paths of a recipe file as paths from ``folder`` (the recipe's own)."""
    def items(node: Any) -> list[dict[str, Any]]:  # wrong shapes are reported later, by from_dict
        return [d for d in node if isinstance(d, dict)] if isinstance(node, list) else []

    evaluation = raw.get("eval")
    evaluators = items(evaluation.get("evaluators")) if isinstance(evaluation, dict) else []
    groups = [(d, ("path", "eval_path")) for d in items(raw.get("datasets"))] + [(e, ("path",)) for e in evaluators]
    for group, keys in groups:
        for key in keys:
            value = group.get(key)
            if isinstance(value, str) and value:
                value = str(expand(value))  # "~/data.csv" is the user's home, never <recipe folder>/~
                group[key] = value if Path(value).is_absolute() else str(folder / value)


def config_from_dict(raw: dict[str, Any], overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Like ``load_recipe`` for a dict already in memory (Python users, tests)."""
    if not isinstance(raw, dict):
        raise EmbtuneError(f"a recipe is a mapping with model, datasets, eval and args, got {type(raw).__name__}")
    check_size(raw)
    _check_tree(raw, "")
    raw = copy.deepcopy(raw)
    for item in overrides:
        apply_override(raw, item)
    check_size(raw)
    return from_dict(TrainConfig, raw, "")


MAX_DEPTH = 32  # far deeper than any recipe; guards the recursive checks below


def _check_tree(node: Any, where: str, parents: tuple[int, ...] = ()) -> None:
    """Refuse structures the recursive conversion cannot finish: cycles (YAML aliases such as ``&a [*a]``)
    and absurd nesting."""
    if not isinstance(node, dict | list):
        return
    label = where or "the recipe"
    if id(node) in parents:
        raise EmbtuneError(f"{label}: refers to itself (a YAML alias inside its own anchor); write the value out")
    if len(parents) >= MAX_DEPTH:
        raise EmbtuneError(f"{label}: nested more than {MAX_DEPTH} levels deep; a recipe is a few levels of mappings")
    items = node.items() if isinstance(node, dict) else enumerate(node)
    for key, value in items:
        _check_tree(value, f"{where}.{key}" if where else str(key), (*parents, id(node)))


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``raw[a][b] = yaml(c)`` for ``item = "a.b=c"``; list items by index (``datasets.0.max_rows=10``)."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise EmbtuneError(f"override {item!r} is not key=value; write e.g. args.learning_rate=1e-4")
    try:
        value = load_yaml(text, "the override") if text.strip() else None
    except YamlSyntaxError:
        value = text
    except EmbtuneError as exc:
        raise EmbtuneError(f"override {item!r}: {exc}") from None
    parts = key.strip().split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        here = ".".join(parts[: i + 1])
        if isinstance(node, list):
            node = node[_index(part, node, here)]
        else:
            if part == "loss" and isinstance(node.get(part), str):  # `loss: mnrl` is `loss: {name: mnrl}`
                node[part] = {"name": node[part]}
            node = node.setdefault(part, {})
        if not isinstance(node, dict | list):
            raise EmbtuneError(f"override {item!r}: {here} is a value, not a group")
    if isinstance(node, list):
        node[_index(parts[-1], node, key)] = value
    else:
        node[parts[-1]] = value


def _index(part: str, node: list, here: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise EmbtuneError(f"override: {here} needs an index in 0..{len(node) - 1}")
    return int(part)


def from_dict(cls: type, raw: Any, where: str) -> Any:
    """Build dataclass ``cls`` from ``raw``, checking keys and value types recursively."""
    label = where or "the recipe"
    if raw is None:
        raw = {}
    if cls is LossCfg and isinstance(raw, str):
        raw = {"name": raw}
    if not isinstance(raw, dict):
        raise EmbtuneError(f"{label}: expected a mapping, got {raw!r}")
    if cls is LossCfg:  # `loss: {name: mnrl, scale: 20}`: everything but `name` is a parameter
        raw = {"name": raw.get("name", "mnrl"), "params": {k: v for k, v in raw.items() if k != "name"}}
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        if key not in names:
            dotted = f"{where}.{key}" if where else str(key)
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"did you mean {(where + '.' if where else '') + close[0]!r}? " if close else ""
            raise EmbtuneError(f"unknown key {dotted!r}; {hint}valid keys here: {', '.join(names)}")
    values = {key: _convert(hints[key], value, f"{where}.{key}" if where else key) for key, value in raw.items()}
    return cls(**values)  # __post_init__ validates values and combinations


def _convert(tp: Any, value: Any, where: str) -> Any:  # noqa: C901 - one branch per supported type
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, where)
            except EmbtuneError:
                continue
        raise _type_error(where, tp, value)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise _type_error(where, tp, value)
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise _type_error(where, tp, value)
        _, item = typing.get_args(tp)
        return {str(k): _convert(item, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise _type_error(where, tp, value)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type_error(where, tp, value)
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "5e-5" as a string; accept numeric text
            try:
                number = float(value)
            except ValueError:
                raise _type_error(where, tp, value) from None
        elif isinstance(value, bool) or not isinstance(value, int | float):
            raise _type_error(where, tp, value)
        else:
            number = float(value)
        if not math.isfinite(number):
            raise EmbtuneError(f"{where}: {value!r} is not a finite number; give a finite value")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise _type_error(where, tp, value)
        return value
    raise EmbtuneError(f"{where}: unsupported config type {tp}")  # a bug in config.py, not in the recipe


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(t) for t in typing.get_args(tp) if t is not type(None))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return "a mapping"
    return {bool: "true/false", int: "an integer", float: "a number", str: "text"}.get(tp, str(tp))


def _type_error(where: str, tp: Any, value: Any) -> EmbtuneError:
    hint = bool_hint(where, value) if "text" in _type_name(tp) else ""
    return EmbtuneError(f"{where}: expected {_type_name(tp)}, got {value!r} ({type(value).__name__}){hint}")
