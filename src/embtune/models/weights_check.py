"""A model folder that lies: config.json and the weights must describe the same network.

transformers fills weights the checkpoint lacks with random values (and drops extra ones) after printing a
long load report; a config whose ``num_hidden_layers`` or ``hidden_size`` disagrees with model.safetensors
then "loads" into a model that embeds noise. Here every missing, unexpected or mis-shaped weight is an
error, one line naming the folder, the keys and the config values to fix. Weights no embedding uses (the
BERT pooler head) may be absent.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from ..errors import EmbtuneError

_UNUSED_PREFIXES = ("pooler.",)  # pooling reads the hidden states; the pooler head is never used
_LAYER = re.compile(r"(?:^|\.)layers?\.(\d+)\.")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' logger (its load report) for the block; we report problems ourselves."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def check_loading_info(folder: Path, info: dict[str, Any], config: Any) -> None:
    """Raise when the weights of ``folder`` do not fit the network its config.json describes."""
    mismatched = sorted(info.get("mismatched_keys") or [], key=lambda item: item[0])
    missing = sorted(k for k in info.get("missing_keys") or [] if not k.startswith(_UNUSED_PREFIXES))
    unexpected = sorted(k for k in info.get("unexpected_keys") or [] if not k.startswith(_UNUSED_PREFIXES))
    if not (mismatched or missing or unexpected):
        return
    sizes = _config_values(config)
    where = f"{folder / 'config.json'} does not match {folder / 'model.safetensors'}"
    if mismatched:
        key, saved, expected = mismatched[0]
        raise EmbtuneError(
            f"{where}: {len(mismatched)} weight(s) have another shape than config.json implies, e.g. {key} is "
            f"{tuple(saved)} in the weights but {tuple(expected)} from config.json ({sizes}); fix config.json "
            "to match the weights, or restore the folder from the original model"
        )
    layers = _layers(unexpected)
    if missing:
        extra = _layers(missing)
        span = f"layer {extra[0]}" if len(extra) == 1 else f"layers {extra[0]}..{extra[-1]}" if extra else ""
        hint = f" ({span} not in the weights)" if extra else ""
        raise EmbtuneError(
            f"{where}: {len(missing)} weight(s) the config needs are missing{hint}, e.g. {_few(missing)} "
            f"({sizes}); they would be random: fix config.json or restore the weights from the original model"
        )
    hint = f" (the weights have layers up to {layers[-1]})" if layers else ""
    raise EmbtuneError(
        f"{where}: {len(unexpected)} weight(s) are not used by the network config.json describes{hint}, e.g. "
        f"{_few(unexpected)} ({sizes}); fix config.json to match the weights, or restore the original model"
    )


def _config_values(config: Any) -> str:
    keys = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size")
    return ", ".join(f"{k}={getattr(config, k)}" for k in keys if getattr(config, k, None) is not None)


def _layers(keys: Iterable[str]) -> list[int]:
    return sorted({int(m.group(1)) for k in keys if (m := _LAYER.search(k))})


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:2]) + (f" and {len(keys) - 2} more" if len(keys) > 2 else "")


__all__ = ["check_loading_info", "quiet_transformers"]
